"""Finished runs on disk, so that an interrupted benchmark continues where it stopped.

One JSON file per finished unit under `<out>/runs/<task>/<method>/`: `trial_<k>.json` for tuning trial k,
`seed_<s>_md<p>.json` for seed s of the selected configuration trained with modality dropout p. Each file is
written to a temporary file in the same folder and moved into place (`os.replace`), so an interruption never
leaves a half-written record. `<out>/runs/protocol.json` holds the protocol settings; a rerun with other
settings is refused instead of mixing results.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any


def slug(name: str) -> str:
    """A file-name-safe version of a method label."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_") or "_"


def write_json(path: Path, record: Any) -> None:
    """Write `record` as JSON to `path` atomically (temp file in the same folder, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """Records of finished units under `root/runs`."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "runs"

    def path(self, task: str, method: str, unit: str) -> Path:
        return self.root / slug(task) / slug(method) / f"{unit}.json"

    def get(self, task: str, method: str, unit: str) -> dict | None:
        path = self.path(task, method, unit)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def put(self, task: str, method: str, unit: str, record: dict) -> None:
        write_json(self.path(task, method, unit), record)

    def check_protocol(self, settings: dict) -> None:
        """Record `settings` on the first run; on a rerun, a ValueError naming what changed."""
        path = self.root / "protocol.json"
        if path.exists():
            saved = json.loads(path.read_text())
            changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
            if changed:
                detail = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
                raise ValueError(f"{self.root} holds runs of another protocol ({detail}); use another output "
                                 "folder or the same settings")
        else:
            write_json(path, settings)
