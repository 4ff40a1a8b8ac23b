"""Run a lesson's code cells under other seeds and thread counts and print the quantities it asserts.

The lessons fix their seed (first cell: `seed_everything(0)`), so calibrating a threshold means re-running the
same code with the seed changed. This script reads the notebook, applies the textual substitutions given with
`--sub OLD=>NEW` (the seed sites of that lesson; `{seed}` in NEW is replaced by the seed), skips cells marked
`# NBVAL_SKIP` and widget cells (and cells containing a `--skip` text), drops every `assert` (the thresholds are
what is calibrated), runs the rest in one namespace with matplotlib's Agg backend, and evaluates each
`--value NAME=EXPR` in that namespace afterwards. A substitution that matches nothing is an error, so a renamed
variable in the lesson cannot silently turn the calibration into re-runs of seed 0.

    python benchmarks/calibration/notebook_seeds.py notebooks/06_contrastive_alignment.ipynb --seeds 0 1 2 \
        --threads 1 2 --sub "seed_everything(0)=>seed_everything({seed})" --value "val R@1=scores['val']['i2t@1']"

Prints a markdown table (one row per seed and thread count) and the minimum of each value. `--jobs N` runs N of
them at once; the seconds column then measures a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _child(args: argparse.Namespace, seed: int, threads: int) -> dict:
    """One run in a fresh interpreter (torch's thread count is fixed per process once set)."""
    payload = json.dumps({"notebook": str(args.notebook), "seed": seed, "threads": threads, "subs": args.sub,
                          "values": args.value, "skip": args.skip})
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, __file__, "--child", payload], capture_output=True, text=True, env=env,
                         cwd=Path(args.notebook).parent)
    if out.returncode != 0:
        raise SystemExit(f"seed {seed}, {threads} threads failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _without_asserts(code: str) -> str:
    """The code with every `assert` statement replaced by `pass` (the thresholds are what is being calibrated)."""
    import ast

    class Strip(ast.NodeTransformer):
        def visit_Assert(self, node):  # noqa: N802 (ast's visitor naming)
            return ast.copy_location(ast.Pass(), node)

    return ast.unparse(Strip().visit(ast.parse(code)))


def _run_child(payload: str) -> None:
    import nbformat
    import torch

    spec = json.loads(payload)
    seed, threads = spec["seed"], spec["threads"]
    sources = []
    for cell in nbformat.read(spec["notebook"], 4).cells:
        if (cell.cell_type != "code" or "NBVAL_SKIP" in cell.source or "widgets.interact" in cell.source
                or any(text in cell.source for text in spec["skip"])):
            continue
        sources.append(cell.source)
    code = "\n\n".join(sources)
    for sub in spec["subs"]:
        old, new = sub.split("=>", 1)
        if old not in code:
            raise SystemExit(f"substitution {old!r} matches nothing in {spec['notebook']}")
        code = code.replace(old, new.replace("{seed}", str(seed)))
    code = code.replace("torch.set_num_threads(1)", f"torch.set_num_threads({threads})")
    code = _without_asserts(code)  # record the values, do not stop at the lesson's thresholds
    namespace: dict = {}
    start = time.perf_counter()
    real_stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        exec(compile(code, spec["notebook"], "exec"), namespace)
    finally:
        sys.stdout = real_stdout
    torch.set_num_threads(threads)
    values = {}
    for item in spec["values"]:
        name, expr = item.split("=", 1)
        values[name] = float(eval(expr, namespace))
    print(json.dumps({"seed": seed, "threads": threads, "seconds": round(time.perf_counter() - start, 1),
                      "values": values}))


def run_grid(args: argparse.Namespace, seeds: list[int], threads: list[int], jobs: int = 1) -> list[dict]:
    """One child run per (seed, thread count), `jobs` at a time; `args` carries notebook, sub, value and skip."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(lambda st: _child(args, *st), [(s, t) for s in seeds for t in threads]))


def markdown_table(rows: list[dict], names: list[str]) -> str:
    """The runs as a markdown table, one row per run, then the minimum of each value in bold."""
    lines = ["| seed | threads | seconds | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    lines += [f"| {r['seed']} | {r['threads']} | {r['seconds']} | " + " | ".join(f"{r['values'][n]:.3f}" for n in names)
              + " |" for r in rows]
    lines.append("| **min** | | | " + " | ".join(f"**{min(r['values'][n] for r in rows):.3f}**" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _run_child(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sub", action="append", default=[], help="OLD=>NEW, {seed} in NEW is the seed")
    parser.add_argument("--value", action="append", default=[], help="NAME=EXPR evaluated after the run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (each in its own process)")
    parser.add_argument("--skip", action="append", default=[], help="skip the code cells containing this text")
    args = parser.parse_args(argv)
    args.notebook = args.notebook.resolve()
    print(markdown_table(run_grid(args, args.seeds, args.threads, args.jobs), [v.split("=", 1)[0] for v in args.value]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
