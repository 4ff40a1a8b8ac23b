"""Text transformer: token + learned position embeddings, padding-aware attention, CLS or mean pooling."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.encoders.config import TextConfig
from mmlab.encoders.layers import Transformer, masked_mean


class TextTransformer(nn.Module):
    """input_ids (B, L) [+ attention_mask (B, L), 1 = real token] -> tokens (B, L, D)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.token_embed = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_token_id)
        self.pos_embed = nn.Parameter(torch.randn(1, c.max_length, c.dim) * 0.02)
        self.transformer = Transformer(c.dim, c.depth, c.heads, c.mlp_dim, c.qkv_bias, c.layer_norm_eps, c.dropout)

    def _check(self, input_ids: Tensor, attention_mask: Tensor | None) -> None:
        if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
            raise ValueError(f"input_ids must be a (B, L) tensor, got {getattr(input_ids, 'shape', type(input_ids))}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be int64 or int32, got {input_ids.dtype}")
        if input_ids.shape[1] > self.config.max_length:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_length {self.config.max_length}")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), got range "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, return_attention: bool = False):
        """(B, L) ids -> (B, L, D) tokens [, per-layer attention]."""
        self._check(input_ids, attention_mask)
        x = self.token_embed(input_ids) + self.pos_embed[:, : input_ids.shape[1]]  # (B, L, D)
        return self.transformer(x, attention_mask, return_attention=return_attention)

    def pool(self, tokens: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, L, D) -> (B, D): first token ([CLS]) or masked mean over real tokens."""
        return tokens[:, 0] if self.config.pool == "cls" else masked_mean(tokens, attention_mask)

    def pooled(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, L) ids -> (B, D)."""
        return self.pool(self(input_ids, attention_mask), attention_mask)
