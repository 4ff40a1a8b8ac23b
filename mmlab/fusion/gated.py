"""Gated fusion (gated multimodal unit, Arevalo et al., 2017): learned sigmoid gates weigh each modality."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.fusion.base import Fusion, classifier_head, masked_mean
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import IntRange


@register_fusion("gated")
class GatedFusion(Fusion):
    """h_m = tanh(W_m pool_m); g = sigmoid(W_g [pool_1; ...; pool_M]) per modality and unit; fused = sum g_m * h_m.

    Options: `width` (gated units, >= 1)."""

    family = "gated"
    search_space = {"width": IntRange(16, 128, log=True)}  # tuned by mmlab.fusion_bench

    def __init__(self, input_dims, output_dim, width: int = 64):
        super().__init__(input_dims, output_dim)
        self.check_options(width=width)
        self.norms = nn.ModuleDict({m: nn.LayerNorm(d) for m, d in self.input_dims.items()})
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.input_dims.items()})
        self.gate = nn.Linear(sum(self.input_dims.values()), len(self.modalities) * width)
        self.head = classifier_head(width, output_dim)
        self.width = width

    def _pooled_and_gates(self, tokens, masks) -> tuple[Tensor, Tensor]:
        tokens, masks = self.check_inputs(tokens, masks)
        pooled = [self.norms[m](masked_mean(tokens[m], masks[m])) for m in self.modalities]  # each (B, D_m)
        hidden = torch.stack([torch.tanh(self.proj[m](p)) for m, p in zip(self.modalities, pooled)], dim=1)  # (B, M, W)
        gates = torch.sigmoid(self.gate(torch.cat(pooled, dim=-1))).view(hidden.shape)  # (B, M, W)
        return hidden, gates

    def gate_values(self, tokens, masks=None) -> Tensor:
        """Mean gate per modality: (B, M), in `self.modalities` order."""
        return self._pooled_and_gates(tokens, masks)[1].mean(-1)

    def forward(self, tokens, masks=None):
        hidden, gates = self._pooled_and_gates(tokens, masks)
        return self.head((gates * hidden).sum(1))  # (B, output_dim)
