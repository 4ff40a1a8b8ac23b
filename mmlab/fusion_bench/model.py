"""The benchmark's model: one small encoder per modality feeding a registered fusion."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.fusion.base import modality_dropout
from mmlab.fusion.registry import build_fusion
from mmlab.fusion_bench.tasks import Task


class TokenEncoder(nn.Module):
    """Features (or word ids) + learned positions -> token-wise MLP -> (B, N, width)."""

    def __init__(self, feature_dim: int, max_tokens: int, width: int = 32, words: bool = False):
        super().__init__()
        self.embed = nn.Embedding(feature_dim, width) if words else nn.Linear(feature_dim, width)
        self.pos = nn.Parameter(0.02 * torch.randn(1, max_tokens, width))
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)  # (B, N, width)
        return self.mlp(h + self.pos[:, : h.shape[1]])  # (B, N, width)


class FusionModel(nn.Module):
    """Modality encoders of token width `width` feeding one registered fusion, built with `fusion_options`
    (its own options: a `width` there is the fusion's); optional modality dropout on the encoded tokens."""

    def __init__(self, task: Task, fusion: str, modalities: tuple[str, ...] | None = None, width: int = 32,
                 fusion_options: dict | None = None):
        super().__init__()
        self.modalities = tuple(modalities or task.modalities)
        unknown = set(self.modalities) - set(task.modalities)
        if unknown:
            raise ValueError(f"task {task.name!r} has no modalities {sorted(unknown)}; it has {task.modalities}")
        self.encoders = nn.ModuleDict({
            m: TokenEncoder(task.feature_dims[m], task.train.features[m].shape[1], width,
                            words=not task.train.features[m].is_floating_point())
            for m in self.modalities
        })
        self.fusion = build_fusion(fusion, {m: width for m in self.modalities}, task.num_classes,
                                   **(fusion_options or {}))

    def tokens(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: self.encoders[m](features[m]) for m in self.modalities}

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor], drop: tuple[str, ...] = (),
                dropout_p: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Logits (B, classes). `drop`: modalities replaced by zeros; `dropout_p`: random modality dropout."""
        tokens = self.tokens(features)
        for m in drop:
            if m in tokens:
                tokens[m] = torch.zeros_like(tokens[m])
        if dropout_p > 0:
            tokens = modality_dropout(tokens, dropout_p, generator)
        return self.fusion(tokens, {m: masks[m] for m in self.modalities})
