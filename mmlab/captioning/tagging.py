"""Dense tagging targets for pretraining a vision tower on multi-object scenes: what covers each patch.

Captioners start from a pretrained image encoder; Anderson et al. (2018) trained theirs to name the objects and
attributes of image regions (Visual Genome). The Shapes-World analogue, cheap enough for a CPU lesson: every patch
token learns the shape, colour and size of the object whose box overlaps that patch most, or "background".
"""
from __future__ import annotations

import torch
from torch import Tensor

from mmlab.grounding import xyxy_to_cxcywh
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


def patch_boxes(boxes: Tensor, object_mask: Tensor, image_size: int, patch_size: int,
                min_overlap: float = 4.0) -> tuple[Tensor, Tensor]:
    """Dense box targets, for pretraining a tower whose patch tokens must know where objects are (a grounding
    head regresses boxes from them): per patch, the box of the object that `patch_labels` assigns to it.

    Returns (targets (B, G*G, 4): that object's box as (cx, cy, w, h) divided by `image_size`, zeros on background
    patches; on_object (B, G*G) bool)."""
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or object_mask.shape != boxes.shape[:2]:
        raise ValueError(f"boxes must be (B, K, 4) and object_mask (B, K), got {tuple(boxes.shape)} and "
                         f"{tuple(object_mask.shape)}")
    b, k = object_mask.shape
    who = patch_labels(boxes, object_mask, torch.arange(k).expand(b, k), k, image_size, patch_size, min_overlap)
    cxcywh = xyxy_to_cxcywh(boxes.to(torch.float32) / image_size)  # (B, K, 4)
    padded = torch.cat([cxcywh, torch.zeros(b, 1, 4)], 1)  # index k: background
    return padded.gather(1, who[..., None].expand(-1, -1, 4)), who < k
