"""Input checks shared by the whole package (a leaf module: it imports only torch and the standard library).

One rule everywhere: a wrong Python type or tensor dtype is a `TypeError`; a wrong shape or value is a
`ValueError`. Each message names the argument and what it got.

Checks that read tensor values (finiteness, "at least one positive per row") run only on tensors whose
values the host can read without waiting for a GPU (`on_host`): on CUDA tensors only shape, dtype and
device are checked, so validation never synchronises the GPU on the hot path. Non-finite values there
are caught once per step by `mmlab.train.fit`, which checks the loss.
"""
from __future__ import annotations

import math
import operator
import os
from collections.abc import Collection, Iterable, Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "as_path",
    "boolean",
    "class_indices",
    "distinct",
    "feature_pair",
    "features",
    "finite_float",
    "floating_batch",
    "floating_tensor",
    "int_at_least",
    "int_in_range",
    "item_index",
    "keep_mask",
    "non_negative_int",
    "on_host",
    "one_of",
    "positive_int",
    "positive_mask",
    "require_callable",
    "require_module",
    "require_tensor",
    "scalar",
    "scalar_tensor",
    "str_list",
    "writable_path",
]


def on_host(t: Tensor) -> bool:
    """True when `t`'s values can be read without synchronising an accelerator: CPU tensors only
    (not CUDA or MPS tensors, and not meta tensors, which have no values).

    Also False while torch.compile or torch.export (and so `torch.onnx.export`) traces the code: the tensors
    are then symbolic, a check reading them would be data-dependent control flow that cannot be traced, and
    the traced graph should hold only the computation."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def positive_int(name: str, value: Any) -> int:
    """`value` if it is an int >= 1; bools and other types are a TypeError, ints < 1 a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative_int(name: str, value: Any) -> int:
    """`value` if it is an int >= 0 (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a non-negative integer, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def int_in_range(name: str, value: Any, low: int, high: int) -> int:
    """`value` if it is an integer (numpy integers too; bools rejected) with low <= value <= high."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def int_at_least(name: str, value: Any, low: int) -> int:
    """`value` as an int if it is an integer (numpy integers too; bools and floats such as 2.0 are a TypeError)
    with value >= low, else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def one_of(name: str, value: Any, choices: Collection) -> Any:
    """`value` if it is one of `choices`, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def require_tensor(name: str, value: Any) -> Tensor:
    """`value` if it is a torch.Tensor, else a TypeError."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def features(name: str, x: Any) -> Tensor:
    """A non-empty floating (N, D) tensor, finite when its values are on the host; returned unchanged."""
    require_tensor(name, x)
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if on_host(x) and not torch.isfinite(x.detach()).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def feature_pair(a: Any, b: Any, names: tuple[str, str] = ("image_features", "text_features")) -> None:
    """Two `features` of the same (B, D) on one device."""
    features(names[0], a)
    features(names[1], b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch mismatch: {names[0]} has {a.shape[0]} rows, {names[1]} has {b.shape[0]}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"width mismatch: {names[0]} is {a.shape[1]} wide, {names[1]} is {b.shape[1]}")
    if a.device != b.device:
        raise ValueError(f"device mismatch: {names[0]} on {a.device}, {names[1]} on {b.device}")


def floating_batch(name: str, x: Any, shape: tuple[int, ...], note: str = "") -> Tensor:
    """`x` if it is a floating tensor of shape (B, *shape); `note` is added to the shape error."""
    require_tensor(name, x)
    if x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != tuple(shape):
        want = ", ".join(map(str, ("B", *shape)))
        raise ValueError(f"{name} must have shape ({want}){note}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    return x


def scalar(name: str, value: Any, positive: bool = False) -> None:
    """A real number or a 1-element floating tensor; finite (and > 0 when `positive`) where readable on the host."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {value.dtype}")
        if not on_host(value):
            return
        v = float(value.detach())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
    else:
        raise TypeError(f"{name} must be a number or a 1-element tensor, got {type(value).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be positive (already exponentiated), got {v}")


