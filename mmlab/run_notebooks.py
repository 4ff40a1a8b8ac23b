"""`python -m mmlab run-notebooks`: the headless run for instructors.

Executes every notebook in `notebooks/` in order (on copies: the committed notebooks are
never modified), writes each executed notebook as HTML to the output folder and prints a
pass/fail table with each notebook's wall time.
"""
from __future__ import annotations

import time
from pathlib import Path


def run_notebooks(notebook_dir: Path, out_dir: Path, timeout: int = 600, pattern: str = "*.ipynb") -> int:
    """Run the notebooks matching `pattern`; return 0 if all passed, 1 otherwise."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    paths = sorted(notebook_dir.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no notebooks matching {pattern!r} in {notebook_dir}")
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
    print(f"\n{len(rows) - failed}/{len(rows)} notebooks passed in {sum(t for *_, t in rows):.1f} s; HTML in {out_dir}/")
    return 1 if failed else 0
