"""Cross-attention fusion (BLIP-style): the query modality's tokens attend to the other modalities.

Each layer: self-attention over the query tokens, cross-attention to the context tokens,
feed-forward (Li et al., BLIP, 2022: the image-grounded text encoder).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from mmlab.encoders.layers import CrossAttentionBlock, MultiHeadSelfAttention
from mmlab.fusion.base import Fusion, Projections, classifier_head, masked_mean, pick_modality
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import Choice, FloatRange, IntRange


class CrossAttentionLayer(nn.Module):
    """Pre-norm self-attention, then the shared cross-attention + MLP block, each residual."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0):
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = MultiHeadSelfAttention(width, heads, dropout=dropout)
        self.cross = CrossAttentionBlock(width, heads, mlp_ratio * width, dropout=dropout)

    def forward(self, x: Tensor, x_keep: Tensor, context: Tensor, context_keep: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm_self(x), x_keep)
        return self.cross(x, context, context_keep)  # (B, N_q, width)


def split_query_context(fusion: Fusion, tokens: dict, masks: dict, query: str):
    """Project tokens; return (query tokens, query mask, concatenated context tokens, context mask)."""
    q = fusion.project(query, tokens[query])  # (B, N_q, width)
    others = [m for m in fusion.modalities if m != query]
    context = torch.cat([fusion.project(m, tokens[m]) for m in others], dim=1)  # (B, sum N_m, width)
    context_keep = torch.cat([masks[m] for m in others], dim=1)
    return q, masks[query], context, context_keep


@register_fusion("cross_attention")
class CrossAttentionFusion(Fusion):
    """`query` (default "text" if present, else the first modality) attends to all other modalities.

    `make_layer(width, heads, mlp_ratio, dropout)` builds each of the `depth` layers, called as
    `layer(x, x_keep, context, context_keep)`; by default a `CrossAttentionLayer`.

    Options: `query` (a modality name or None), `width` (>= 1), `depth` (layers, >= 1: with none the query
    would never see the context), `heads` (>= 1, dividing `width`), `mlp_ratio` (integer >= 1),
    `dropout` in [0, 1), `make_layer` (a callable)."""

    family = "cross_attention"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": Choice((16, 32)),
        "heads": Choice((1, 2)),
        "dropout": FloatRange(0.0, 0.2),
        "depth": IntRange(1, 2),
    }

    def __init__(self, input_dims, output_dim, query: str | None = None, width: int = 32, depth: int = 1,
                 heads: int = 2, mlp_ratio: int = 2, dropout: float = 0.0,
                 make_layer: Callable[[int, int, int, float], nn.Module] = CrossAttentionLayer):
        super().__init__(input_dims, output_dim, min_modalities=2)
        self.check_options(width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout,
                           make_layer=make_layer)
        self.query = pick_modality(self.input_dims, query, "text", "query", self.family_name())
        self.project = Projections(self.input_dims, width)
        self.layers = nn.ModuleList(make_layer(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.head = classifier_head(width, output_dim)

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        x, keep, context, context_keep = split_query_context(self, tokens, masks, self.query)
        for layer in self.layers:
            x = layer(x, keep, context, context_keep)
        return self.head(masked_mean(x, keep))  # (B, output_dim)
