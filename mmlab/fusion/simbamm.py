"""Late-fusion transformer over per-modality tokens, in the style of SimBaMM.

SimBaMM ("Simple Baseline for Multimodal Learning"; Rheude, Eils and Wild, 2025, "Fusion or Confusion?
Multimodal Complexity Is Not All You Need", arXiv:2512.22991) is described there as a late-fusion
Transformer: each modality is encoded on its own, and a Transformer fuses the per-modality representations.
This module is our reading of that description, not a port of their code: every modality's tokens pass
through `depth` self-attention layers of their own (no token of one modality sees another modality), are
pooled (masked mean) into one token per modality, and `fusion_depth` self-attention layers over
[CLS, one token per modality] (with modality-type embeddings) produce the CLS output for the head.
"""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, Projections, classifier_head, masked_mean, self_attention_layer
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import Choice, FloatRange, IntRange


@register_fusion("simbamm")
class SimBaMMFusion(Fusion):
    """Per-modality transformer encoders, pooled to one token each, then a transformer over those tokens.

    Options: `width` (>= 1), `depth` (per-modality layers, >= 1), `fusion_depth` (layers over the modality
    tokens, >= 1), `heads` (>= 1, dividing `width`), `mlp_ratio` (integer >= 1), `dropout` in [0, 1)."""

    family = "simbamm"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": Choice((16, 32)),
        "heads": Choice((1, 2)),
        "dropout": FloatRange(0.0, 0.2),
        "depth": IntRange(1, 2),
        "fusion_depth": IntRange(1, 2),
    }

    def __init__(self, input_dims, output_dim, width: int = 32, depth: int = 1, fusion_depth: int = 1,
                 heads: int = 2, mlp_ratio: int = 2, dropout: float = 0.0):
        super().__init__(input_dims, output_dim)
        self.check_options(width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout)
        self.check_options(depth=fusion_depth)
        self.project = Projections(self.input_dims, width, type_embeddings=False)
        self.encoders = nn.ModuleDict({
            m: nn.ModuleList(self_attention_layer(width, heads, mlp_ratio, dropout) for _ in range(depth))
            for m in self.modalities
        })
        self.type_embed = nn.ParameterDict({m: nn.Parameter(0.02 * torch.randn(width)) for m in self.modalities})
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.fusion_layers = nn.ModuleList(
            self_attention_layer(width, heads, mlp_ratio, dropout) for _ in range(fusion_depth))
        self.head = classifier_head(width, output_dim)

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        batch = tokens[self.modalities[0]].shape[0]
        summary = [self.cls.expand(batch, -1, -1)]
        for m in self.modalities:
            x = self.project(m, tokens[m])  # (B, N_m, width)
            for layer in self.encoders[m]:
                x = layer(x, masks[m])
            summary.append((masked_mean(x, masks[m]) + self.type_embed[m])[:, None])  # (B, 1, width)
        x = torch.cat(summary, dim=1)  # (B, 1 + M, width)
        for layer in self.fusion_layers:
            x = layer(x)
        return self.head(x[:, 0])  # (B, output_dim)
