"""Flamingo's way of reading the image (Alayrac et al., 2022): tanh-gated cross-attention layers in front of each
language-model layer, gates initialised at 0 so the untrained decoder is exactly a text-only language model.

Flamingo keeps its language model frozen and resamples the image into a few latents (the Perceiver resampler);
here everything is trained from scratch and the decoder attends to all image tokens, so the difference from
`CrossAttentionDecoder` is the gated cross-attention layer alone."""
from __future__ import annotations

import torch
from torch import Tensor

from mmlab.captioning.base import CaptionDecoder, DecoderContext


class FlamingoDecoder(CaptionDecoder):
    """Gated XATTN-DENSE, then self-attention and feed-forward, in every layer."""

    cross = "flamingo"

    def context(self, images: Tensor, prompt_ids: Tensor | None = None,
                prompt_mask: Tensor | None = None) -> DecoderContext:
        self._no_prompt(prompt_ids)
        return DecoderContext(None, None, self.vision(images))  # memory (B, N, Dv)

    def gates(self) -> list[tuple[float, float]]:
        """(tanh(attention gate), tanh(feed-forward gate)) per layer: 0 = the image is ignored."""
        return [(float(torch.tanh(layer.gated.attn_gate.detach())), float(torch.tanh(layer.gated.ffw_gate.detach())))
                for layer in self.layers]
