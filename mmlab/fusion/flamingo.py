"""Flamingo-style fusion (Alayrac et al., 2022): tanh-gated cross-attention blocks, initialised closed.

Each layer: gated cross-attention to the context, gated feed-forward, then an ordinary
self-attention layer (in Flamingo the frozen language-model layer). The gates start at 0,
so at initialisation the output ignores the context modalities exactly (and their inputs
get zero gradient); training opens them. The Perceiver resampler is left out here (see
`perceiver` for latent resampling).
"""
from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from mmlab.encoders.layers import zero_padding
from mmlab.fusion.base import feed_forward, self_attention_layer
from mmlab.fusion.cross_attention import CrossAttentionFusion
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import Choice, FloatRange, IntRange


class GatedCrossAttentionLayer(nn.Module):
    """x += tanh(a) * xattn(x, context); x += tanh(b) * ffn(x); x = self_attention_layer(x)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0, gate_init: float = 0.0):
        super().__init__()
        self.norm_query = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.attn_gate = nn.Parameter(torch.tensor(float(gate_init)))
        self.ffn = feed_forward(width, mlp_ratio, dropout)
        self.ffn_gate = nn.Parameter(torch.tensor(float(gate_init)))
        self.self_layer = self_attention_layer(width, heads, mlp_ratio, dropout)

    def forward(self, x: Tensor, x_keep: Tensor, context: Tensor, context_keep: Tensor) -> Tensor:
        c = self.norm_context(zero_padding(context, context_keep))  # padded keys and values hold no NaN
        attended = self.cross_attn(self.norm_query(x), c, c, key_padding_mask=~context_keep, need_weights=False)[0]
        x = x + torch.tanh(self.attn_gate) * attended
        x = x + torch.tanh(self.ffn_gate) * self.ffn(x)
        return self.self_layer(x, x_keep)  # (B, N_q, width)


@register_fusion("flamingo")
class FlamingoFusion(CrossAttentionFusion):
    """`query` (default "text" if present, else the first modality) reads the others through gated cross-attention.

    Options as `cross_attention` (`query`, `width`, `depth` >= 1, `heads` dividing `width`, `mlp_ratio`,
    `dropout`), plus `gate_init` (a finite number; the gates are tanh(gate_init), 0 = closed)."""

    family = "flamingo"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": Choice((16, 32)),
        "heads": Choice((1, 2)),
        "dropout": FloatRange(0.0, 0.2),
        "depth": IntRange(1, 2),
    }

    def __init__(self, input_dims, output_dim, query: str | None = None, width: int = 32, depth: int = 1,
                 heads: int = 2, mlp_ratio: int = 2, dropout: float = 0.0, gate_init: float = 0.0):
        self.check_options(gate_init=gate_init)  # the other options are checked by CrossAttentionFusion
        super().__init__(input_dims, output_dim, query, width, depth, heads, mlp_ratio, dropout,
                         make_layer=partial(GatedCrossAttentionLayer, gate_init=gate_init))

    def gates(self) -> list[tuple[float, float]]:
        """(tanh(attention gate), tanh(ffn gate)) per layer."""
        return [(float(torch.tanh(layer.attn_gate.detach())), float(torch.tanh(layer.ffn_gate.detach())))
                for layer in self.layers]
