"""Contrastive losses (pure PyTorch references): symmetric InfoNCE (CLIP) and SigLIP.

Features are used as given (the caller normalises); `logit_scale` is already exponentiated.
These materialise the (B, B) logits: clear, and the ground truth for `mmlab.kernels`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["info_nce", "siglip_loss", "check_pair", "check_scalar", "check_positive_mask"]


def check_pair(image_features: Tensor, text_features: Tensor) -> None:
    """Raise a clear error unless both are finite 2-D float tensors of the same (B, D) on one device."""
    for name, t in (("image_features", image_features), ("text_features", text_features)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D (B, D), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if image_features.shape[0] != text_features.shape[0]:
        raise ValueError(f"batch mismatch: image_features has {image_features.shape[0]} rows, "
                         f"text_features has {text_features.shape[0]}")
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError(f"width mismatch: image_features is {image_features.shape[1]} wide, "
                         f"text_features is {text_features.shape[1]}")
    if image_features.device != text_features.device:
        raise ValueError(f"device mismatch: image_features on {image_features.device}, "
                         f"text_features on {text_features.device}")
    for name, t in (("image_features", image_features), ("text_features", text_features)):
        if not torch.isfinite(t.detach()).all():
            raise ValueError(f"{name} contain NaN or inf")


def check_scalar(value: Tensor | float, name: str, positive: bool) -> None:
    """A float or a 0-d / 1-element tensor; finite, and > 0 when `positive`."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        v = float(value.detach())
    else:
        v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be positive (already exponentiated), got {v}")


def check_positive_mask(mask: Tensor, batch: int, device: torch.device) -> None:
    """A (B, B) bool tensor with at least one positive in every row and every column."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"positive_mask must be a bool tensor, got {got}")
    if tuple(mask.shape) != (batch, batch):
        raise ValueError(f"positive_mask must have shape ({batch}, {batch}), got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"positive_mask on {mask.device}, features on {device}")
    empty_rows = (~mask.any(dim=1)).nonzero().flatten()
    if empty_rows.numel():
        raise ValueError(f"positive_mask row {int(empty_rows[0])} has no positive (image without a matching text)")
    empty_cols = (~mask.any(dim=0)).nonzero().flatten()
    if empty_cols.numel():
        raise ValueError(f"positive_mask column {int(empty_cols[0])} has no positive (text without a matching image)")


def _scalar(value: Tensor | float, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.reshape(()).to(device=like.device, dtype=like.dtype)
    return torch.tensor(float(value), device=like.device, dtype=like.dtype)


def _multi_positive_ce(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean over rows of -(1/|P_i|) sum_{j in P_i} log softmax(logits_i)_j."""
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (B, B)
    per_row = -(log_p * mask).sum(dim=1) / mask.sum(dim=1)  # (B,)
    return per_row.mean()


def info_nce(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
             positive_mask: Tensor | None = None) -> Tensor:
    """Symmetric CLIP loss (CE(s·I·Tᵀ) + CE(s·T·Iᵀ)) / 2, computed in float32 (or float64 if given).

    positive_mask (B, B) bool: pair (i, j) is a positive. Multi-positive cross-entropy with a
    target uniform over the positives: row i costs LSE_j(l_ij) - mean_{j in P_i} l_ij, where
    P_i = {j : mask[i, j]}; the text->image side uses the columns (mask.T) the same way. Every
    row and column needs at least one positive. With mask = identity this is the plain loss.
    """
    check_pair(image_features, text_features)
    check_scalar(logit_scale, "logit_scale", positive=True)
    acc = torch.float64 if image_features.dtype == torch.float64 else torch.float32
    img, txt = image_features.to(acc), text_features.to(acc)
    logits = _scalar(logit_scale, img) * img @ txt.T  # (B, B)
    if positive_mask is None:
        target = torch.arange(img.shape[0], device=img.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    check_positive_mask(positive_mask, img.shape[0], img.device)
    return (_multi_positive_ce(logits, positive_mask) + _multi_positive_ce(logits.T, positive_mask.T)) / 2


def siglip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                logit_bias: Tensor | float) -> Tensor:
    """Sigmoid loss -sum(logsigmoid(z ⊙ (s·I·Tᵀ + b))) / B, z = +1 on the diagonal, -1 elsewhere."""
    check_pair(image_features, text_features)
    check_scalar(logit_scale, "logit_scale", positive=True)
    check_scalar(logit_bias, "logit_bias", positive=False)
    acc = torch.float64 if image_features.dtype == torch.float64 else torch.float32
    img, txt = image_features.to(acc), text_features.to(acc)
    b = img.shape[0]
    logits = _scalar(logit_scale, img) * img @ txt.T + _scalar(logit_bias, img)  # (B, B)
    z = 2 * torch.eye(b, device=img.device, dtype=acc) - 1  # (B, B)
    return -F.logsigmoid(z * logits).sum() / b
