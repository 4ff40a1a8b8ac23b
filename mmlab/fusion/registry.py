"""The fusion registry: register a family by name, build it by name.

Every registered fusion is an `nn.Module` whose `forward(tokens, masks=None)` takes
`dict[str, Tensor (B, N_m, D_m)]` (plus optional keep-masks `dict[str, Tensor (B, N_m)]`,
bool or 0/1, True = keep) and returns `(B, output_dim)`. Its constructor takes
`(input_dims: dict[str, int], output_dim: int, **options)`.
"""
from __future__ import annotations

from typing import Callable, Mapping, TypeVar

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_fusion(name: str) -> Callable[[F], F]:
    """Class/factory decorator: make a fusion buildable as `build_fusion(name, ...)`."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"fusion name must be a non-empty string, got {name!r}")

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(
                f"a fusion named {name!r} is already registered ({_REGISTRY[name].__qualname__}); "
                "pick another name or call unregister_fusion(name) first"
            )
        _REGISTRY[name] = factory
        return factory

    return decorator


def unregister_fusion(name: str) -> None:
    """Remove a registered fusion (handy when re-running a notebook cell that registers one)."""
    if name not in _REGISTRY:
        raise KeyError(f"no fusion named {name!r}; available: {', '.join(available_fusions())}")
    del _REGISTRY[name]


def available_fusions() -> list[str]:
    """Registered fusion names, sorted."""
    return sorted(_REGISTRY)


def build_fusion(name: str, input_dims: Mapping[str, int], output_dim: int, **options) -> nn.Module:
    """Build the fusion registered as `name` for modalities `input_dims` (name -> token width)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown fusion {name!r}; available: {', '.join(available_fusions())}")
    return _REGISTRY[name](dict(input_dims), output_dim, **options)
