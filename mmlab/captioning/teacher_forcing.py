"""Teacher forcing: train a decoder to predict each next token of the ground-truth caption from the tokens before it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmlab.validation import keep_mask, require_tensor


def teacher_forcing_loss(logits: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Next-token cross-entropy: logits (B, T, V) at position t are scored against input_ids[:, t + 1].

    Targets where `attention_mask` (B, T) is 0 (padding) are left out, so the loss is the mean over the real
    target tokens of the whole batch and does not depend on what the padded positions hold or predict."""
    require_tensor("logits", logits)
    require_tensor("input_ids", input_ids)
    if logits.ndim != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits must be (B, T, V) for input_ids (B, T) = {tuple(input_ids.shape)}, "
                         f"got {tuple(logits.shape)}")
    if input_ids.shape[1] < 2:
        raise ValueError(f"teacher forcing needs sequences of at least 2 tokens, got {input_ids.shape[1]}")
    targets = input_ids[:, 1:]  # (B, T - 1)
    keep = keep_mask(attention_mask, *input_ids.shape, input_ids.device, name="attention_mask")
    scored = torch.ones_like(targets, dtype=torch.bool) if keep is None else keep[:, 1:]
    if not bool(scored.any()):
        raise ValueError("attention_mask leaves no target token to score (every sequence is a single token)")
    return F.cross_entropy(logits[:, :-1][scored].float(), targets[scored])
