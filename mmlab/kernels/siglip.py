"""Tiled SigLIP loss: reference -> Triton kernels -> launchers -> autograd -> dispatch.

loss = (1/B) sum_ij softplus(-z_ij (s·<x_i, y_j> + b)), z = +1 on the diagonal, -1 elsewhere, and
d loss / d l_ij = -z_ij · sigmoid(-z_ij (l_ij + b)) / B. No row statistics are needed: the forward
keeps one partial sum per row, the backward recomputes each tile. Extra memory O(B).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmlab import validation
from mmlab.kernels import launch
from mmlab.kernels.launch import Blocks

__all__ = ["siglip_loss", "siglip_loss_reference"]


# 1. Reference in PyTorch, written to teach: materialises the (B, B) logits (`mmlab.align.siglip_loss`) -------

def _check(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
           logit_bias: Tensor | float) -> None:
    validation.feature_pair(image_features, text_features)
    validation.scalar("logit_scale", logit_scale, positive=True)
    validation.scalar("logit_bias", logit_bias)


def siglip_loss_reference(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                          logit_bias: Tensor | float) -> Tensor:
    """Sigmoid loss -sum(logsigmoid(z ⊙ (s·I·Tᵀ + b))) / B, z = +1 on the diagonal, -1 elsewhere.

    Features are used as given (the caller normalises); `logit_scale` is already exponentiated.
    Computed in float32 (or float64 if given)."""
    _check(image_features, text_features, logit_scale, logit_bias)
    acc = torch.float64 if image_features.dtype == torch.float64 else torch.float32
    img, txt = image_features.to(acc), text_features.to(acc)
    b = img.shape[0]
    logits = (validation.scalar_tensor(logit_scale, img, acc) * img @ txt.T
              + validation.scalar_tensor(logit_bias, img, acc))  # (B, B)
    z = 2 * torch.eye(b, device=img.device, dtype=acc) - 1  # (B, B)
    return -F.logsigmoid(z * logits).sum() / b


# 2. Kernels: mmlab.kernels.contrastive_tiles (LOSS="siglip"). 3. Launchers: mmlab.kernels.launch.

# 4. Autograd -----------------------------------------------------------------------------------

class _SigLIPSumTriton(torch.autograd.Function):
    """sum_ij softplus(-z_ij (l_ij + b)) by the tiled kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, blocks: Blocks | None) -> Tensor:
        per_row, _ = launch.rows_forward(x, y, loss=launch.SIGLIP, scale=scale, bias=bias, blocks=blocks)  # (B,)
        ctx.save_for_backward(x, y)
        ctx.scale, ctx.bias, ctx.blocks = scale.detach(), bias.detach(), blocks  # 0-d, on the device
        return per_row.sum()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, y = ctx.saved_tensors
        need_x, need_y, need_scale, need_bias = ctx.needs_input_grad[:4]
        dx, dy, dot_part, sum_part = launch.backward_sides(
            x, y, loss=launch.SIGLIP, scale=ctx.scale, bias=ctx.bias, coef=grad_out, blocks=ctx.blocks,
            need_x=need_x, need_y=need_y)
        dscale = dot_part.sum() if need_scale else None
        dbias = sum_part.sum() if need_bias else None
        return dx, dy, dscale, dbias, None


# 5. Public function -----------------------------------------------------------------------------

def siglip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                logit_bias: Tensor | float, backend: str = "auto", blocks: Blocks | None = None) -> Tensor:
    """SigLIP loss, same value as `siglip_loss_reference` (`mmlab.align.siglip_loss`); float32 result.

    backend as in `mmlab.kernels.info_nce`. logit_scale / logit_bias: floats or tensors (they get gradients).
    """
    if not launch.use_triton(backend, image_features):
        return siglip_loss_reference(image_features, text_features, logit_scale, logit_bias)
    _check(image_features, text_features, logit_scale, logit_bias)
    x, y = launch.check_triton_inputs(image_features, text_features)
    scale, bias = validation.scalar_tensor(logit_scale, x), validation.scalar_tensor(logit_bias, x)
    return _SigLIPSumTriton.apply(x, y, scale, bias, blocks) / x.shape[0]
