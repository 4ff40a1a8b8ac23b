"""Tiled SigLIP loss: reference -> Triton kernels -> launchers -> autograd -> dispatch.

loss = (1/B) sum_ij softplus(-z_ij (s·<x_i, y_j> + b)), z = +1 on the diagonal, -1 elsewhere, and
d loss / d l_ij = -z_ij · sigmoid(-z_ij (l_ij + b)) / B. No row statistics are needed: the forward
keeps one partial sum per row, the backward recomputes each tile. Extra memory O(B).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mmlab.align.losses import check_pair, check_scalar
from mmlab.align.losses import siglip_loss as siglip_loss_reference
from mmlab.kernels import _launch
from mmlab.kernels._launch import Blocks

__all__ = ["siglip_loss", "siglip_loss_reference"]


# 1. Reference: mmlab.align.losses.siglip_loss (imported above as siglip_loss_reference).
# 2./3. Kernels in mmlab.kernels._contrastive_tiles (LOSS=1), launchers in mmlab.kernels._launch.

# 4. Autograd -----------------------------------------------------------------------------------

class _SigLIPSumTriton(torch.autograd.Function):
    """sum_ij softplus(-z_ij (l_ij + b)) by the tiled kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, blocks: Blocks | None) -> Tensor:
        s, b = float(scale), float(bias)
        per_row, _ = _launch.rows_forward(x, y, s, b, loss=1, blocks=blocks)  # (B,)
        ctx.save_for_backward(x, y)
        ctx.scale, ctx.bias, ctx.blocks = s, b, blocks
        return per_row.sum()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, y = ctx.saved_tensors
        need_x, need_y, need_scale, need_bias = ctx.needs_input_grad[:4]
        dx, dy, dot_part, sum_part = _launch.backward_sides(x, y, None, None, ctx.scale, ctx.bias, float(grad_out),
                                                            1, ctx.blocks, False, need_x, need_y)
        dscale = dot_part.sum() if need_scale else None
        dbias = sum_part.sum() if need_bias else None
        return dx, dy, dscale, dbias, None


# 5. Public function -----------------------------------------------------------------------------

def siglip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                logit_bias: Tensor | float, backend: str = "auto", blocks: Blocks | None = None) -> Tensor:
    """SigLIP loss, same value as `mmlab.align.siglip_loss`; float32 result.

    backend as in `mmlab.kernels.info_nce`. logit_scale / logit_bias: floats or tensors (they get gradients).
    """
    if not _launch.use_triton(backend, image_features):
        return siglip_loss_reference(image_features, text_features, logit_scale, logit_bias)
    check_pair(image_features, text_features)
    check_scalar(logit_scale, "logit_scale", positive=True)
    check_scalar(logit_bias, "logit_bias", positive=False)
    x, y = _launch.check_triton_inputs(image_features, text_features)
    scale, bias = _launch.scalar_tensor(logit_scale, x), _launch.scalar_tensor(logit_bias, x)
    return _SigLIPSumTriton.apply(x, y, scale, bias, blocks) / x.shape[0]
