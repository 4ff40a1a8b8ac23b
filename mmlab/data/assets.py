"""Committed data files: where they live and SHA-256 verification.

Where the data folder is (`data_root()`), first match wins:

1. `$MMLAB_DATA_DIR`, when set (it must be a folder);
2. the repository's top-level `data/`, when mmlab runs from a clone (editable install or PYTHONPATH);
3. `<prefix>/share/mmlab/data`, where a regular install (`pip install .` or a wheel) puts the
   same files (pyproject.toml's `[tool.setuptools.data-files]`), for the environment's prefix,
   its base prefix and the user scheme (`pip install --user`).

A folder counts as the data folder when it holds `av_digits/`. If none does, `AssetError`
says where it looked and how to set `MMLAB_DATA_DIR`.

Files are only ever read here, never written. Each verification is cached per process
(keyed by path, size and modification time), so a dataset built many times hashes once.
"""
from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from pathlib import Path

_VERIFIED: dict[tuple, str] = {}
ENV_VAR = "MMLAB_DATA_DIR"
_MARKER = "av_digits"  # a data folder holds this sub-folder
_SHARE = ("share", "mmlab", "data")  # where an install puts data/, under its data prefix
_RESTORE = ("restore it from the repository (in a clone: `git checkout -- data/`; an installed mmlab: "
            f"reinstall it), or set {ENV_VAR} to a good copy of data/")


class AssetError(RuntimeError):
    """The data folder cannot be found, or a committed file in it is missing or fails its checksum."""


def _source_data_dir() -> Path:
    """data/ of the clone this module was imported from (it need not exist)."""
    return Path(__file__).resolve().parents[2] / "data"


def _installed_data_dirs() -> list[Path]:
    """<prefix>/share/mmlab/data for each prefix an install may have used, most specific first."""
    prefixes = [sysconfig.get_path("data"), sys.prefix, sys.base_prefix]
    try:
        prefixes.append(sysconfig.get_path("data", f"{os.name}_user"))
    except KeyError:  # an interpreter without a user scheme
        pass
    out: list[Path] = []
    for prefix in filter(None, prefixes):
        path = Path(prefix, *_SHARE)
        if path not in out:
            out.append(path)
    return out


def data_search_path() -> list[Path]:
    """The folders data_root() tries after $MMLAB_DATA_DIR, in order."""
    return [_source_data_dir(), *_installed_data_dirs()]


def data_root() -> Path:
    """The data folder: $MMLAB_DATA_DIR, else the clone's data/, else an install's share/mmlab/data."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise AssetError(f"{ENV_VAR}={env!r} is not a folder; point it at the folder that holds "
                             f"{_MARKER}/ (the data/ folder of a clone of the mmlab repository), or unset it")
        return path
    candidates = data_search_path()
    for path in candidates:
        if (path / _MARKER).is_dir():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise AssetError(f"cannot find mmlab's data folder (a folder holding {_MARKER}/); looked in {looked}. "
                     f"Reinstall mmlab (`pip install .` ships data/ to <prefix>/share/mmlab/data), or set "
                     f"{ENV_VAR} to the data/ folder of a clone of the repository, "
                     f"e.g. `export {ENV_VAR}=/path/to/mmlab/data`")


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, expected: str) -> dict:
    """Report {"file", "ok", "expected", "actual"} for one file; actual is None if it is missing."""
    path = Path(path)
    if not path.is_file():
        return {"file": str(path), "ok": False, "expected": expected, "actual": None}
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    actual = _VERIFIED[key]
    return {"file": str(path), "ok": actual == expected, "expected": expected, "actual": actual}


def describe_failure(report: dict) -> str:
    """One clear sentence about a failed check, naming the file and the expected checksum."""
    if report["actual"] is None:
        return f"missing data file {report['file']} (expected SHA-256 {report['expected']}); {_RESTORE}"
    return (f"corrupted data file {report['file']}: expected SHA-256 {report['expected']}, "
            f"got {report['actual']}; {_RESTORE}")


def require_files(reports: list[dict]) -> None:
    """Raise AssetError naming every file whose check failed."""
    bad = [r for r in reports if not r["ok"]]
    if bad:
        raise AssetError("; ".join(describe_failure(r) for r in bad))
