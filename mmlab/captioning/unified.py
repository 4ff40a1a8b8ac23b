"""A unified decoder: image tokens, an optional prompt (a question) and the text in one sequence, one transformer,
under a prefix-LM mask: bidirectional over the image and the prompt, causal over the text (the layout of
PaLI/UniLM-style prefix LMs and of decoder-only multimodal models that read image tokens inline, e.g. Kosmos-1).

Captioning: prefix = the image. Generative VQA: prefix = the image and the question; the answer is generated as
text. The image tokens come from the vision tower, projected to the decoder width; a learned type embedding
tells image from prompt positions, and prompt tokens get their own positions."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.captioning.base import CaptionDecoder, DecoderContext, check_ids
from mmlab.captioning.config import DecoderConfig
from mmlab.encoders.layers import masked_mean, position_embedding
from mmlab.validation import keep_mask


class UnifiedDecoder(CaptionDecoder):
    """[image tokens; prompt tokens] (bidirectional) + text (causal), one stack of GPT layers."""

    bidirectional_prefix = True

    def __init__(self, config: DecoderConfig, vision: nn.Module):
        super().__init__(config, vision)
        d = config.dim
        self.image_proj = nn.Linear(self.image_dim, d)
        self.prompt_pos = position_embedding(config.max_prompt_length, d)
        self.type_embed = nn.Parameter(torch.randn(2, d) * 0.02)  # 0: image position, 1: prompt position

    def context(self, images: Tensor, prompt_ids: Tensor | None = None,
                prompt_mask: Tensor | None = None) -> DecoderContext:
        image = self.image_proj(self.vision(images)) + self.type_embed[0]  # (B, N, D)
        b, n, _ = image.shape
        keep = torch.ones(b, n, dtype=torch.bool, device=image.device)
        if prompt_ids is None:
            if prompt_mask is not None:
                raise ValueError("prompt_mask without prompt_ids")
            return DecoderContext(image, keep, None)
        check_ids("prompt_ids", prompt_ids, self.config.vocab_size)
        if prompt_ids.shape[0] != b:
            raise ValueError(f"batch mismatch: {b} images, prompt_ids has {prompt_ids.shape[0]} rows")
        p = prompt_ids.shape[1]
        if p > self.config.max_prompt_length:
            raise ValueError(f"prompt of {p} tokens exceeds max_prompt_length {self.config.max_prompt_length}")
        prompt_keep = keep_mask(prompt_mask, b, p, image.device, name="prompt_mask")
        prompt_keep = torch.ones(b, p, dtype=torch.bool, device=image.device) if prompt_keep is None else prompt_keep
        prompt = self.token_embed(prompt_ids) + self.prompt_pos[:, :p] + self.type_embed[1]  # (B, P, D)
        return DecoderContext(torch.cat([image, prompt], 1), torch.cat([keep, prompt_keep], 1), None)

    def encode_prefix(self, images: Tensor, prompt_ids: Tensor | None = None,
                      prompt_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The prefix run through the layers on its own ((B, N + P, D) after the final norm, and its keep-mask).

        Under the prefix-LM mask the prefix never attends to the text, so these are exactly the prefix states of
        a full run: the features a classification head over the same backbone reads."""
        ctx = self.context(images, prompt_ids, prompt_mask)
        x, keep = ctx.prefix, ctx.prefix_keep
        allowed = keep[:, None, None, :] & torch.ones(1, 1, x.shape[1], 1, dtype=torch.bool, device=x.device)
        for layer in self.layers:
            x, _ = layer(x, allowed)
        return self.norm(x), keep

    def pooled_prefix(self, images: Tensor, prompt_ids: Tensor | None = None,
                      prompt_mask: Tensor | None = None) -> Tensor:
        """Mean of the real prefix states: (B, D)."""
        return masked_mean(*self.encode_prefix(images, prompt_ids, prompt_mask))
