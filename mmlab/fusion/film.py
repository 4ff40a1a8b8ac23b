"""FiLM (Perez et al., 2018): the other modalities predict a per-channel scale and shift
that modulate the target modality's features, layer by layer."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, classifier_head, masked_mean, pick_modality
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import IntRange


@register_fusion("film")
class FiLMFusion(Fusion):
    """`target` (default "image" if present, else the first modality) is modulated by the pooled others:
    per layer h = W x; x = x + relu((1 + gamma) * h + beta), gamma/beta = Linear(condition).

    Options: `target` (a modality name or None), `width` (>= 1), `depth` (FiLM layers, >= 1: with none
    the condition would not reach the output)."""

    family = "film"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": IntRange(16, 64, log=True),
        "depth": IntRange(1, 3),
    }

    def __init__(self, input_dims, output_dim, target: str | None = None, width: int = 32, depth: int = 2):
        super().__init__(input_dims, output_dim, min_modalities=2)
        self.check_options(width=width, depth=depth)
        self.target = pick_modality(self.input_dims, target, "image", "target", self.family)
        self.conditions = [m for m in self.modalities if m != self.target]
        cond_dim = sum(self.input_dims[m] for m in self.conditions)
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.film = nn.Linear(cond_dim, 2 * depth * width)
        self.proj = nn.Linear(self.input_dims[self.target], width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = classifier_head(width, output_dim)
        self.depth, self.width = depth, width

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        condition = torch.cat([masked_mean(tokens[m], masks[m]) for m in self.conditions], dim=-1)  # (B, C)
        params = self.film(self.cond_norm(condition)).view(-1, self.depth, 2, 1, self.width)  # (B, L, 2, 1, W)
        x = self.proj(tokens[self.target])  # (B, N, W)
        for i, layer in enumerate(self.layers):
            gamma, beta = params[:, i, 0], params[:, i, 1]  # (B, 1, W) each
            x = x + torch.relu((1 + gamma) * layer(x) + beta)
        return self.head(masked_mean(x, masks[self.target]))  # (B, output_dim)
