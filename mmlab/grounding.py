"""Visual grounding: a referring expression -> the box of the one object it describes (TransVG-style).

TransVG (Deng et al., ICCV 2021) puts a learnable [REG] token in front of the visual tokens of an image tower and
the text tokens of a language tower (each projected to a common width) and runs them through a transformer, the
visual-linguistic fusion module; the [REG] output goes through an MLP to a box (cx, cy, w, h), normalised to the
image by a sigmoid. The loss is DETR's box loss (Carion et al., ECCV 2020, section 3.1 and A.2):
L1 on the normalised (cx, cy, w, h), summed over the four coordinates, plus 1 - GIoU, weighted 5 and 2, each
averaged over the boxes. A prediction counts as correct when its IoU with the true box is at least 0.5
(Acc@0.5, the metric of the referring-expression benchmarks TransVG reports).

    model = TransVG(VisionTransformer(...), TextTransformer(...), GroundingConfig(dim=64))
    boxes = model(images, input_ids, attention_mask)        # (B, 4) normalised cx, cy, w, h
    loss = grounding_loss(boxes, targets)                   # targets (B, 4) normalised cx, cy, w, h

`scene_targets` turns the expressions of multi-object Shapes-World scenes into target boxes, parsing each
expression against its scene (`mmlab.data.referent`): an expression that fits no object or several is a
ValueError, so a model is never trained or scored on an ambiguous one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.data.shapes_scene_text import referent
from mmlab.encoders.layers import Transformer
from mmlab.evaluate import box_iou, generalized_box_iou

__all__ = [
    "L1_WEIGHT",
    "GIOU_WEIGHT",
    "GroundingConfig",
    "TransVG",
    "accuracy_at_iou",
    "cxcywh_to_xyxy",
    "grounding_loss",
    "paired_iou",
    "scene_targets",
    "xyxy_to_cxcywh",
]

L1_WEIGHT, GIOU_WEIGHT = 5.0, 2.0  # DETR's box-loss weights (Carion et al., 2020, appendix A.2)


@dataclass
class GroundingConfig:
    """Width, depth and heads of the fusion transformer; the [REG] head is a 3-layer MLP as in TransVG and DETR."""

    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "heads"):
            validation.positive_int(f"GroundingConfig.{name}", getattr(self, name))
        validation.finite_float("GroundingConfig.mlp_ratio", self.mlp_ratio, low=0, low_open=True)
        validation.finite_float("GroundingConfig.dropout", self.dropout, low=0, high=1, high_open=True)
        if self.dim % self.heads:
            raise ValueError(f"GroundingConfig.dim {self.dim} is not divisible by heads {self.heads}")


class TransVG(nn.Module):
    """[REG] + visual tokens + text tokens -> fusion transformer -> [REG] -> MLP -> sigmoid box (cx, cy, w, h).

    image_encoder: images (B, C, H, W) -> tokens (B, Nv, Dv) (e.g. `mmlab.encoders.VisionTransformer`);
    text_encoder: (input_ids, attention_mask) (B, L) -> tokens (B, L, Dt) (e.g. `TextTransformer`). Their widths
    are read from `.dim`. A learned modality embedding tells the fusion module which tokens are which; the
    towers carry their own position embeddings.
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, config: GroundingConfig | None = None):
        super().__init__()
        config = GroundingConfig() if config is None else config
        if not isinstance(config, GroundingConfig):
            raise TypeError(f"config must be a GroundingConfig, got {type(config).__name__}")
        validation.require_module("image_encoder", image_encoder)
        validation.require_module("text_encoder", text_encoder)
        for name, tower in (("image_encoder", image_encoder), ("text_encoder", text_encoder)):
            if not isinstance(getattr(tower, "dim", None), int):
                raise TypeError(f"{name} must have an int width `.dim` (as mmlab.encoders towers do)")
        c, d = config, config.dim
        self.config = config
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_proj, self.text_proj = nn.Linear(image_encoder.dim, d), nn.Linear(text_encoder.dim, d)
        self.reg_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.modality = nn.Parameter(torch.randn(3, d) * 0.02)  # [REG], visual, text
        self.fusion = Transformer(d, c.depth, c.heads, int(round(d * c.mlp_ratio)), dropout=c.dropout)
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))

    def forward(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, C, H, W) images and (B, L) token ids -> (B, 4) boxes, normalised (cx, cy, w, h) in (0, 1)."""
        validation.require_tensor("images", images)
        validation.require_tensor("input_ids", input_ids)
        if images.dim() < 1 or input_ids.dim() < 1 or images.shape[0] != input_ids.shape[0]:
            raise ValueError(f"batch mismatch: images {tuple(images.shape)}, input_ids {tuple(input_ids.shape)}")
        visual = self.image_proj(self.image_encoder(images)) + self.modality[1]  # (B, Nv, D)
        text = self.text_proj(self.text_encoder(input_ids, attention_mask)) + self.modality[2]  # (B, L, D)
        b = visual.shape[0]
        reg = self.reg_token.expand(b, -1, -1) + self.modality[0]  # (B, 1, D)
        x = torch.cat([reg, visual, text], 1)  # (B, 1 + Nv + L, D)
        keep = torch.ones(b, 1 + visual.shape[1], dtype=torch.bool, device=x.device)
        text_keep = (torch.ones(text.shape[:2], dtype=torch.bool, device=x.device) if attention_mask is None
                     else attention_mask.to(device=x.device, dtype=torch.bool))
        y = self.fusion(x, torch.cat([keep, text_keep], 1))  # (B, 1 + Nv + L, D)
        return torch.sigmoid(self.head(y[:, 0]))  # (B, 4)


def _box_pair(pred: Tensor, target: Tensor, names: tuple[str, str] = ("pred", "target")) -> None:
    for name, t in zip(names, (pred, target)):
        validation.require_tensor(name, t)
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
        if t.dim() != 2 or t.shape[1] != 4:
            raise ValueError(f"{name} must have shape (B, 4), got {tuple(t.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if len(pred) == 0:
        raise ValueError("pred and target are empty (B = 0)")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) (cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = validation.require_tensor("boxes", boxes).unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) (x0, y0, x1, y1) -> (cx, cy, w, h)."""
    x0, y0, x1, y1 = validation.require_tensor("boxes", boxes).unbind(-1)
    return torch.stack([0.5 * (x0 + x1), 0.5 * (y0 + y1), x1 - x0, y1 - y0], -1)


