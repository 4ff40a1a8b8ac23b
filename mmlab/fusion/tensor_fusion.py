"""Tensor fusion (TFN, Zadeh et al., 2017): outer product of the modality vectors, each with a 1 appended,
so unimodal, bimodal and higher-order interaction terms all appear in one flat vector."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, masked_mean
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import IntRange


@register_fusion("tensor")
class TensorFusion(Fusion):
    """z_m = [W_m pool_m, 1]; z = z_1 (x) z_2 (x) ... flattened (prod(d+1) features); MLP to `output_dim`.

    Options: `tensor_dim` (d, >= 1), `width` (MLP hidden units, >= 1), `max_features` (>= 1: a larger
    (d + 1) ** M is a ValueError rather than an out-of-memory)."""

    family = "tensor"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "tensor_dim": IntRange(4, 16),
        "width": IntRange(16, 128, log=True),
    }

    def __init__(self, input_dims, output_dim, tensor_dim: int = 8, width: int = 64, max_features: int = 100_000):
        super().__init__(input_dims, output_dim)
        self.check_options(tensor_dim=tensor_dim, width=width, max_features=max_features)
        features = (tensor_dim + 1) ** len(self.modalities)
        if features > max_features:
            raise ValueError(
                f"tensor fusion of {len(self.modalities)} modalities at tensor_dim={tensor_dim} has {features} "
                f"features (> max_features={max_features}); lower tensor_dim or use 'lmf'"
            )
        self.proj = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, tensor_dim)) for m, d in self.input_dims.items()
        })
        self.mlp = nn.Sequential(
            nn.LayerNorm(features), nn.Linear(features, width), nn.GELU(), nn.Linear(width, output_dim)
        )
        self.features = features

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        fused = None
        for m in self.modalities:
            z = self.proj[m](masked_mean(tokens[m], masks[m]))  # (B, d)
            z = torch.cat([z, z.new_ones(z.shape[0], 1)], dim=-1)  # (B, d + 1)
            fused = z if fused is None else torch.einsum("bi,bj->bij", fused, z).flatten(1)  # (B, prod)
        return self.mlp(fused)  # (B, output_dim)
