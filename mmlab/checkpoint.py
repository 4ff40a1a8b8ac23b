"""Checkpoints as safetensors files, no pickle: every tensor of a nested state (model, optimizer,
scheduler, RNG, ...) is stored as a safetensors tensor, and the rest of the structure (numbers,
strings, lists, dicts with int keys, tuples) as JSON in the file's metadata.

Saving writes a temporary file in the target's folder and renames it over the target
(`os.replace` is atomic), so an interrupted save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT_KEY = "mmlab_state"
VERSION_KEY = "mmlab_checkpoint_version"
VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not an mmlab checkpoint."""


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references into `tensors`; mark tuples and dicts with non-str keys."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}:{path}"
        # clone: safetensors refuses tensors that share storage (tied weights, views)
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "__tensor__" not in obj:
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"cannot store dict key {k!r} of type {type(k).__name__} at {path!r}")
            items.append([k, _encode(v, f"{path}/{k}", tensors)])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} at {path!r}: only tensors, numbers, strings, "
                          "None, lists, tuples and dicts go into a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (a nested dict of tensors and plain values) to `path` atomically; return the path."""
    path = Path(path)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, "", tensors)
    metadata = {FORMAT_KEY: json.dumps(structure), VERSION_KEY: VERSION}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a file written by `save_checkpoint`; a missing, truncated or foreign file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types for bad headers / short files
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt "
                              f"({path.stat().st_size} bytes): {e}") from e
    if FORMAT_KEY not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not an mmlab checkpoint (no '{FORMAT_KEY}' metadata)")
    if metadata.get(VERSION_KEY) != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {metadata.get(VERSION_KEY)!r}; this mmlab reads {VERSION!r}")
    try:
        structure = json.loads(metadata[FORMAT_KEY])
        return _decode(structure, tensors)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} has corrupt metadata: {e}") from e
