"""Checkpoints as safetensors files, no pickle: every tensor of a nested state (model, optimizer,
scheduler, RNG, ...) is stored as a safetensors tensor, and the rest of the structure (numbers,
strings, lists, dicts with int keys, tuples) as JSON in the file's metadata.

Every tensor's bytes carry a SHA-256 digest in the metadata, checked on load, so a flipped bit is a
CheckpointError naming the file and the tensor rather than silently different weights.

Saving writes a temporary file `.<name>.<random>.tmp` in the target's folder (permissions from the
umask, as any new file) and renames it over the target (`os.replace` is atomic), so an interrupted
save leaves the previous checkpoint intact; temporary files a killed save left behind are removed by
the next save to the same path (one writer per path is assumed).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open

from mmlab import validation

FORMAT_KEY = "mmlab_state"
VERSION_KEY = "mmlab_checkpoint_version"
DIGEST_KEY = "mmlab_sha256"
VERSION = "2"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt, not an mmlab checkpoint, or of another model."""


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


def _sha256(t: torch.Tensor) -> str:
    """Hex SHA-256 of a contiguous CPU tensor's bytes."""
    return hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy()).hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (a nested dict of tensors and plain values) to `path` atomically; return the path."""
    path = Path(path)
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, "", tensors)
    metadata = {FORMAT_KEY: json.dumps(structure), VERSION_KEY: VERSION,
                DIGEST_KEY: json.dumps({k: _sha256(t) for k, t in tensors.items()})}
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # Serialise in memory and write the bytes ourselves: safetensors' save_file writes through a temporary
    # file of its own (mode 0o600, a name no later save can attribute), which a killed process leaves behind.
    payload = safetensors.torch.save(tensors, metadata=metadata)
    try:
        with open(tmp, "xb") as f:  # mode 0o666 minus the umask, as any new file
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_model_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: str | os.PathLike,
                     limit: int = 5) -> None:
    """`model.load_state_dict(state_dict)` for a state read from the checkpoint `path`; when the two do not
    fit, a CheckpointError naming the file and the missing, unexpected and differently shaped keys (up to
    `limit` of each), raised before the model changes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [f"{k} {tuple(state_dict[k].shape)} in the file vs {tuple(own[k].shape)} in the model"
                for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    problems = [f"{what} {', '.join(keys[:limit])}" + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("other shapes for", reshaped)) if keys]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit this {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state_dict)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a file written by `save_checkpoint`, tensors on `map_location`.

    A missing, truncated, corrupt (failing a tensor's SHA-256 check) or foreign file is a CheckpointError."""
    path = validation.as_path("path", path)
    try:
        map_location = torch.device(map_location)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"map_location must name a device such as 'cpu' or 'cuda:0', got {map_location!r}") from e
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a folder, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers / short files
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt "
                              f"({path.stat().st_size} bytes): {e}") from e
    if FORMAT_KEY not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not an mmlab checkpoint (no '{FORMAT_KEY}' metadata)")
    if metadata.get(VERSION_KEY) != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {metadata.get(VERSION_KEY)!r}; "
                              f"this mmlab reads {VERSION!r}")
    try:
        digests = json.loads(metadata[DIGEST_KEY])
        structure = json.loads(metadata[FORMAT_KEY])
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"checkpoint file {path} has corrupt metadata: {e}") from e
    for key, t in tensors.items():
        if digests.get(key) != _sha256(t):
            raise CheckpointError(f"checkpoint file {path} is corrupt: tensor {key.partition(':')[2].lstrip('/')!r} "
                                  "fails its SHA-256 check")
    tensors = {k: t.to(map_location) for k, t in tensors.items()}
    try:
        return _decode(structure, tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {path} has corrupt metadata: {e}") from e
