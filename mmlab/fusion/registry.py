"""The fusion registry: register a family by name, build it by name.

Every registered fusion is an `nn.Module` whose `forward(tokens, masks=None)` takes
`dict[str, Tensor (B, N_m, D_m)]` (plus optional keep-masks `dict[str, Tensor (B, N_m)]`,
bool or 0/1, True = keep) and returns `(B, output_dim)`. Its constructor takes
`(input_dims: dict[str, int], output_dim: int, **options)`.

The contract every built-in family keeps (see `mmlab.fusion.base`; `check_fusion` tests the starred ones):
a missing modality is a ValueError (*); an empty batch (B = 0) is a ValueError (*), as are zero tokens;
tokens of any floating dtypes, also mixed across modalities, are cast to the fusion's parameter dtype, which
is the output's dtype; masked-out tokens, even NaN or inf, do not change the output (*). Each constructor option
is validated before anything is built: a wrong type is a TypeError, a wrong value a ValueError, naming the
family, the option and the value; an option the family does not have is a TypeError listing those it has.
"""
from __future__ import annotations

import inspect
from typing import Callable, Mapping, TypeVar

from torch import nn

from mmlab.fusion.search_space import Param, check_search_space

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_SPACES: dict[str, dict[str, Param]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_fusion(name: str, search_space: Mapping[str, Param] | None = None) -> Callable[[F], F]:
    """Class/factory decorator: make a fusion buildable as `build_fusion(name, ...)`.

    `search_space` (default: the factory's `search_space` attribute, else none): the options a tuner may vary
    (see `mmlab.fusion.search_space`); one the fusion does not take is a ValueError here, at registration."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"fusion name must be a non-empty string, got {name!r}")

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(
                f"a fusion named {name!r} is already registered ({_REGISTRY[name].__qualname__}); "
                "pick another name or call unregister_fusion(name) first"
            )
        space = search_space if search_space is not None else getattr(factory, "search_space", None) or {}
        _SPACES[name] = check_search_space(name, space, _accepted_options(factory))
        _REGISTRY[name] = factory
        return factory

    return decorator


def unregister_fusion(name: str) -> None:
    """Remove a registered fusion (handy when re-running a notebook cell that registers one)."""
    if name not in _REGISTRY:
        raise KeyError(f"no fusion named {name!r}; available: {', '.join(available_fusions())}")
    del _REGISTRY[name]
    _SPACES.pop(name, None)


def available_fusions() -> list[str]:
    """Registered fusion names, sorted."""
    return sorted(_REGISTRY)


def fusion_options(name: str) -> list[str] | None:
    """The option names fusion `name` accepts (its constructor's parameters after `input_dims, output_dim`),
    or None when its factory takes `**options` or has no readable signature."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown fusion {name!r}; available: {', '.join(available_fusions())}")
    return _accepted_options(_REGISTRY[name])


def fusion_search_space(name: str) -> dict[str, Param]:
    """The search space fusion `name` declared (option -> IntRange/FloatRange/Choice; {} if none)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown fusion {name!r}; available: {', '.join(available_fusions())}")
    return dict(_SPACES[name])


def _accepted_options(factory: Callable[..., nn.Module]) -> list[str] | None:
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    return [n for n in positional[2:] if n not in positional[:2]] + keyword


def build_fusion(name: str, input_dims: Mapping[str, int], output_dim: int, **options) -> nn.Module:
    """Build the fusion registered as `name` for modalities `input_dims` (name -> token width).

    An unknown `name` is a KeyError listing the registered ones; an option the fusion does not take is a
    TypeError naming the fusion and the options it accepts."""
    if not isinstance(name, str):
        raise TypeError(f"fusion name must be a string, got {type(name).__name__} {name!r}")
    accepted = fusion_options(name)
    unknown = [o for o in options if accepted is not None and o not in accepted]
    if unknown:
        takes = f"it accepts: {', '.join(accepted)}" if accepted else "it takes no options"
        raise TypeError(f"fusion {name!r} has no option {', '.join(map(repr, unknown))}; {takes}")
    return _REGISTRY[name](dict(input_dims) if isinstance(input_dims, Mapping) else input_dims, output_dim, **options)
