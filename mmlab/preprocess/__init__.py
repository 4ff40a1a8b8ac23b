"""Turning raw modalities into tensors: text.py, image.py, audio.py, video.py, and augment.py (data augmentation)
(import the submodule you need)."""
