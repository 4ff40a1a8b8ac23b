"""A unified (single-stream) transformer with modality experts: the multiway transformer of VLMo (Bao et al.,
2022) and BEiT-3 (Wang et al., 2023).

Image patches and text tokens go through the same blocks. Every block's self-attention is shared by both
modalities (over the concatenated sequence when both are given, so every token attends to every other), while
the feed-forward network is chosen per token: a vision expert for image tokens, a language expert for text tokens.
With `vl_layers > 0` the top layers route a joint image-text input through a third, vision-language expert
instead (VLMo, section 2.2). The same weights therefore run as an image encoder, a text encoder (two forward passes,
a dual encoder for retrieval) or a fusion encoder (one pass over both).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.encoders.layers import (
    MLP,
    MultiHeadSelfAttention,
    add_cls_and_positions,
    cls_and_positions,
    position_embedding,
)
from mmlab.pretrain.config import MultiwayConfig

EXPERTS = ("image", "text", "vl")


class MultiwayBlock(nn.Module):
    """x + SharedAttn(LN(x)), then each token x + FFN_e(LN_e(x)) with e its expert (LayerNorm per expert too)."""

    def __init__(self, c: MultiwayConfig, with_vl: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)
        self.attn = MultiHeadSelfAttention(c.dim, c.heads, c.qkv_bias, c.dropout)
        names = EXPERTS if with_vl else EXPERTS[:2]
        self.norm2 = nn.ModuleDict({e: nn.LayerNorm(c.dim, eps=c.layer_norm_eps) for e in names})
        self.ffn = nn.ModuleDict({e: MLP(c.dim, c.mlp_dim, c.dropout) for e in names})

    def forward(self, x: Tensor, mask: Tensor | None, n_image: int, joint: bool) -> Tensor:
        """x (B, n_image + n_text, D), image tokens first; `joint` (both modalities present) uses the VL expert."""
        x = x + self.attn(self.norm1(x), mask)
        if joint and "vl" in self.ffn:
            return x + self.ffn["vl"](self.norm2["vl"](x))
        image, text = x[:, :n_image], x[:, n_image:]
        parts = []
        if n_image:
            parts.append(image + self.ffn["image"](self.norm2["image"](image)))
        if text.shape[1]:
            parts.append(text + self.ffn["text"](self.norm2["text"](text)))
        return torch.cat(parts, dim=1)  # (B, N, D)


class MultiwayTransformer(nn.Module):
    """images (B, C, H, W) and/or input_ids (B, L) [+ attention_mask] -> tokens.

    Layout: image only (B, 1 + P, D) = [image CLS, P patches]; text only (B, L, D) (its first token is the
    tokenizer's [CLS]); both (B, 1 + P + L, D), image tokens first. A learned modality-type embedding is added
    to each token (VLMo's)."""

    def __init__(self, config: MultiwayConfig):
        super().__init__()
        if not isinstance(config, MultiwayConfig):
            raise TypeError(f"config must be a MultiwayConfig, got {type(config).__name__}")
        c = config
        self.config, self.dim = c, c.dim
        self.patch_embed = nn.Conv2d(c.in_channels, c.dim, c.patch_size, stride=c.patch_size)
        self.cls_token, self.pos_embed = cls_and_positions(c.num_patches, c.dim)
        self.token_embed = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_token_id)
        self.text_pos_embed = position_embedding(c.max_length, c.dim)
        self.type_embed = nn.Parameter(torch.zeros(2, c.dim))  # 0 = image, 1 = text
        self.blocks = nn.ModuleList(MultiwayBlock(c, with_vl=i >= c.depth - c.vl_layers) for i in range(c.depth))
        self.norm = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)

    def embed_image(self, images: Tensor) -> Tensor:
        c = self.config
        validation.floating_batch("images", images, (c.in_channels, c.image_size, c.image_size))
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, P, D)
        return add_cls_and_positions(x, self.cls_token, self.pos_embed) + self.type_embed[0]  # (B, 1 + P, D)

    def embed_text(self, input_ids: Tensor) -> Tensor:
        c = self.config
        validation.require_tensor("input_ids", input_ids)
        if input_ids.ndim != 2 or not 0 < input_ids.shape[1] <= c.max_length:
            raise ValueError(f"input_ids must be (B, L) with 1 <= L <= {c.max_length}, got {tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be int64 or int32, got {input_ids.dtype}")
        if validation.on_host(input_ids) and input_ids.numel():
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= c.vocab_size:
                raise ValueError(f"token ids must be in [0, {c.vocab_size}), got range [{low}, {high}]")
        return self.token_embed(input_ids) + self.text_pos_embed[:, :input_ids.shape[1]] + self.type_embed[1]

    def forward(self, images: Tensor | None = None, input_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        if images is None and input_ids is None:
            raise ValueError("pass images, input_ids or both")
        if input_ids is None and attention_mask is not None:
            raise ValueError("attention_mask given without input_ids")
        parts, masks = [], []
        if images is not None:
            parts.append(self.embed_image(images))
            masks.append(torch.ones(parts[0].shape[:2], dtype=torch.bool, device=parts[0].device))
        if input_ids is not None:
            t = self.embed_text(input_ids)
            m = validation.keep_mask(attention_mask, t.shape[0], t.shape[1], t.device, name="attention_mask")
            parts.append(t)
            masks.append(torch.ones(t.shape[:2], dtype=torch.bool, device=t.device) if m is None else m)
        if len(parts) == 2 and parts[0].shape[0] != parts[1].shape[0]:
            raise ValueError(f"batch mismatch: images {parts[0].shape[0]} vs input_ids {parts[1].shape[0]}")
        x = torch.cat(parts, dim=1)  # (B, N, D)
        mask = torch.cat(masks, dim=1) if attention_mask is not None else None
        return self.run_blocks(x, mask, parts[0].shape[1] if images is not None else 0, joint=len(parts) == 2)

    def run_blocks(self, x: Tensor, mask: Tensor | None, n_image: int, joint: bool) -> Tensor:
        """The blocks and final norm on embedded tokens (`embed_image`, `embed_text`, image tokens first): x (B, N, D),
        mask (B, N) or None, `n_image` leading image tokens, `joint` when both modalities are present."""
        for block in self.blocks:
            x = block(x, mask, n_image, joint=joint)
        return self.norm(x)

    def image_cls_index(self) -> int:
        return 0

    def text_cls_index(self, with_image: bool) -> int:
        """Position of the text's [CLS] token: 0 for text alone, 1 + P after the image tokens."""
        return 1 + self.config.num_patches if with_image else 0
