"""Dense tagging targets for pretraining a vision tower on multi-object scenes: what covers each patch.

Captioners start from a pretrained image encoder; Anderson et al. (2018) trained theirs to name the objects and
attributes of image regions (Visual Genome). The Shapes-World analogue, cheap enough for a CPU lesson: every patch
token learns the shape, colour and size of the object whose box overlaps that patch most, or "background".
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmlab.data.shapes_world import COLORS, SHAPES, SIZES
from mmlab.grounding import xyxy_to_cxcywh
from mmlab.validation import positive_int

# the attributes tagged per patch: a scene batch's key and its number of values (label `n` is background)
TAGGED_ATTRIBUTES: tuple[tuple[str, int], ...] = (("shapes", len(SHAPES)), ("colors", len(COLORS)),
                                                  ("sizes", len(SIZES)))


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


def scene_patch_labels(scenes: Mapping[str, Tensor], image_size: int, patch_size: int) -> dict[str, Tensor]:
    """`patch_labels` for every tagged attribute of a Shapes-World scene batch ("boxes", "object_mask" and the
    attribute keys): {attribute: (B, G*G) labels, background = that attribute's number of values}."""
    return {k: patch_labels(scenes["boxes"], scenes["object_mask"], scenes[k], n, image_size, patch_size)
            for k, n in TAGGED_ATTRIBUTES}


def tagging_heads(dim: int) -> dict[str, nn.Linear]:
    """One linear head per tagged attribute, from a `dim`-wide patch token to its values plus background."""
    positive_int("dim", dim)
    return {k: nn.Linear(dim, n + 1) for k, n in TAGGED_ATTRIBUTES}


def tagging_loss(heads: Mapping[str, nn.Module], patches: Tensor, labels: Mapping[str, Tensor]) -> Tensor:
    """The dense tagging loss: the sum over attributes of the cross-entropy of each head on every patch token.
    `patches` (B, G*G, D); `labels` {attribute: (B, G*G)}, as `scene_patch_labels` gives them."""
    if patches.dim() != 3:
        raise ValueError(f"patches must be (B, G*G, D) patch tokens, got shape {tuple(patches.shape)}")
    return sum(F.cross_entropy(heads[k](patches).flatten(0, 1), labels[k].flatten()) for k, _ in TAGGED_ATTRIBUTES)


def tagging_accuracy(heads: Mapping[str, nn.Module], patches: Tensor, labels: Mapping[str, Tensor]) -> dict[str, float]:
    """Per attribute: the fraction of patches on an object (not background) whose value the head gets right."""
    on_object = labels["colors"] < len(COLORS)
    return {k: float((heads[k](patches).argmax(-1) == labels[k])[on_object].float().mean())
            for k, _ in TAGGED_ATTRIBUTES}
