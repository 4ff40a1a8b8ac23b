"""Low-rank multimodal fusion (LMF, Liu et al., 2018): the TFN weight tensor factorised into
per-modality rank-r factors, so the outer product is never formed."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, classifier_head, masked_mean
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import IntRange


@register_fusion("lmf")
class LowRankFusion(Fusion):
    """h = sum_r w_r * prod_m ([pool_m, 1] @ W_m[r]) + b, then a classifier head.

    Options: `rank` (r, >= 1), `width` (>= 1)."""

    family = "lmf"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "rank": IntRange(2, 8),
        "width": IntRange(16, 128, log=True),
    }

    def __init__(self, input_dims, output_dim, rank: int = 4, width: int = 64):
        super().__init__(input_dims, output_dim)
        self.check_options(rank=rank, width=width)
        self.norms = nn.ModuleDict({m: nn.LayerNorm(d) for m, d in self.input_dims.items()})
        self.factors = nn.ParameterDict({
            m: nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, d + 1, width))) for m, d in self.input_dims.items()
        })
        self.rank_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)))
        self.bias = nn.Parameter(torch.zeros(width))
        self.head = nn.Sequential(nn.GELU(), classifier_head(width, output_dim))

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        product = None
        for m in self.modalities:
            z = self.norms[m](masked_mean(tokens[m], masks[m]))  # (B, D_m)
            z = torch.cat([z, z.new_ones(z.shape[0], 1)], dim=-1)  # (B, D_m + 1)
            z = torch.einsum("bi,rio->bro", z, self.factors[m])  # (B, rank, width)
            product = z if product is None else product * z
        fused = torch.einsum("xr,bro->bo", self.rank_weights, product) + self.bias  # (B, width)
        return self.head(fused)  # (B, output_dim)