def scalar_tensor(value: Tensor | float, like: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """A 0-d `dtype` tensor on `like`'s device; keeps autograd history when `value` is a tensor.

    A tensor on another GPU than `like` is an error (a CPU scalar is moved)."""
    if isinstance(value, Tensor):
        if value.device != like.device and value.device.type != "cpu":
            raise ValueError(f"scalar on {value.device}, features on {like.device}")
        return value.reshape(()).to(device=like.device, dtype=dtype)
    return torch.full((), float(value), device=like.device, dtype=dtype)  # a fill, not a blocking host copy


def positive_mask(mask: Any, batch: int, device: torch.device) -> Tensor:
    """A (B, B) bool tensor on `device`; on the host also: a positive in every row and every column."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"positive_mask must be a bool tensor, got {got}")
    if tuple(mask.shape) != (batch, batch):
        raise ValueError(f"positive_mask must have shape ({batch}, {batch}), got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"positive_mask on {mask.device}, features on {device}")
    if on_host(mask):
        for dim, what, why in ((1, "row", "an image without a matching text"),
                               (0, "column", "a text without a matching image")):
            empty = (~mask.any(dim=dim)).nonzero().flatten()
            if empty.numel():
                raise ValueError(f"positive_mask {what} {int(empty[0])} has no positive ({why})")
    return mask


def keep_mask(mask: Any, batch: int, length: int, device: torch.device, name: str = "mask") -> Tensor | None:
    """A (B, N) keep-mask (True/1 = real token) as bool on `device`; None stays None.

    On the host also: every row keeps at least one token."""
    if mask is None:
        return None
    require_tensor(name, mask)
    if tuple(mask.shape) != (batch, length):
        raise ValueError(f"{name} must have shape (B, N) = {(batch, length)}, got {tuple(mask.shape)}")
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"{name} must be bool or integer (1 = real token), got {mask.dtype}")
    mask = mask.to(device=device, dtype=torch.bool)
    if on_host(mask):
        empty = (~mask.any(dim=1)).nonzero().flatten()
        if empty.numel():
            raise ValueError(f"{name} row {int(empty[0])} has no real tokens; every sequence needs at least one")
    return mask


# ---- plain Python arguments: numbers, flags, names, callables, modules, paths -------------------------------

def finite_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a float if it is a real number (numpy scalars too; bools rejected), finite and within the bounds
    given: `low <= value <= high`, with `<` instead of `<=` on a side marked open."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    below = low is not None and (v <= low if low_open else v < low)
    above = high is not None and (v >= high if high_open else v > high)
    if not math.isfinite(v) or below or above:
        if low is not None and high is not None:
            bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f" {'>' if low_open else '>='} {low:g}"
        else:
            bounds = f" {'<' if high_open else '<='} {high:g}" if high is not None else ""
        raise ValueError(f"{name} must be a finite number{bounds}, got {value!r}")
    return v


def boolean(name: str, value: Any) -> bool:
    """`value` if it is True or False (0, 1 and other truthy values are a TypeError)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def require_callable(name: str, value: Any) -> Any:
    """`value` if it is callable, else a TypeError."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def require_module(name: str, value: Any) -> torch.nn.Module:
    """`value` if it is a torch.nn.Module, else a TypeError."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
    return value


def str_list(name: str, value: Any, single: bool = True) -> list[str]:
    """A non-empty list of non-empty strings from a sequence of them, or (when `single`) from one string.

    With `single=False` one string is a TypeError: iterating it would silently give its characters."""
    if isinstance(value, str):
        if not single:
            raise TypeError(f"{name} must be a sequence of strings, not one string {value!r}")
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise TypeError(f"{name} must be a string or a sequence of strings, got {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold strings only, got {type(item).__name__} {item!r}")
    if not items or not all(items):
        raise ValueError(f"{name} must be one or more non-empty strings, got {items!r}")
    return items


def as_path(name: str, path: Any) -> Path:
    """`path` (a str or os.PathLike) as a Path, else a TypeError."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__} {path!r}")
    return Path(path)


def writable_path(name: str, path: Any, folder: bool = False) -> Path:
    """`path` as a Path where a file (a folder, when `folder`) can be written, checked without writing anything.

    An existing path must be of that kind and writable; otherwise its nearest existing parent must be a
    writable folder (the missing folders in between can then be created)."""
    path = as_path(name, path)
    kind = "folder" if folder else "file"
    if path.exists():
        if path.is_dir() != folder:
            raise ValueError(f"{name} {str(path)!r} must be a {kind}, but it is {'a file' if folder else 'a folder'}")
        target = path
    else:
        target = path.parent
        while not target.exists() and target != target.parent:
            target = target.parent
        if not target.is_dir():
            raise ValueError(f"{name} {str(path)!r} cannot be created: {str(target)!r} is not a folder")
    if not os.access(target, os.W_OK | (os.X_OK if target.is_dir() else 0)):
        raise ValueError(f"{name} {str(path)!r} is not writable (no write permission on {str(target)!r})")
    return path


# ---- tensors of class indices and of plottable values ------------------------------------------------------

def class_indices(name: str, value: Any, n: int | None = None) -> Tensor:
    """Class indices as a 1-D int64 tensor (from a tensor, an array or a sequence of ints), of length `n` when
    given; on the host also: none negative. Floating or bool values are a TypeError."""
    try:
        y = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be integer class indices (a tensor or a sequence of ints), "
                        f"got {type(value).__name__}") from None
    if y.numel() == 0 and not isinstance(value, Tensor):
        y = y.long()  # torch.as_tensor([]) is float32
    if y.ndim != 1 or (n is not None and len(y) != n):
        raise ValueError(f"{name} must have shape ({'N' if n is None else n},), got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices, got {y.dtype}")
    y = y.long()
    if on_host(y) and y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices, got {int(y.min())}")
    return y


def floating_tensor(name: str, value: Any, ndim: int | tuple[int, ...], layout: str) -> Tensor:
    """`value` if it is a non-empty floating tensor with `ndim` dimensions (or one of several), finite when its
    values are on the host; `layout` names the expected shape in the error, e.g. "(C, H, W)"."""
    require_tensor(name, value)
    if value.dim() not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{name} must be {layout}, got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {value.dtype}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(value.shape)}")
    if on_host(value) and not torch.isfinite(value.detach()).all():
        raise ValueError(f"{name} contains NaN or inf")
    return value


def item_index(index: Any, length: int) -> int:
    """A dataset index (an int, numpy integer or 1-element integer tensor; bools rejected) as 0..length-1,
    negative values counting from the end; out of range is an IndexError."""
    try:
        i = operator.index(index)
    except TypeError:
        i = None
    if i is None or isinstance(index, bool):
        raise TypeError(f"index must be an int, got {type(index).__name__} {index!r}")
    if not -length <= i < length:
        raise IndexError(f"index {i} is out of range for {length} items")
    return i % length


def distinct(name: str, items: Iterable) -> list:
    """`items` as a list if no item appears twice (items are compared with ==), else a ValueError naming it."""
    items = list(items)
    for i, item in enumerate(items):
        if item in items[:i]:
            raise ValueError(f"{name} must not list {item!r} twice (at positions {items.index(item)} and {i})")
    return items
