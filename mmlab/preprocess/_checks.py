"""Argument checks shared by the preprocessing modules."""
from __future__ import annotations


def positive_int(name: str, value) -> int:
    """`value` if it is an int >= 1 (bools rejected), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
