"""LoRA: low-rank adapters on frozen linear layers (Hu et al., 2021, "LoRA: Low-Rank Adaptation of
Large Language Models").

A frozen layer y = W x + b gets a trainable update of rank r:

    y = W x + b + (alpha / r) * B A x,   A: (r, in), B: (out, r)

A starts random and B at zero, so the adapted model computes exactly what the base model did until
training moves B. After training, B A can be merged into W (no extra cost at inference) and unmerged.
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mmlab.validation import boolean, finite_float, positive_int, require_module, str_list


class LoRALinear(nn.Module):
    """An nn.Linear (frozen) plus a rank-`rank` adapter scaled by alpha / rank.

    `alpha=None` means alpha = rank (scaling 1). `dropout` applies to the adapter's input only.
    `merge()` folds the update into the base weight; the merged and unmerged forwards agree in eval mode.
    """

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        check_rank(rank, base.in_features, base.out_features)
        alpha, dropout = check_adapter(alpha, dropout)
        self.base = base
        base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(rank) if alpha is None else alpha
        self.scaling = self.alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))
        # A like nn.Linear's default init (Kaiming-uniform), B zero: the update B A starts at exactly 0
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> Tensor:
        """The update scaling * B A, shaped like the base weight (out, in)."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:
            return y
        h = self.dropout(x) @ self.lora_A.T.to(x.dtype)  # (..., r)
        return y + (h @ self.lora_B.T.to(x.dtype)) * self.scaling  # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + scaling * B A (no-op if merged already)."""
        if not self.merged:
            w = self.base.weight
            w.copy_((w.float() + self.delta_weight()).to(w.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - scaling * B A (no-op if not merged)."""
        if self.merged:
            w = self.base.weight
            w.copy_((w.float() - self.delta_weight()).to(w.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


def check_rank(rank: int, in_features: int, out_features: int) -> None:
    """Raise a clear error unless 1 <= rank <= min(in_features, out_features)."""
    positive_int("rank", rank)
    if rank > min(in_features, out_features):
        raise ValueError(f"rank {rank} is larger than min(in_features, out_features) = "
                         f"min({in_features}, {out_features}); a low-rank update needs rank <= "
                         f"{min(in_features, out_features)}")


def check_adapter(alpha: float | None, dropout: float) -> tuple[float | None, float]:
    """(alpha, dropout) checked, as floats (alpha may stay None): alpha finite > 0, dropout in [0, 1)."""
    if alpha is not None:
        alpha = finite_float("alpha", alpha, low=0, low_open=True)
    return alpha, finite_float("dropout", dropout, low=0, high=1, high_open=True)


def _matches(name: str, pattern: str) -> bool:
    """Exact name, a dotted suffix ("query" matches "encoder.layer.0.attention.self.query"), or a glob."""
    if name == pattern or name.endswith("." + pattern):
        return True
    return any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern)


def _linear_names(model: nn.Module) -> list[str]:
    """nn.Linear modules, leaving out the frozen bases inside LoRALinear layers."""
    wrapped = {f"{n}.base" if n else "base" for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in wrapped]


def _describe(model: nn.Module, limit: int = 12) -> str:
    names = _linear_names(model)
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    text = f"available nn.Linear modules: {shown or '(none)'}; their short names: {', '.join(leaves) or '(none)'}"
    adapted = len(lora_layers(model))
    return text + (f"; {adapted} layers already have LoRA adapters" if adapted else "")


def find_linear(model: nn.Module, target_modules: str | Sequence[str]) -> list[str]:
    """Names of the nn.Linear modules matched by `target_modules` (names, dotted suffixes or globs).

    Every pattern must match at least one module; a pattern that only matches other module types, or an
    existing LoRALinear, is an error.
    """
    require_module("model", model)
    patterns = str_list("target_modules", target_modules)
    modules = dict(model.named_modules())
    linears = _linear_names(model)
    found: list[str] = []
    for pattern in patterns:
        hits = [n for n, m in modules.items() if n and _matches(n, pattern)]
        lora_hits = [n for n in hits if isinstance(modules[n], LoRALinear)]
        if lora_hits:
            raise ValueError(f"{lora_hits[0]!r} already has a LoRA adapter")
        linear_hits = [n for n in hits if n in linears]
        if not linear_hits:
            if hits:
                kinds = ", ".join(f"{n!r} is a {type(modules[n]).__name__}" for n in hits[:3])
                raise TypeError(f"target {pattern!r} matches no nn.Linear ({kinds}); LoRA here wraps nn.Linear "
                                f"only. {_describe(model)}")
            raise KeyError(f"target {pattern!r} matches no module of {type(model).__name__}. {_describe(model)}")
        found += [n for n in linear_hits if n not in found]
    return found


def apply_lora(model: nn.Module, target_modules: str | Sequence[str], rank: int = 4, alpha: float | None = None,
               dropout: float = 0.0, freeze_base: bool = True) -> list[str]:
    """Replace the matched nn.Linear layers of `model` (in place) by LoRALinear; return their names.

    With `freeze_base` every other parameter of the model is frozen, so only the adapters train
    (add a new trainable head after calling this, or unfreeze what you want with `set_trainable`).
    Every argument is checked before the model changes: on an error it is left as it was.
    """
    names = find_linear(model, target_modules)
    for name in names:
        m = model.get_submodule(name)
        try:
            check_rank(rank, m.in_features, m.out_features)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    check_adapter(alpha, dropout)
    boolean("freeze_base", freeze_base)
    if freeze_base:
        model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    return names


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear in the model, by name."""
    require_module("model", model)
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> int:
    """Merge every adapter into its base weight; return how many layers were merged."""
    layers = lora_layers(model).values()
    for m in layers:
        m.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Undo `merge_lora`; return how many layers were unmerged."""
    layers = lora_layers(model).values()
    for m in layers:
        m.unmerge()
    return len(layers)


def remove_lora(model: nn.Module, merge: bool = True) -> list[str]:
    """Put plain nn.Linear layers back (with the adapters merged in, unless merge=False); return their names."""
    boolean("merge", merge)
    names = list(lora_layers(model))
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer: LoRALinear = getattr(parent, child)
        if merge:
            layer.merge()
        elif layer.merged:
            layer.unmerge()
        setattr(parent, child, layer.base)
    return names


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapter tensors (lora_A, lora_B): what you save to share a fine-tune."""
    require_module("model", model)
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}
