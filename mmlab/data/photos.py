"""Real photos for the image lessons: scikit-learn's two bundled sample images (offline)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmlab.validation import int_in_range

PHOTOS = ("china", "flower")
MAX_SIZE = 2048


def load_photo(name: str = "china", size: int = 224) -> torch.Tensor:
    """A sample photo, centre-cropped to a square and resized: float32 (3, size, size) in [0, 1].

    Needs Pillow (scikit-learn reads the JPEGs with it).
    """
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; expected one of {PHOTOS}")
    int_in_range("size", size, 1, MAX_SIZE)
    from sklearn.datasets import load_sample_image

    pixels = load_sample_image(f"{name}.jpg")  # (H, W, 3) uint8
    h, w, _ = pixels.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = torch.from_numpy(pixels[top:top + side, left:left + side].copy())
    image = square.permute(2, 0, 1).unsqueeze(0).float() / 255.0  # (1, 3, side, side)
    if size != side:
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < side)
    return image[0].clamp_(0.0, 1.0).contiguous()  # (3, size, size)
