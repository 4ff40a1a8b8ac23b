"""Tiled symmetric InfoNCE (CLIP) loss: reference -> Triton kernels -> launchers -> autograd -> dispatch.

With l_ij = s·<x_i, y_j>, r_i = LSE_j l_ij (image -> text) and c_j = LSE_i l_ij (text -> image):

    loss = (sum_i (r_i + c_i - 2·l_ii)) / (2B)

and d loss / d l_ij = (exp(l_ij - r_i) + exp(l_ij - c_j) - 2·δ_ij) / (2B). Only r and c (O(B)) are kept
between forward and backward; the backward recomputes each logit tile (flash-attention style). The
positives l_ii are computed by the forward kernel and their -2·δ_ij is folded into the backward's tiles,
so no (B, D) temporaries are made beside the gradients.

positive_mask: the LSE part is the same; only the positive term changes to sum_ij W_ij l_ij with
W = M / rowcount + M / colcount, computed in PyTorch from the (already B x B) mask. So the mask path
runs the kernels too, but holds B x B float weights for that term (O(B^2) memory, like the mask itself).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmlab import validation
from mmlab.kernels import launch
from mmlab.kernels.launch import Blocks

__all__ = ["info_nce", "info_nce_chunked", "info_nce_reference"]


# 1. References in PyTorch, written to teach ------------------------------------------------------
#    info_nce_reference materialises the (B, B) logits: clear, and the ground truth (`mmlab.align.info_nce`).
#    info_nce_chunked is the tiling idea in PyTorch, chunk rows at a time (and the benchmark's "chunked" baseline).

def _multi_positive_ce(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean over rows of -(1/|P_i|) sum_{j in P_i} log softmax(logits_i)_j."""
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (B, B)
    per_row = -(log_p * mask).sum(dim=1) / mask.sum(dim=1)  # (B,)
    return per_row.mean()


