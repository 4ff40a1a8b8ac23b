"""Single-stream fusion: every token of every modality in one transformer (unified / GPT-4V style)."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, Projections, classifier_head, self_attention_layer
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import Choice, FloatRange, IntRange


@register_fusion("single_stream")
class SingleStreamFusion(Fusion):
    """Project all tokens to `width`, add modality-type embeddings, prepend a CLS token, self-attend.

    Options: `width` (>= 1), `depth` (layers, >= 1: with none the CLS output would be a constant),
    `heads` (>= 1, dividing `width`), `mlp_ratio` (integer >= 1), `dropout` in [0, 1)."""

    family = "single_stream"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": Choice((16, 32)),
        "heads": Choice((1, 2)),
        "dropout": FloatRange(0.0, 0.2),
        "depth": IntRange(1, 2),
    }

    def __init__(self, input_dims, output_dim, width: int = 32, depth: int = 1, heads: int = 2,
                 mlp_ratio: int = 2, dropout: float = 0.0):
        super().__init__(input_dims, output_dim)
        self.check_options(width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout)
        self.project = Projections(self.input_dims, width)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.layers = nn.ModuleList(self_attention_layer(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.head = classifier_head(width, output_dim)

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        batch = tokens[self.modalities[0]].shape[0]
        seq = [self.cls.expand(batch, -1, -1)] + [self.project(m, tokens[m]) for m in self.modalities]
        keep = [masks[self.modalities[0]].new_ones(batch, 1)] + [masks[m] for m in self.modalities]
        x = torch.cat(seq, dim=1)  # (B, 1 + sum N_m, width)
        keep = torch.cat(keep, dim=1)  # (B, 1 + sum N_m)
        for layer in self.layers:
            x = layer(x, keep)
        return self.head(x[:, 0])  # (B, output_dim)
