"""Early fusion: pool each modality, concatenate, one MLP decides."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, masked_mean
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import FloatRange, IntRange


@register_fusion("early")
class EarlyFusion(Fusion):
    """Masked-mean pool every modality, concatenate the pooled features, MLP to `output_dim`.

    Options: `width` (hidden units, >= 1), `dropout` in [0, 1)."""

    family = "early"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": IntRange(16, 128, log=True),
        "dropout": FloatRange(0.0, 0.3),
    }

    def __init__(self, input_dims, output_dim, width: int = 64, dropout: float = 0.0):
        super().__init__(input_dims, output_dim)
        self.check_options(width=width, dropout=dropout)
        total = sum(self.input_dims.values())
        self.mlp = nn.Sequential(
            nn.LayerNorm(total), nn.Linear(total, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, output_dim)
        )

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        pooled = [masked_mean(tokens[m], masks[m]) for m in self.modalities]  # each (B, D_m)
        return self.mlp(torch.cat(pooled, dim=-1))  # (B, output_dim)
