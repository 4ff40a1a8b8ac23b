"""Files a deployment writes and reads: atomic writes, and ONNX files checked on load with clear errors.

A save writes a temporary file `.<name>.<random>.tmp` in the target's folder and renames it over the target
(`os.replace` is atomic on one file system), so a failed or interrupted save leaves the previous file intact.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmlab import validation

METADATA_PREFIX = "mmlab."  # keys of the ONNX metadata_props mmlab writes (identity and export settings)


class OnnxFileError(ValueError):
    """An ONNX file is missing, a folder, truncated, corrupt or not a valid model."""


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside `path` (same folder, so the final rename stays on one file system)."""
    return path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"


def write_atomic(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it over `path`; return `path`.

    If `write` raises, the temporary file is removed and `path` is left as it was."""
    path = validation.writable_path("path", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> Path:
    """Write `payload` to `path` atomically (see `write_atomic`)."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(payload))


def existing_file(name: str, path: Any, what: str = "file") -> Path:
    """`path` as a Path if it is an existing file; a folder or a missing path is an OnnxFileError naming it."""
    path = validation.as_path(name, path)
    if path.is_dir():
        raise OnnxFileError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise OnnxFileError(f"{what} {path} does not exist")
    return path


def load_onnx(path: str | os.PathLike, check: bool = True):
    """The `onnx.ModelProto` in `path` (weights inside the file), checked with `onnx.checker` when `check`.

    A truncated or corrupt file, or one whose weights live in a separate external-data file, is an
    OnnxFileError naming the file."""
    import onnx

    path = existing_file("path", path, "ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends for a short or damaged file
        raise OnnxFileError(f"ONNX file {path} is truncated or corrupt ({path.stat().st_size} bytes): {e}") from e
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise OnnxFileError(f"ONNX file {path} keeps {len(external)} weights in external data files "
                            f"(e.g. {external[0]!r}); mmlab writes and reads single-file models only")
    if check:
        try:
            onnx.checker.check_model(model, full_check=False)
        except Exception as e:
            raise OnnxFileError(f"ONNX file {path} is not a valid ONNX model: {e}") from e
    return model


def read_metadata(model) -> dict[str, str]:
    """The mmlab metadata of an `onnx.ModelProto` (keys without the "mmlab." prefix)."""
    return {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)}


def set_metadata(model, values: dict[str, Any]) -> None:
    """Store `values` (as strings) in the model's metadata_props under "mmlab.<key>", replacing older ones."""
    keys = {METADATA_PREFIX + k for k in values}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in keys]
    del model.metadata_props[:]
    for key, value in kept + [(METADATA_PREFIX + k, str(v)) for k, v in values.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def save_onnx(model, path: str | os.PathLike) -> Path:
    """Write an `onnx.ModelProto` to `path` as one file (no external data), atomically."""
    import onnx

    return write_atomic(path, lambda tmp: onnx.save_model(model, str(tmp), save_as_external_data=False))
