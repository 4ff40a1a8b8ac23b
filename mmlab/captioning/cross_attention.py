"""BLIP's captioner (Li et al., 2022, section 3.1): a causal text decoder whose every layer cross-attends to the
image tokens of a vision transformer after its self-attention (self-attention, cross-attention, feed-forward)."""
from __future__ import annotations

from torch import Tensor

from mmlab.captioning.base import CaptionDecoder, DecoderContext


class CrossAttentionDecoder(CaptionDecoder):
    """Text reads the image through cross-attention in every layer; the image tokens are its memory."""

    cross = "blip"

    def context(self, images: Tensor, prompt_ids: Tensor | None = None,
                prompt_mask: Tensor | None = None) -> DecoderContext:
        self._no_prompt(prompt_ids)
        return DecoderContext(None, None, self.vision(images))  # memory (B, N, Dv)
