"""Co-attention (ViLBERT, Lu et al., 2019; LXMERT, Tan & Bansal, 2019): two streams that attend to each other.

Each layer follows LXMERT's cross-modality layer (section 2.2): both cross-attentions read the layer's inputs (text
queries attend to the image tokens and image queries to the text tokens, simultaneously), then each stream runs its
own self-attention and feed-forward network. Here the cross-attention step is the course's `CrossAttentionBlock`,
which carries its own feed-forward network, so each stream has two per layer (LXMERT has one, after
self-attention). The pair's joint representation is the text stream's [CLS] token, as LXMERT's.
"""
from __future__ import annotations

from torch import Tensor, nn

from mmlab import validation
from mmlab.encoders.layers import CrossAttentionBlock, TransformerBlock
from mmlab.pretrain.config import CoAttentionConfig
from mmlab.pretrain.fusion_encoder import tokens


class CoAttentionLayer(nn.Module):
    """(text, image) -> (text', image'): bidirectional cross-attention, then self-attention in each stream."""

    def __init__(self, c: CoAttentionConfig):
        super().__init__()
        args = (c.dim, c.heads, c.mlp_dim)
        self.text_from_image = CrossAttentionBlock(*args, eps=c.layer_norm_eps, dropout=c.dropout)
        self.image_from_text = CrossAttentionBlock(*args, eps=c.layer_norm_eps, dropout=c.dropout)
        self.text_self = TransformerBlock(*args, c.qkv_bias, c.layer_norm_eps, c.dropout)
        self.image_self = TransformerBlock(*args, c.qkv_bias, c.layer_norm_eps, c.dropout)

    def forward(self, text: Tensor, text_mask: Tensor | None, image: Tensor,
                image_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        t = self.text_from_image(text, image, image_mask)  # (B, L, D), both from the layer's inputs
        v = self.image_from_text(image, text, text_mask)  # (B, N, D)
        return self.text_self(t, text_mask), self.image_self(v, image_mask)


class CoAttentionEncoder(nn.Module):
    """text (B, L, D) [+ text_mask], image (B, N, D) [+ image_mask] -> (text (B, L, D), image (B, N, D))."""

    def __init__(self, config: CoAttentionConfig):
        super().__init__()
        if not isinstance(config, CoAttentionConfig):
            raise TypeError(f"config must be a CoAttentionConfig, got {type(config).__name__}")
        self.config, self.dim = config, config.dim
        self.layers = nn.ModuleList(CoAttentionLayer(config) for _ in range(config.depth))
        self.text_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.image_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)

    def forward(self, text: Tensor, text_mask: Tensor | None, image: Tensor,
                image_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        d = self.config.dim
        tokens("text", text, d)
        tokens("image", image, d)
        if image.shape[0] != text.shape[0]:
            raise ValueError(f"batch mismatch: text {text.shape[0]} vs image {image.shape[0]}")
        text_mask = validation.keep_mask(text_mask, text.shape[0], text.shape[1], text.device, name="text_mask")
        image_mask = validation.keep_mask(image_mask, image.shape[0], image.shape[1], image.device,
                                          name="image_mask")
        for layer in self.layers:
            text, image = layer(text, text_mask, image, image_mask)
        return self.text_norm(text), self.image_norm(image)
