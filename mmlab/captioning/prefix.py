"""ClipCap (Mokady et al., 2021): the pooled image embedding is mapped by an MLP to `prefix_length` embeddings
that the decoder reads in front of the caption, in one causal sequence (a GPT over [prefix; caption]).

ClipCap's MLP mapping network: Linear(Dv, k*D/2) -> tanh -> Linear(k*D/2, k*D), reshaped to k prefix embeddings
(ClipCap keeps CLIP and optionally GPT-2 frozen; here the tower and the decoder train with it)."""
from __future__ import annotations

from torch import Tensor, nn

from mmlab.captioning.base import CaptionDecoder, DecoderContext
from mmlab.captioning.config import DecoderConfig


class PrefixDecoder(CaptionDecoder):
    """One pooled image vector -> k prefix embeddings -> causal decoder over [prefix; text]."""

    def __init__(self, config: DecoderConfig, vision: nn.Module):
        super().__init__(config, vision)
        k, d = config.prefix_length, config.dim
        self.mapping = nn.Sequential(nn.Linear(self.image_dim, k * d // 2), nn.Tanh(), nn.Linear(k * d // 2, k * d))

    def context(self, images: Tensor, prompt_ids: Tensor | None = None,
                prompt_mask: Tensor | None = None) -> DecoderContext:
        self._no_prompt(prompt_ids)
        pooled = self.vision.pool(self.vision(images))  # (B, Dv)
        b, k = pooled.shape[0], self.config.prefix_length
        prefix = self.mapping(pooled).view(b, k, self.config.dim)  # (B, k, D)
        return DecoderContext(prefix, pooled.new_ones(b, k, dtype=bool), None)
