"""`python -m mmlab run-notebooks`: the headless run for instructors.

Executes every notebook in `notebooks/` in order (on copies: the committed notebooks are
never modified), writes each executed notebook as HTML to the output folder and prints a
pass/fail table with each notebook's wall time.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from mmlab import validation


def find_notebooks(notebook_dir: str | os.PathLike, pattern: str = "*.ipynb",
                   names: tuple[str, str] = ("notebook_dir", "pattern")) -> list[Path]:
    """The files in `notebook_dir` matching the glob `pattern`, sorted; none is a ValueError. Errors call the
    two arguments by `names` (the command line passes its options)."""
    folder = validation.as_path(names[0], notebook_dir)
    if not folder.is_dir():
        raise ValueError(f"{names[0]} {str(folder)!r} is not a folder")
    if not isinstance(pattern, str):
        raise TypeError(f"{names[1]} must be a glob (str), got {type(pattern).__name__}")
    if not pattern or Path(pattern).is_absolute():
        raise ValueError(f"{names[1]} must be a non-empty glob relative to {names[0]}, e.g. '0[0-3]*.ipynb', "
                         f"got {pattern!r}")
    paths = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not paths:
        raise ValueError(f"no notebooks matching {names[1]} {pattern!r} in {folder}")
    return paths


def run_notebooks(notebook_dir: str | os.PathLike, out_dir: str | os.PathLike, timeout: int = 600,
                  pattern: str = "*.ipynb") -> int:
    """Run the notebooks matching `pattern` (see `find_notebooks`), each cell allowed `timeout` seconds;
    return 0 if all passed, 1 otherwise. Every argument is checked before the first notebook runs."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    validation.positive_int("timeout", timeout)
    paths = find_notebooks(notebook_dir, pattern)
    out_dir = validation.writable_path("out_dir", out_dir, folder=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
            status = "pass"
        except CellExecutionError as err:
            status = f"FAIL: {str(err).strip().splitlines()[-1][:80]}"
        seconds = time.perf_counter() - start
        html, _ = HTMLExporter().from_notebook_node(notebook)
        (out_dir / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
        rows.append((path.name, status, seconds))
        print(f"{path.name:<36} {status:<6} {seconds:7.1f} s", flush=True)
    failed = sum(not s.startswith("pass") for _, s, _ in rows)
    total = sum(t for *_, t in rows)
    print(f"\n{len(rows) - failed}/{len(rows)} notebooks passed in {total:.1f} s; HTML in {out_dir}/")
    return 1 if failed else 0