def info_nce_reference(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                       positive_mask: Tensor | None = None) -> Tensor:
    """Symmetric CLIP loss (CE(s·I·Tᵀ) + CE(s·T·Iᵀ)) / 2, computed in float32 (or float64 if given).

    Features are used as given (the caller normalises); `logit_scale` is already exponentiated.
    positive_mask (B, B) bool: pair (i, j) is a positive. Multi-positive cross-entropy with a
    target uniform over the positives: row i costs LSE_j(l_ij) - mean_{j in P_i} l_ij, where
    P_i = {j : mask[i, j]}; the text->image side uses the columns (mask.T) the same way. Every
    row and column needs at least one positive. With mask = identity this is the plain loss.
    """
    validation.feature_pair(image_features, text_features)
    validation.scalar("logit_scale", logit_scale, positive=True)
    acc = torch.float64 if image_features.dtype == torch.float64 else torch.float32
    img, txt = image_features.to(acc), text_features.to(acc)
    logits = validation.scalar_tensor(logit_scale, img, acc) * img @ txt.T  # (B, B)
    if positive_mask is None:
        target = torch.arange(img.shape[0], device=img.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    validation.positive_mask(positive_mask, img.shape[0], img.device)
    return (_multi_positive_ce(logits, positive_mask) + _multi_positive_ce(logits.T, positive_mask.T)) / 2


def _lse_rows_chunked(a: Tensor, b: Tensor, scale: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Row-wise LSE of s·a·bᵀ and its diagonal, `chunk` rows at a time: holds (chunk, B) logits, never (B, B)."""
    lse, diag = [], []
    for i in range(0, a.shape[0], chunk):
        logits = scale * a[i:i + chunk].float() @ b.float().T  # (chunk, B)
        lse.append(torch.logsumexp(logits, dim=1))
        diag.append(logits.diagonal(offset=i))
    return torch.cat(lse), torch.cat(diag)  # (B,), (B,)


class _InfoNCESumChunked(torch.autograd.Function):
    """sum_i (r_i + c_i) [- 2·l_ii with `diagonal`]: chunked forward, recomputing backward (O(chunk·B) memory)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, diagonal: bool, chunk: int) -> Tensor:
        r, diag = _lse_rows_chunked(x, y, scale, chunk)  # (B,) each
        c, _ = _lse_rows_chunked(y, x, scale, chunk)  # (B,)
        ctx.save_for_backward(x, y, scale, r, c)
        ctx.chunk, ctx.diagonal = chunk, diagonal
        return (r + c - 2 * diag).sum() if diagonal else r.sum() + c.sum()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, y, scale, r, c = ctx.saved_tensors
        xf, yf = x.float(), y.float()
        dx, dy = torch.zeros_like(xf), torch.zeros_like(yf)
        dscale = torch.zeros((), dtype=torch.float32, device=x.device)
        for i in range(0, x.shape[0], ctx.chunk):
            dots = xf[i:i + ctx.chunk] @ yf.T  # (chunk, B), recomputed
            logits = scale * dots
            g = torch.exp(logits - r[i:i + ctx.chunk, None]) + torch.exp(logits - c[None, :])
            if ctx.diagonal:
                g.diagonal(offset=i).sub_(2.0)
            g = grad_out * g
            dx[i:i + ctx.chunk] = scale * g @ yf
            dy += scale * g.T @ xf[i:i + ctx.chunk]
            dscale += (g * dots).sum()
        return dx.to(x.dtype), dy.to(y.dtype), dscale if ctx.needs_input_grad[2] else None, None, None


def _masked_positive_term(x: Tensor, y: Tensor, scale: Tensor, positive_mask: Tensor) -> Tensor:
    """sum_ij W_ij l_ij with W = M/rowcount + M/colcount (the diagonal's 2·sum_i l_ii when M = I)."""
    m = positive_mask.float()  # (B, B)
    w = m / m.sum(dim=1, keepdim=True) + m / m.sum(dim=0, keepdim=True)  # (B, B)
    return scale * (x.float() * (w @ y.float())).sum()


def _info_nce_from_sum(info_nce_sum, image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                       positive_mask: Tensor | None) -> Tensor:
    """Check the inputs, then the loss from `info_nce_sum(x, y, scale, diagonal)` (any implementation): with no
    mask it includes the positives itself; with a mask it returns the LSE sum and the mask term is added here."""
    validation.feature_pair(image_features, text_features)
    validation.scalar("logit_scale", logit_scale, positive=True)
    x, y = image_features, text_features
    scale = validation.scalar_tensor(logit_scale, x)
    if positive_mask is None:
        total = info_nce_sum(x, y, scale, True)
    else:
        validation.positive_mask(positive_mask, x.shape[0], x.device)
        total = info_nce_sum(x, y, scale, False) - _masked_positive_term(x, y, scale, positive_mask)
    return total / (2 * x.shape[0])


def info_nce_chunked(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                     positive_mask: Tensor | None = None, chunk: int = 1024) -> Tensor:
    """The same loss as the reference in plain PyTorch, chunk rows at a time (a baseline, and the idea)."""
    return _info_nce_from_sum(lambda x, y, s, diagonal: _InfoNCESumChunked.apply(x, y, s, diagonal, chunk),
                              image_features, text_features, logit_scale, positive_mask)


# 2. Kernels: mmlab.kernels.contrastive_tiles (LOSS="info_nce"), imported on the first launch, so that
#    TRITON_INTERPRET set before that takes effect and the package imports without triton.
# 3. Launchers: mmlab.kernels.launch.rows_forward / backward_sides.

# 4. Autograd -----------------------------------------------------------------------------------

class _InfoNCESumTriton(torch.autograd.Function):
    """sum_i (r_i + c_i) [- 2·l_ii with `diagonal`] by the tiled kernels; saves only r and c (2·B floats).
    The backward launches one kernel per feature that needs a gradient (one only for a locked tower)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, diagonal: bool, blocks: Blocks | None) -> Tensor:
        common = dict(loss=launch.INFO_NCE, scale=scale, blocks=blocks)
        r, diag = launch.rows_forward(x, y, diagonal=diagonal, **common)  # (B,) image -> text
        c, _ = launch.rows_forward(y, x, **common)  # (B,) text -> image
        ctx.save_for_backward(x, y, r, c)
        ctx.scale, ctx.diagonal, ctx.blocks = scale.detach(), diagonal, blocks  # scale: 0-d, on the device
        return (r + c - 2 * diag).sum() if diagonal else r.sum() + c.sum()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, y, r, c = ctx.saved_tensors
        need_x, need_y, need_scale = ctx.needs_input_grad[:3]
        dx, dy, dot_part, _ = launch.backward_sides(
            x, y, loss=launch.INFO_NCE, scale=ctx.scale, coef=grad_out, lse_x=r, lse_y=c, blocks=ctx.blocks,
            diagonal=ctx.diagonal, need_x=need_x, need_y=need_y)
        dscale = dot_part.sum() if need_scale else None
        return dx, dy, dscale, None, None


# 5. Public function -----------------------------------------------------------------------------

def info_nce(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
             positive_mask: Tensor | None = None, backend: str = "auto", blocks: Blocks | None = None) -> Tensor:
    """Symmetric InfoNCE, same value as `info_nce_reference` (`mmlab.align.info_nce`); float32 result.

    backend: "triton" (fused tiled kernels, CUDA or TRITON_INTERPRET=1), "torch" (the reference),
    "auto" (Triton for CUDA fp32/fp16/bf16 tensors of more than `launch.AUTO_MAX_REFERENCE_BATCH` rows when
    triton is installed, else the reference, which is faster for small batches).
    Non-contiguous features are copied; logit_scale may be a float or a tensor (it gets a gradient).
    """
    if not launch.use_triton(backend, image_features):
        return info_nce_reference(image_features, text_features, logit_scale, positive_mask=positive_mask)
    return _info_nce_from_sum(
        lambda x, y, s, diagonal: _InfoNCESumTriton.apply(*launch.check_triton_inputs(x, y), s, diagonal, blocks),
        image_features, text_features, logit_scale, positive_mask)