def paired_iou(a: Tensor, b: Tensor, generalized: bool = False) -> Tensor:
    """IoU (or GIoU) of a[i] with b[i]: (B, 4), (B, 4) xyxy -> (B,), the diagonal of `box_iou(a, b)`."""
    _box_pair(a, b, ("a", "b"))
    return torch.diagonal((generalized_box_iou if generalized else box_iou)(a, b))


def grounding_loss(pred: Tensor, target: Tensor, l1_weight: float = L1_WEIGHT,
                   giou_weight: float = GIOU_WEIGHT) -> Tensor:
    """DETR's box loss on normalised (cx, cy, w, h) boxes (B, 4): mean over boxes of
    l1_weight * sum_coords |pred - target| + giou_weight * (1 - GIoU(pred, target))."""
    _box_pair(pred, target)
    validation.finite_float("l1_weight", l1_weight, low=0)
    validation.finite_float("giou_weight", giou_weight, low=0)
    if validation.on_host(target) and not torch.isfinite(target).all():
        raise ValueError("target contains NaN or inf")
    if validation.on_host(target) and (target[:, 2:] < 0).any():
        row = int((target[:, 2:] < 0).any(1).nonzero()[0])
        raise ValueError(f"target widths and heights must be >= 0: row {row} is {target[row].tolist()}")
    l1 = (pred - target).abs().sum(1)  # (B,)
    giou = paired_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target), generalized=True)  # (B,)
    return (l1_weight * l1 + giou_weight * (1 - giou)).mean()


def accuracy_at_iou(pred: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """(B,) bool: IoU(pred[i], target[i]) >= threshold, boxes xyxy (B, 4) in the same units."""
    validation.finite_float("threshold", threshold, low=0, high=1)
    return paired_iou(pred.detach(), target.detach()) >= threshold


def scene_targets(batch: Mapping[str, Any], expressions: Sequence[str] | None = None) -> Tensor:
    """Target boxes (B, 4), normalised (cx, cy, w, h), of referring expressions in multi-object Shapes-World
    scenes (a `ShapesWorld(max_objects > 1).batch`, or its collation).

    `expressions` default to the batch's own "expression"; each is parsed against its scene and must fit
    exactly one object (else a ValueError naming the item). The image size is read from batch["image"].
    """
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch must be a dict of multi-object Shapes-World scenes, got {type(batch).__name__}")
    missing = [k for k in ("image", "boxes", "shapes", "colors", "sizes", "num_objects") if k not in batch]
    if missing:
        raise ValueError(f"batch lacks {missing}: pass scenes of ShapesWorld(max_objects=2..4)")
    n = len(batch["boxes"])
    expressions = batch["expression"] if expressions is None else validation.str_list("expressions", expressions,
                                                                                       single=False)
    if len(expressions) != n:
        raise ValueError(f"{len(expressions)} expressions for {n} scenes")
    size = batch["image"].shape[-1]
    out = torch.empty(n, 4)
    for i, text in enumerate(expressions):
        k = int(batch["num_objects"][i])
        objects = list(zip(batch["shapes"][i, :k].tolist(), batch["colors"][i, :k].tolist(),
                           batch["sizes"][i, :k].tolist()))
        boxes = batch["boxes"][i, :k].double().numpy()
        try:
            j = referent(text, objects, boxes)
        except ValueError as err:
            raise ValueError(f"scene {i}: {err}") from None
        out[i] = batch["boxes"][i, j]
    return xyxy_to_cxcywh(out / size)
