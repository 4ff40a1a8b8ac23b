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
from torch import Tensor

from mmlab.align.losses import check_pair, check_positive_mask, check_scalar
from mmlab.align.losses import info_nce as info_nce_reference
from mmlab.kernels import _launch
from mmlab.kernels._launch import Blocks

__all__ = ["info_nce", "info_nce_reference", "info_nce_chunked"]


# 1. A PyTorch version of the tiling, written to teach (and used as the "chunked" baseline) ----------

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
    """Check the inputs, then the loss from `info_nce_sum(x, y, scale, diagonal)` (any implementation):
    with no mask it includes the positives itself; with a mask it returns the LSE sum and the mask term is added here."""
    check_pair(image_features, text_features)
    check_scalar(logit_scale, "logit_scale", positive=True)
    x, y = image_features, text_features
    scale = _launch.scalar_tensor(logit_scale, x)
    if positive_mask is None:
        total = info_nce_sum(x, y, scale, True)
    else:
        check_positive_mask(positive_mask, x.shape[0], x.device)
        total = info_nce_sum(x, y, scale, False) - _masked_positive_term(x, y, scale, positive_mask)
    return total / (2 * x.shape[0])


def info_nce_chunked(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                     positive_mask: Tensor | None = None, chunk: int = 1024) -> Tensor:
    """The same loss as the reference in plain PyTorch, chunk rows at a time (a baseline, and the idea)."""
    return _info_nce_from_sum(lambda x, y, s, diagonal: _InfoNCESumChunked.apply(x, y, s, diagonal, chunk),
                              image_features, text_features, logit_scale, positive_mask)


# 2. The Triton kernels live in mmlab.kernels._contrastive_tiles (imported on first use, so that
#    TRITON_INTERPRET set before that takes effect and the package imports without triton).
# 3. Launchers: mmlab.kernels._launch.rows_forward / rows_backward.

# 4. Autograd -----------------------------------------------------------------------------------

class _InfoNCESumTriton(torch.autograd.Function):
    """sum_i (r_i + c_i) [- 2·l_ii with `diagonal`] by the tiled kernels; saves only r and c (2·B floats).
    The backward launches one kernel per feature that needs a gradient (one only for a locked tower)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, diagonal: bool, blocks: Blocks | None) -> Tensor:
        s = float(scale)
        r, diag = _launch.rows_forward(x, y, s, 0.0, loss=0, blocks=blocks, diagonal=diagonal)  # (B,) image -> text
        c, _ = _launch.rows_forward(y, x, s, 0.0, loss=0, blocks=blocks)  # (B,) text -> image
        ctx.save_for_backward(x, y, r, c)
        ctx.scale, ctx.diagonal, ctx.blocks = s, diagonal, blocks
        return (r + c - 2 * diag).sum() if diagonal else r.sum() + c.sum()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, y, r, c = ctx.saved_tensors
        need_x, need_y, need_scale = ctx.needs_input_grad[:3]
        dx, dy, dot_part, _ = _launch.backward_sides(x, y, r, c, ctx.scale, 0.0, float(grad_out), 0, ctx.blocks,
                                                     ctx.diagonal, need_x, need_y)
        dscale = dot_part.sum() if need_scale else None
        return dx, dy, dscale, None, None


# 5. Public function -----------------------------------------------------------------------------

def info_nce(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
             positive_mask: Tensor | None = None, backend: str = "auto", blocks: Blocks | None = None) -> Tensor:
    """Symmetric InfoNCE, same value as `mmlab.align.info_nce`; float32 result.

    backend: "triton" (fused tiled kernels, CUDA or TRITON_INTERPRET=1), "torch" (the reference),
    "auto" (Triton for CUDA fp32/fp16/bf16 tensors of more than 4096 rows when triton is installed, else the
    reference, which is faster for small batches).
    Non-contiguous features are copied; logit_scale may be a float or a tensor (it gets a gradient).
    """
    if not _launch.use_triton(backend, image_features):
        return info_nce_reference(image_features, text_features, logit_scale, positive_mask=positive_mask)
    return _info_nce_from_sum(
        lambda x, y, s, diagonal: _InfoNCESumTriton.apply(*_launch.check_triton_inputs(x, y), s, diagonal, blocks),
        image_features, text_features, logit_scale, positive_mask)
