"""Text transformer: token + learned position embeddings, padding-aware attention, CLS or mean pooling."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.encoders.config import TextConfig
from mmlab.encoders.layers import EncoderOutput, Transformer, masked_mean, position_embedding
from mmlab.validation import keep_mask, on_host, require_tensor


class TextTransformer(nn.Module):
    """input_ids (B, L) [+ attention_mask (B, L), 1 = real token] -> tokens (B, L, D)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.token_embed = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_token_id)
        self.pos_embed = position_embedding(c.max_length, c.dim)
        self.transformer = Transformer.from_config(c)

    def _embed(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Check the inputs; return token + position embeddings (B, L, D) and the mask as bool (B, L) or None.

        The id range is checked only where the ids are on the host (no GPU synchronisation)."""
        require_tensor("input_ids", input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be a (B, L) tensor, got shape {tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be int64 or int32, got {input_ids.dtype}")
        b, length = input_ids.shape
        if length > self.config.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length {self.config.max_length}")
        if on_host(input_ids) and input_ids.numel():
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.config.vocab_size:
                raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), got range [{low}, {high}]")
        mask = keep_mask(attention_mask, b, length, input_ids.device, name="attention_mask")
        return self.token_embed(input_ids) + self.pos_embed[:, :length], mask  # (B, L, D)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, L) ids -> (B, L, D) tokens."""
        return self.transformer(*self._embed(input_ids, attention_mask))

    def forward_with_attention(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> EncoderOutput:
        """(B, L) ids -> tokens (B, L, D) and per-layer attention (B, heads, L, L); padded keys get weight 0."""
        return self.transformer.forward_with_attention(*self._embed(input_ids, attention_mask))

    def pool(self, tokens: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, L, D) -> (B, D): first token ([CLS]) or masked mean over real tokens."""
        return tokens[:, 0] if self.config.pool == "cls" else masked_mean(tokens, attention_mask)

    def pooled(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, L) ids -> (B, D)."""
        return self.pool(self(input_ids, attention_mask), attention_mask)
