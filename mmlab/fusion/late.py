"""Late fusion: one classifier per modality, decisions combined by averaging or learned weights."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, choice_option, masked_mean
from mmlab.fusion.registry import register_fusion
from mmlab.fusion.search_space import Choice, FloatRange, IntRange


@register_fusion("late")
class LateFusion(Fusion):
    """Per-modality MLP heads on pooled tokens; logits averaged (`combine="mean"`) or softmax-weighted
    by learned weights (`combine="learned"`).

    Options: `width` (hidden units per head, >= 1), `combine` ("mean" or "learned"), `dropout` in [0, 1)."""

    family = "late"
    search_space = {  # tuned by mmlab.fusion_bench (mmlab.fusion.search_space)
        "width": IntRange(16, 128, log=True),
        "dropout": FloatRange(0.0, 0.3),
        "combine": Choice(("mean", "learned")),
    }

    def __init__(self, input_dims, output_dim, width: int = 64, combine: str = "mean", dropout: float = 0.0):
        super().__init__(input_dims, output_dim)
        self.check_options(width=width, dropout=dropout)
        self.combine = choice_option(self.family, "combine", combine, ("mean", "learned"))
        self.heads = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, width), nn.GELU(), nn.Dropout(dropout),
                             nn.Linear(width, output_dim))
            for m, d in self.input_dims.items()
        })
        self.weight_logits = nn.Parameter(torch.zeros(len(self.modalities))) if combine == "learned" else None

    def modality_weights(self) -> torch.Tensor:
        """(M,) weights that sum to 1, in `self.modalities` order."""
        if self.weight_logits is None:
            return torch.full((len(self.modalities),), 1.0 / len(self.modalities))
        return self.weight_logits.softmax(0)

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        logits = torch.stack([self.heads[m](masked_mean(tokens[m], masks[m])) for m in self.modalities])  # (M, B, out)
        weights = self.modality_weights().to(logits)
        return (weights[:, None, None] * logits).sum(0)  # (B, output_dim)
