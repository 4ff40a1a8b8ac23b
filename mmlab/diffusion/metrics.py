"""Measures of generated images, all computed with the course's own models (no downloaded judge):

- attribute accuracy: the `AttributeReader` reads shape, colour, size and region back; each attribute counts only
  on prompts that name it ("a red circle" names no size);
- CLIP score (Hessel et al., 2021): 2.5 * max(cos(image, caption), 0) with the course's trained dual encoder;
- diversity: mean pairwise root-mean-square pixel distance between samples of one prompt;
- object presence: whether an image shows anything brighter than its dark background at all (the reader has no
  "nothing there" class, so a blank sample would otherwise get its guesses counted).
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from mmlab import validation
from mmlab.data.shapes_text import SIZES, SYNONYMS, WHERE
from mmlab.diffusion.reader import ATTRIBUTES

CLIP_SCORE_WEIGHT = 2.5  # Hessel et al. (2021), CLIPScore
# Shapes-World backgrounds stay below 0.34 in every channel and every colour has a channel of at least 0.68, so a
# pixel whose brightest channel is OBJECT_CONTRAST above the image's median one belongs to an object. The smallest
# real object covers 28 such pixels (3 000 val images); 3 000 backgrounds alone have none (tests/test_diffusion.py).
OBJECT_CONTRAST = 0.25
OBJECT_MIN_PIXELS = 10
_SIZE_WORDS = set(SIZES) | {w for s in SIZES for w in SYNONYMS[s]}
_WHERE_PHRASES = tuple(p for row in WHERE for p in row)


def mentioned(captions: list[str]) -> dict[str, Tensor]:
    """Which attributes each caption names: {attribute: (B,) bool}. Every Shapes-World caption names the shape
    and the colour; size only with a size word (or its held-out synonym), region only with a place phrase."""
    captions = validation.str_list("captions", captions)
    words = [set(re.findall(r"[a-z]+", c.lower())) for c in captions]
    return {"shape": torch.ones(len(captions), dtype=torch.bool),
            "color": torch.ones(len(captions), dtype=torch.bool),
            "size": torch.tensor([bool(w & _SIZE_WORDS) for w in words]),
            "region": torch.tensor([any(p in c.lower() for p in _WHERE_PHRASES) for c in captions])}


def attribute_accuracy(predicted: dict[str, Tensor], targets: dict[str, Tensor],
                       named: dict[str, Tensor] | None = None) -> dict[str, float]:
    """Per attribute, the fraction of images (among those whose prompt names it) read as the prompt asked;
    "all": images with every named attribute right. NaN for an attribute no prompt names."""
    n = len(targets["shape"])
    named = named or {a: torch.ones(n, dtype=torch.bool) for a in ATTRIBUTES}
    right = {a: (predicted[a] == targets[a]) | ~named[a] for a in ATTRIBUTES}
    out = {a: float((predicted[a] == targets[a])[named[a]].float().mean()) if named[a].any() else float("nan")
           for a in ATTRIBUTES}
    out["all"] = float(torch.stack(list(right.values())).all(0).float().mean())
    return out


@torch.no_grad()
def clip_score(dual_encoder: Any, images: Tensor, texts: list[str]) -> Tensor:
    """(B,) CLIP-S of each image with its text: `dual_encoder` is a `mmlab.align.recipe.ShapesDualEncoder`."""
    texts = validation.str_list("texts", texts)
    if len(texts) != len(images):
        raise ValueError(f"need one text per image: {len(images)} images, {len(texts)} texts")
    model = dual_encoder.model.eval()
    img = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
    txt = torch.nn.functional.normalize(model.encode_text(dual_encoder.tokenize(texts)), dim=-1)
    return CLIP_SCORE_WEIGHT * (img * txt).sum(-1).clamp_min(0)


def shows_object(images: Tensor) -> Tensor:
    """(B,) bool: the image (B, 3, H, W) in [0, 1] has at least OBJECT_MIN_PIXELS pixels whose brightest channel
    exceeds the image's median brightest channel (its background) by OBJECT_CONTRAST."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    brightest = images.amax(1).flatten(1)  # (B, H*W)
    background = brightest.median(1, keepdim=True).values
    return ((brightest - background) > OBJECT_CONTRAST).sum(1) >= OBJECT_MIN_PIXELS


def diversity(samples: Tensor) -> float:
    """Mean over pairs i < j of the RMS pixel distance between samples (K, C, H, W) of one prompt (K >= 2)."""
    if samples.dim() != 4 or len(samples) < 2:
        raise ValueError(f"samples must be (K >= 2, C, H, W), got {tuple(samples.shape)}")
    flat = samples.flatten(1).double()
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5  # (K, K)
    k = len(samples)
    return float(d.sum() / (k * (k - 1)))
