"""Turning raw modalities into tensors: text.py, image.py, audio.py, video.py (import the submodule you need)."""
