"""TextToImage: prompts -> Shapes-World images, the DiT velocity model and the frozen caption embedder together.

Pixels in [0, 1] are mapped to [-1, 1] for the flow (the noise's scale) and back, clamped, after sampling.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mmlab import validation
from mmlab.diffusion.dit import DiT
from mmlab.diffusion.flow import check_sampling, euler_sample
from mmlab.diffusion.text_condition import CaptionEmbedder


def to_model_range(images: Tensor) -> Tensor:
    return images * 2 - 1


def to_pixels(x: Tensor) -> Tensor:
    return ((x + 1) / 2).clamp(0, 1)


class TextToImage:
    """`generate(prompts, guidance_scale, steps, seed)` -> (B, 3, H, W) images in [0, 1]."""

    def __init__(self, dit: DiT, embedder: CaptionEmbedder | None = None):
        self.dit = validation.require_module("dit", dit)
        self.embedder = embedder or CaptionEmbedder()

    @torch.no_grad()
    def generate(self, prompts: list[str], guidance_scale: float = 3.0, steps: int = 16, seed: int = 0,
                 batch_size: int = 256) -> Tensor:
        prompts = validation.str_list("prompts", prompts)
        check_sampling(steps, guidance_scale)
        validation.non_negative_int("seed", seed)
        validation.positive_int("batch_size", batch_size)
        captions = self.embedder(prompts)  # (B, 384)
        c = self.dit.config
        generator = torch.Generator().manual_seed(seed)
        self.dit.eval()
        out = [euler_sample(self.dit, captions[i:i + batch_size], (c.channels, c.image_size, c.image_size), steps,
                            guidance_scale, generator) for i in range(0, len(prompts), batch_size)]
        return to_pixels(torch.cat(out))

