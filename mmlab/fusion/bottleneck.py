"""Attention bottlenecks (MBT, Nagrani et al., 2021): each modality has its own transformer
layers; modalities exchange information only through a few shared bottleneck tokens."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, classifier_head, masked_mean, self_attention_layer
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import Choice, FloatRange, IntRange


@register_fusion("bottleneck")
class BottleneckFusion(Fusion):
    """Per layer, modality m self-attends over [its tokens; bottlenecks]; the bottleneck outputs
    of all modalities are averaged. Output: head(mean of pooled streams and bottlenecks).

    Options: `width` (>= 1), `depth` (layers, >= 1: with none the modalities never exchange anything),
    `heads` (>= 1, dividing `width`), `n_bottleneck` (>= 1), `mlp_ratio` (integer >= 1), `dropout` in [0, 1)."""

    family = "bottleneck"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": Choice((16, 32)),
        "heads": Choice((1, 2)),
        "dropout": FloatRange(0.0, 0.2),
        "depth": IntRange(1, 2),
        "n_bottleneck": IntRange(2, 8),
    }

    def __init__(self, input_dims, output_dim, width: int = 32, depth: int = 2, heads: int = 2,
                 n_bottleneck: int = 4, mlp_ratio: int = 2, dropout: float = 0.0):
        super().__init__(input_dims, output_dim, min_modalities=2)
        self.check_options(width=width, depth=depth, heads=heads, n_bottleneck=n_bottleneck, mlp_ratio=mlp_ratio,
                           dropout=dropout)
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.input_dims.items()})
        self.bottleneck = nn.Parameter(0.02 * torch.randn(1, n_bottleneck, width))
        self.layers = nn.ModuleDict({
            m: nn.ModuleList(self_attention_layer(width, heads, mlp_ratio, dropout) for _ in range(depth))
            for m in self.modalities
        })
        self.head = classifier_head(width, output_dim)
        self.depth = depth

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        streams = {m: self.proj[m](tokens[m]) for m in self.modalities}  # each (B, N_m, W)
        batch = streams[self.modalities[0]].shape[0]
        b = self.bottleneck.expand(batch, -1, -1)  # (B, n_bottleneck, W)
        for i in range(self.depth):
            updates = []
            for m in self.modalities:
                n = streams[m].shape[1]
                seq = torch.cat([streams[m], b], dim=1)  # (B, N_m + n_bottleneck, W)
                keep = torch.cat([masks[m], masks[m].new_ones(batch, b.shape[1])], dim=1)
                out = self.layers[m][i](seq, keep)
                streams[m] = out[:, :n]
                updates.append(out[:, n:])
            b = torch.stack(updates).mean(0)  # (B, n_bottleneck, W)
        pooled = [masked_mean(streams[m], masks[m]) for m in self.modalities] + [b.mean(1)]
        return self.head(torch.stack(pooled).mean(0))  # (B, output_dim)
