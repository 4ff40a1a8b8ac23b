"""What every fusion shares: input checks, masked pooling, small building blocks.

Missing modality (documented behaviour): every fusion raises a `ValueError` naming the
missing modality. To model an absent modality, pass it as zeros (`drop_modality`);
`modality_dropout` does that at random during training.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from mmlab.encoders.layers import TransformerBlock, masked_mean  # noqa: F401  (masked_mean re-exported)
from mmlab.validation import keep_mask, positive_int, require_tensor

Tokens = Mapping[str, Tensor]
Masks = Mapping[str, Tensor]


class Fusion(nn.Module):
    """Base class: remembers the modalities and validates `forward`'s inputs."""

    def __init__(self, input_dims: Mapping[str, int], output_dim: int, min_modalities: int = 1):
        super().__init__()
        if not isinstance(input_dims, Mapping):
            raise TypeError(f"input_dims must map modality name -> token width, got {type(input_dims).__name__}")
        if len(input_dims) < min_modalities:
            raise ValueError(
                f"{type(self).__name__} needs input_dims with at least {min_modalities} modalities "
                f"(name -> token width), got {dict(input_dims)!r}"
            )
        for name, dim in input_dims.items():
            if not isinstance(name, str):
                raise TypeError(f"input_dims keys must be modality names (str), got {type(name).__name__} {name!r}")
            positive_int(f"input_dims[{name!r}]", dim)
        self.modalities: tuple[str, ...] = tuple(input_dims)
        self.input_dims: dict[str, int] = dict(input_dims)
        self.output_dim = positive_int("output_dim", output_dim)

    def check_inputs(self, tokens: Tokens, masks: Masks | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Validate tokens/masks; return them with a bool keep-mask (all True where not given) per modality.

        Masks may be bool or 0/1 integers; that every sample keeps a token is checked only for masks on the
        host, so validation never synchronises a GPU."""
        name = type(self).__name__
        if not isinstance(tokens, Mapping):
            raise TypeError(f"{name} expects tokens as dict[str, Tensor (B, N, D)], got {type(tokens).__name__}")
        missing = [m for m in self.modalities if m not in tokens]
        if missing:
            raise ValueError(
                f"{name} expects modalities {list(self.modalities)} but {missing} missing; "
                "to model an absent modality pass zeros (mmlab.fusion.drop_modality)"
            )
        extra = [m for m in tokens if m not in self.input_dims]
        if extra:
            raise ValueError(f"{name} got unexpected modalities {extra}; it was built for {list(self.modalities)}")
        masks = dict(masks or {})
        unknown = sorted(m for m in masks if m not in self.input_dims)
        if unknown:
            raise ValueError(f"masks given for unknown modalities {unknown}")
        batch = None
        out_masks = {}
        for m in self.modalities:
            x = require_tensor(f"tokens[{m!r}]", tokens[m])
            if x.dim() != 3:
                raise ValueError(f"tokens[{m!r}] must be a (B, N, D) tensor, got shape {tuple(x.shape)}")
            if not x.is_floating_point():
                raise TypeError(f"tokens[{m!r}] must be floating point, got {x.dtype}")
            if x.shape[-1] != self.input_dims[m]:
                raise ValueError(f"tokens[{m!r}] has width {x.shape[-1]}, expected {self.input_dims[m]}")
            if x.shape[1] == 0:
                raise ValueError(f"tokens[{m!r}] has no tokens (N=0)")
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise ValueError(f"tokens[{m!r}] has batch size {x.shape[0]}, other modalities have {batch}")
            mask = keep_mask(masks.get(m), *x.shape[:2], x.device, name=f"masks[{m!r}]")
            out_masks[m] = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask
        return dict(tokens), out_masks


def drop_modality(tokens: Tokens, name: str) -> dict[str, Tensor]:
    """A copy of `tokens` with modality `name` replaced by zeros (same shape)."""
    if name not in tokens:
        raise KeyError(f"no modality {name!r} to drop; have {list(tokens)}")
    out = dict(tokens)
    out[name] = torch.zeros_like(tokens[name])
    return out


def modality_dropout(tokens: Tokens, p: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Zero each modality of each sample with probability `p`, never all modalities of one sample."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"modality dropout p must be in [0, 1), got {p}")
    names = list(tokens)
    if p == 0.0 or len(names) < 2:
        return dict(tokens)
    first = tokens[names[0]]
    batch = first.shape[0]
    drop = torch.rand(batch, len(names), generator=generator) < p  # (B, M)
    all_dropped = drop.all(dim=1)
    if all_dropped.any():  # restore one random modality for those samples
        keep = torch.randint(len(names), (batch,), generator=generator)
        drop[all_dropped, keep[all_dropped]] = False
    drop = drop.to(first.device)
    return {m: tokens[m] * (~drop[:, i]).to(tokens[m].dtype)[:, None, None] for i, m in enumerate(names)}


def self_attention_layer(width: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0) -> TransformerBlock:
    """The shared pre-norm transformer block (mmlab.encoders.layers); call it as `layer(x, keep_mask)`."""
    return TransformerBlock(width, heads, mlp_ratio * width, dropout=dropout)


def feed_forward(width: int, mlp_ratio: int = 2, dropout: float = 0.0) -> nn.Sequential:
    """Pre-norm GELU MLP (width -> mlp_ratio*width -> width)."""
    return nn.Sequential(
        nn.LayerNorm(width), nn.Linear(width, mlp_ratio * width), nn.GELU(),
        nn.Dropout(dropout), nn.Linear(mlp_ratio * width, width),
    )


def classifier_head(in_dim: int, output_dim: int) -> nn.Sequential:
    """LayerNorm + Linear: the last step of most fusions."""
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, output_dim))


class Projections(nn.Module):
    """One Linear per modality to a shared width, plus a learned modality-type embedding."""

    def __init__(self, input_dims: Mapping[str, int], width: int, type_embeddings: bool = True):
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in input_dims.items()})
        self.type_embed = nn.ParameterDict(
            {m: nn.Parameter(0.02 * torch.randn(width)) for m in input_dims} if type_embeddings else {}
        )

    def forward(self, name: str, x: Tensor) -> Tensor:
        out = self.proj[name](x)  # (B, N, width)
        if name in self.type_embed:
            out = out + self.type_embed[name]
        return out


def pick_modality(input_dims: Mapping[str, int], given: str | None, preferred: str, role: str) -> str:
    """`given` if set (must exist), else `preferred` if present, else the first modality."""
    if given is not None:
        if given not in input_dims:
            raise ValueError(f"{role} modality {given!r} is not one of {list(input_dims)}")
        return given
    return preferred if preferred in input_dims else next(iter(input_dims))
