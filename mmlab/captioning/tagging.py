"""Dense tagging targets for pretraining a vision tower on multi-object scenes: what covers each patch.

Captioners start from a pretrained image encoder; Anderson et al. (2018) trained theirs to name the objects and
attributes of image regions (Visual Genome). The Shapes-World analogue, cheap enough for a CPU lesson: every patch
token learns the shape, colour and size of the object whose box overlaps that patch most, or "background".
"""
from __future__ import annotations

import torch
from torch import Tensor

from mmlab.validation import positive_int


def patch_labels(boxes: Tensor, object_mask: Tensor, values: Tensor, num_values: int, image_size: int,
                 patch_size: int, min_overlap: float = 4.0) -> Tensor:
    """(B, G*G) labels, patches row-major (the ViT's order): `values` (B, K) of the object whose box (B, K, 4)
    overlaps the patch by the largest area, or `num_values` (background) where no present object overlaps it by
    at least `min_overlap` square pixels."""
    positive_int("num_values", num_values)
    positive_int("patch_size", patch_size)
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
    edges = torch.arange(0, image_size, patch_size, dtype=boxes.dtype)  # (G,)
    ox = (torch.minimum(boxes[..., 2:3], edges + patch_size) - torch.maximum(boxes[..., 0:1], edges)).clamp_min(0)
    oy = (torch.minimum(boxes[..., 3:4], edges + patch_size) - torch.maximum(boxes[..., 1:2], edges)).clamp_min(0)
    area = (oy[..., :, None] * ox[..., None, :]).flatten(2) * object_mask[..., None]  # (B, K, G*G)
    best, who = area.max(dim=1)  # (B, G*G)
    return torch.where(best < min_overlap, num_values, values.gather(1, who))
