"""Committed data files: where they live and SHA-256 verification.

Files are only ever read here, never written. Each verification is cached per process
(keyed by path, size and modification time), so a dataset built many times hashes once.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_VERIFIED: dict[tuple, str] = {}


class AssetError(RuntimeError):
    """A committed data file is missing or does not match its recorded checksum."""


def data_root() -> Path:
    """The repository's data/ folder, or $MMLAB_DATA_DIR when set."""
    env = os.environ.get("MMLAB_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


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
        return (f"missing data file {report['file']} (expected SHA-256 {report['expected']}); "
                "restore it from the repository, e.g. `git checkout -- data/`")
    return (f"corrupted data file {report['file']}: expected SHA-256 {report['expected']}, "
            f"got {report['actual']}; restore it from the repository, e.g. `git checkout -- data/`")


def require_files(reports: list[dict]) -> None:
    """Raise AssetError naming every file whose check failed."""
    bad = [r for r in reports if not r["ok"]]
    if bad:
        raise AssetError("; ".join(describe_failure(r) for r in bad))
