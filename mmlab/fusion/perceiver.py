"""Perceiver-style latent fusion (Jaegle et al., 2021): a small learned latent array cross-attends
to all tokens of all modalities, then self-attends; cost grows linearly with the token count."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.encoders.layers import CrossAttentionBlock
from mmlab.fusion.base import Fusion, Projections, classifier_head, self_attention_layer
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import Choice, FloatRange, IntRange


@register_fusion("perceiver")
class PerceiverFusion(Fusion):
    """Latents (n_latents, width) <- cross-attention over every projected token (+ type embedding),
    then `depth` self-attention layers on the latents; mean latent -> head.

    Options: `width` (>= 1), `n_latents` (>= 1), `depth` (self-attention layers after the cross-attention,
    >= 0: with 0 the latents read the tokens once and are pooled), `heads` (>= 1, dividing `width`),
    `mlp_ratio` (integer >= 1), `dropout` in [0, 1)."""

    family = "perceiver"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": Choice((16, 32)),
        "heads": Choice((1, 2)),
        "dropout": FloatRange(0.0, 0.2),
        "depth": IntRange(1, 2),
        "n_latents": IntRange(4, 16),
    }

    def __init__(self, input_dims, output_dim, width: int = 32, n_latents: int = 8, depth: int = 1,
                 heads: int = 2, mlp_ratio: int = 2, dropout: float = 0.0):
        super().__init__(input_dims, output_dim)
        self.check_options(width=width, n_latents=n_latents, depth=depth, heads=heads, mlp_ratio=mlp_ratio,
                           dropout=dropout, min_depth=0)
        self.project = Projections(self.input_dims, width)
        self.latents = nn.Parameter(0.02 * torch.randn(1, n_latents, width))
        self.cross = CrossAttentionBlock(width, heads, mlp_ratio * width, dropout=dropout)
        self.layers = nn.ModuleList(self_attention_layer(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.head = classifier_head(width, output_dim)

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        inputs = torch.cat([self.project(m, tokens[m]) for m in self.modalities], dim=1)  # (B, N, W)
        keep = torch.cat([masks[m] for m in self.modalities], dim=1)  # (B, N)
        z = self.cross(self.latents.expand(inputs.shape[0], -1, -1), inputs, keep)  # (B, L, W)
        for layer in self.layers:
            z = layer(z)
        return self.head(z.mean(1))  # (B, output_dim)
