"""Choosing what trains: freeze or unfreeze parts of a model, lock a tower (LiT, Zhai et al., 2022),
and count trainable parameters."""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from torch import nn

from mmlab.validation import require_module, str_list


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{"trainable": ..., "total": ...} numbers of parameter elements (shared tensors counted once)."""
    seen, total, trainable = set(), 0, 0
    for p in require_module("model", model).parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total}


def freeze(module: nn.Module) -> nn.Module:
    """requires_grad=False on every parameter of `module`; returns it."""
    return require_module("module", module).requires_grad_(False)


def unfreeze(module: nn.Module) -> nn.Module:
    """requires_grad=True on every parameter of `module` (full fine-tuning); returns it."""
    return require_module("module", module).requires_grad_(True)


def set_trainable(model: nn.Module, patterns: str | Sequence[str]) -> list[str]:
    """Freeze everything, then unfreeze the parameters whose names match a pattern (a prefix such as
    "head" or "text_encoder.blocks.1", or a glob such as "*.norm*.weight"). Returns the trainable names;
    a pattern that matches nothing is an error listing the top-level modules, raised before anything changes."""
    named = dict(require_module("model", model).named_parameters())
    chosen: list[str] = []
    for pattern in str_list("patterns", patterns):
        hits = [n for n in named if n == pattern or n.startswith(pattern + ".") or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            tops = sorted({n.split(".", 1)[0] for n in named})
            raise KeyError(f"pattern {pattern!r} matches no parameter; top-level names: {', '.join(tops)}")
        chosen += [n for n in hits if n not in chosen]
    model.requires_grad_(False)
    for n in chosen:
        named[n].requires_grad_(True)
    return chosen


def lock_tower(model: nn.Module, tower: str) -> int:
    """Freeze the submodule named `tower` (e.g. "text_encoder" of a DualEncoder: a locked tower, as in
    LiT) and leave the rest as it is. Returns the number of parameter elements frozen."""
    require_module("model", model)
    if not isinstance(tower, str):
        raise TypeError(f"tower must be a submodule name (str), got {type(tower).__name__} {tower!r}")
    if not tower:
        raise ValueError("tower must be a submodule name, got '' (which would freeze the whole model: use freeze)")
    try:
        module = model.get_submodule(tower)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise KeyError(f"{type(model).__name__} has no submodule {tower!r}; its children: {children}") from None
    if module is None:
        raise KeyError(f"{type(model).__name__}.{tower} is None (no such tower in this model)")
    freeze(module)
    return sum(p.numel() for p in module.parameters())
