"""An attribute reader: a small CNN trained on real Shapes-World images that reads shape, colour, size and region
(the 3 x 3 grid the captions' "on the left", "in the top right corner" name) back from an image. It is the judge of
generated images, so it is checked on real held-out images first.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.data.shapes_text import COLORS, SHAPES, SIZES

ATTRIBUTES: dict[str, int] = {"shape": len(SHAPES), "color": len(COLORS), "size": len(SIZES), "region": 9}


def regions(position: Tensor) -> Tensor:
    """(B, 2) object centres (x, y) as fractions of the image -> (B,) region 3 * row + column, thirds as in the
    captions (`mmlab.data.shapes_world`)."""
    cell = (position * 3).floor().clamp(0, 2).long()  # (B, 2): column, row
    return cell[:, 1] * 3 + cell[:, 0]


def attribute_targets(batch: dict[str, Any]) -> dict[str, Tensor]:
    """A Shapes-World batch -> {"shape", "color", "size", "region"}: (B,) long each."""
    return {"shape": batch["shape"], "color": batch["color"], "size": batch["size"],
            "region": regions(batch["position"])}


class AttributeReader(nn.Module):
    """images (B, 3, 32, 32) in [0, 1] -> {attribute: logits (B, classes)} for each of ATTRIBUTES."""

    def __init__(self, width: int = 16):
        super().__init__()
        validation.positive_int("width", width)
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 16, 16)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, 8, 8)
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 4w, 4, 4)
            nn.Flatten(), nn.Linear(4 * w * 16, 8 * w), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(8 * w, n) for name, n in ATTRIBUTES.items()})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, 32, 32):
            raise ValueError(f"images must be (B, 3, 32, 32), got {tuple(images.shape)}")
        h = self.features(images)
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def read(self, images: Tensor, batch_size: int = 512) -> dict[str, Tensor]:
        """images -> {attribute: predicted class (B,)}, in eval mode."""
        was_training = self.training
        self.eval()
        parts = [self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        self.train(was_training)
        return {name: torch.cat([p[name] for p in parts]).argmax(1) for name in ATTRIBUTES}


def reader_loss(model: AttributeReader, batch: dict[str, Tensor]) -> Tensor:
    """Sum over attributes of the cross-entropy (`fit`'s loss_fn)."""
    logits = model(batch["image"])
    return sum(nn.functional.cross_entropy(logits[a], batch[a]) for a in ATTRIBUTES)
