"""Reading attention maps: attention rollout, and divided space-time attention written as dense maps.

Attention weights say how a layer mixes its value vectors, not which inputs the output depends on: they
ignore the values, the residual stream and the MLPs, and different weights can give the same prediction
(Jain & Wallace, 2019, "Attention is not Explanation"). Attention rollout (Abnar & Zuidema, 2020,
"Quantifying Attention Flow in Transformers") follows the mixing through the layers instead of reading one
layer: per layer it averages the heads, adds the identity for the residual connection, re-normalises the
rows, and multiplies the layers together. It is a heuristic too, not an attribution method.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmlab.validation import floating_tensor, positive_int


def attention_rollout(attentions: Sequence[Tensor], residual: bool = True) -> Tensor:
    """Attention rollout over a model's layers, first to last: per layer (B, heads, N, N) -> (B, N, N).

    For each layer A = mean over heads; with `residual`, A = (A + I) / 2 (each row still sums to 1 when the
    rows of A do; it is then re-normalised row by row, as in Abnar & Zuidema). The result is
    A_L @ ... @ A_2 @ A_1: row i says how much of token i's last-layer state is traced back to each input token.
    Rows of the result sum to 1.
    """
    if isinstance(attentions, Tensor) or not isinstance(attentions, Sequence) or len(attentions) == 0:
        raise TypeError(f"attentions must be a non-empty sequence of (B, heads, N, N) tensors, got "
                        f"{type(attentions).__name__}")
    rollout = None
    for i, a in enumerate(attentions):
        floating_tensor(f"attentions[{i}]", a, 4, "(B, heads, N, N)")
        if a.shape[-1] != a.shape[-2] or (rollout is not None and a.shape[-1] != rollout.shape[-1]) or \
                (rollout is not None and a.shape[0] != rollout.shape[0]):
            raise ValueError(f"attentions[{i}] must be (B, heads, N, N) with the same B and N as layer 0, "
                             f"got shape {tuple(a.shape)}")
        layer = a.mean(dim=1)  # (B, N, N)
        if residual:
            layer = layer + torch.eye(layer.shape[-1], dtype=layer.dtype, device=layer.device)
            layer = layer / layer.sum(dim=-1, keepdim=True)
        rollout = layer if rollout is None else layer @ rollout  # (B, N, N)
    return rollout


def divided_attention_dense(temporal: Tensor, spatial: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
    """A `DividedSpaceTimeBlock`'s weights as two dense (B, heads, N, N) maps over its N = 1 + F*P tokens.

    `temporal` (B*P, h, F, F) and `spatial` (B*F, h, 1 + P, 1 + P) are what its `forward_with_attention`
    returns. In the dense temporal map patch (t, p) has weight only on (s, p) for every frame s, and the CLS
    row is the identity (CLS is not changed by temporal attention). In the dense spatial map patch (t, p) has
    weight on CLS and the patches of frame t; the CLS row is the average of its F per-frame rows, each frame's
    patches weighted 1/F. Each row sums to 1, and the dense map applied to the value vectors gives the
    sub-layer's attention output exactly (before its output projection).
    """
    positive_int("num_frames", num_frames)
    floating_tensor("temporal", temporal, 4, "(B*P, heads, F, F)")
    floating_tensor("spatial", spatial, 4, "(B*F, heads, 1 + P, 1 + P)")
    f = num_frames
    bf, h, q, _ = spatial.shape
    p = q - 1
    if bf % f or temporal.shape[-1] != f or temporal.shape[1] != h or temporal.shape[0] * f != bf * p:
        raise ValueError(f"temporal {tuple(temporal.shape)} and spatial {tuple(spatial.shape)} do not fit "
                         f"num_frames={f}")
    b, n = bf // f, 1 + f * p
    t = temporal.reshape(b, p, h, f, f).permute(0, 2, 3, 4, 1)  # (B, h, F_query, F_key, P)
    t = torch.diag_embed(t).permute(0, 1, 2, 4, 3, 5)  # (B, h, F_query, P, F_key, P), zero across positions
    dense_t = temporal.new_zeros(b, h, n, n)
    dense_t[:, :, 0, 0] = 1.0
    dense_t[:, :, 1:, 1:] = t.reshape(b, h, f * p, f * p)
    s = spatial.reshape(b, f, h, q, q).transpose(1, 2)  # (B, h, F, 1 + P, 1 + P)
    patches = torch.diag_embed(s[..., 1:, 1:].permute(0, 1, 3, 4, 2))  # (B, h, P, P, F, F), zero across frames
    dense_s = spatial.new_zeros(b, h, n, n)
    dense_s[:, :, 1:, 1:] = patches.permute(0, 1, 4, 2, 5, 3).reshape(b, h, f * p, f * p)
    dense_s[:, :, 1:, 0] = s[..., 1:, 0].reshape(b, h, f * p)
    dense_s[:, :, 0, 0] = s[..., 0, 0].mean(dim=2)
    dense_s[:, :, 0, 1:] = s[..., 0, 1:].reshape(b, h, f * p) / f
    return dense_t, dense_s
