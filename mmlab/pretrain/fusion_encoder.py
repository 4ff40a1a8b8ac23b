"""Fusion encoder (ALBEF, Li et al., 2021; BLIP, Li et al., 2022): text tokens that attend to image tokens.

Each layer is a BERT layer with cross-attention inserted (ALBEF section 3.1: "self-attention, cross-attention,
feed-forward"): text self-attention (padding-aware), then cross-attention from the text into the image tokens, then
the feed-forward network, each pre-norm and residual. The output is one token per text position; the [CLS]
position is the pair's joint representation (read by the ITM head) and every position feeds the MLM head.
"""
from __future__ import annotations

from torch import Tensor, nn

from mmlab import validation
from mmlab.encoders.layers import CrossAttentionBlock, MultiHeadSelfAttention
from mmlab.pretrain.config import FusionEncoderConfig


def tokens(name: str, x: Tensor, dim: int) -> Tensor:
    """`x` if it is a floating (B, N, dim) tensor with B, N >= 1 (values are not read: padding may hold anything)."""
    validation.require_tensor(name, x)
    if x.ndim != 3 or x.shape[2] != dim or 0 in x.shape:
        raise ValueError(f"{name} must be a (B, N, {dim}) tensor with B, N >= 1, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    return x


class FusionLayer(nn.Module):
    """x + SelfAttn(LN(x)), then `CrossAttentionBlock` (x + CrossAttn(LN(x), image), x + MLP(LN(x)))."""

    def __init__(self, c: FusionEncoderConfig):
        super().__init__()
        self.norm = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)
        self.self_attn = MultiHeadSelfAttention(c.dim, c.heads, c.qkv_bias, c.dropout)
        self.cross = CrossAttentionBlock(c.dim, c.heads, c.mlp_dim, context_dim=c.image_dim or c.dim,
                                         eps=c.layer_norm_eps, dropout=c.dropout)

    def forward(self, text: Tensor, text_mask: Tensor | None, image: Tensor, image_mask: Tensor | None) -> Tensor:
        text = text + self.self_attn(self.norm(text), text_mask)  # (B, L, D)
        return self.cross(text, image, image_mask)  # (B, L, D)


class FusionEncoder(nn.Module):
    """text tokens (B, L, D) [+ text_mask (B, L)], image tokens (B, N, Dv) [+ image_mask] -> fused (B, L, D)."""

    def __init__(self, config: FusionEncoderConfig):
        super().__init__()
        if not isinstance(config, FusionEncoderConfig):
            raise TypeError(f"config must be a FusionEncoderConfig, got {type(config).__name__}")
        self.config, self.dim = config, config.dim
        self.layers = nn.ModuleList(FusionLayer(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)

    def forward(self, text: Tensor, text_mask: Tensor | None, image: Tensor,
                image_mask: Tensor | None = None) -> Tensor:
        c = self.config
        tokens("text", text, c.dim)
        tokens("image", image, c.image_dim or c.dim)
        if image.shape[0] != text.shape[0]:
            raise ValueError(f"batch mismatch: text {text.shape[0]} vs image {image.shape[0]}")
        text_mask = validation.keep_mask(text_mask, text.shape[0], text.shape[1], text.device, name="text_mask")
        for layer in self.layers:
            text = layer(text, text_mask, image, image_mask)
        return self.norm(text)  # (B, L, D)
