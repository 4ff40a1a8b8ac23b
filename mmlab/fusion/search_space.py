"""Search spaces: which constructor options of a fusion a tuner may vary, and over which values.

A family declares its space next to its module, as the class attribute `search_space` (or passes
`register_fusion(name, search_space=...)`), a dict option name -> `IntRange` / `FloatRange` / `Choice`:

    search_space = {"width": IntRange(16, 128, log=True), "dropout": FloatRange(0.0, 0.3)}

Only the fusion's own options belong here; training settings (learning rate, weight decay, steps) are
shared by every method and declared by the benchmark (`mmlab.fusion_bench.methods.training_space`).
The space is plain data: no tuning library is imported here. `check_search_space` rejects a space that
names an option the fusion does not take, at registration, before anything is trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from mmlab.validation import boolean, distinct, finite_float, int_at_least


@dataclass(frozen=True)
class IntRange:
    """Integers from `low` to `high` (both included); `log`: sampled uniformly in log space."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        int_at_least("IntRange.low", self.low, 1 if self.log else -2**62)
        int_at_least("IntRange.high", self.high, self.low)
        boolean("IntRange.log", self.log)


@dataclass(frozen=True)
class FloatRange:
    """Real numbers in [`low`, `high`]; `log`: sampled uniformly in log space (then low > 0)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        finite_float("FloatRange.low", self.low, 0.0 if self.log else None, low_open=self.log)
        finite_float("FloatRange.high", self.high, self.low)
        boolean("FloatRange.log", self.log)


@dataclass(frozen=True)
class Choice:
    """One of `values` (numbers, strings, booleans or None)."""

    values: tuple

    def __post_init__(self) -> None:
        if not isinstance(self.values, (tuple, list)) or not self.values:
            raise ValueError(f"Choice needs a non-empty tuple of values, got {self.values!r}")
        for v in self.values:
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise TypeError(f"Choice values must be numbers, strings, booleans or None, got {v!r}")
        object.__setattr__(self, "values", tuple(self.values))
        distinct("Choice.values", self.values)


Param = Union[IntRange, FloatRange, Choice]


def contains(param: Param, value: Any) -> bool:
    """Whether `value` lies in `param`'s range (or is one of its choices)."""
    if isinstance(param, Choice):
        return value in param.values
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if isinstance(param, IntRange) and int(value) != value:
        return False
    return param.low <= value <= param.high


def check_search_space(family: str, space: Any, accepted: Sequence[str] | None) -> dict[str, Param]:
    """`space` as a dict, checked: a Mapping of option names to IntRange/FloatRange/Choice (else a TypeError),
    each name one of `accepted` (the fusion's options; None: not known, then every name passes), else a
    ValueError naming the family, the option and the options it takes."""
    if not isinstance(space, Mapping):
        raise TypeError(f"fusion {family!r}: search_space must be a dict option -> IntRange/FloatRange/Choice, "
                        f"got {type(space).__name__}")
    out: dict[str, Param] = {}
    for option, param in space.items():
        if not isinstance(option, str):
            raise TypeError(f"fusion {family!r}: search_space keys must be option names, got {option!r}")
        if not isinstance(param, (IntRange, FloatRange, Choice)):
            raise TypeError(f"fusion {family!r}: search_space[{option!r}] must be an IntRange, FloatRange or Choice, "
                            f"got {type(param).__name__} {param!r}")
        if accepted is not None and option not in accepted:
            takes = ", ".join(accepted) if accepted else "no options"
            raise ValueError(f"fusion {family!r}: search_space names option {option!r}, which the fusion does not "
                             f"take (it takes: {takes})")
        out[option] = param
    return out
