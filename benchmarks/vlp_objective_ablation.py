"""The objective ablation of lesson 10b: the ALBEF-style model (two towers and a fusion encoder) trained on ITC,
ITC+ITM, ITC+ITM+MLM and ITC+ITM+MLM+MIM, one objective added per row, with the lesson's budget
(`mmlab.pretrain.paradigms.ParadigmSettings`), for several seeds, one torch thread per run. Writes every run and a
table of mean and range to benchmarks/results/vlp_objective_ablation.{json,md}; lesson 10b prints the table.

    .venv/bin/python benchmarks/vlp_objective_ablation.py --seeds 0 1 2 3 4 --jobs 2
    .venv/bin/python benchmarks/vlp_objective_ablation.py --report   # the markdown again, from the JSON
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import torch

from mmlab.runtime import cpu_name

OUT = Path(__file__).resolve().parent / "results" / "vlp_objective_ablation"


def one_seed(seed: int) -> dict:
    torch.set_num_threads(1)
    from mmlab.pretrain.paradigms import run_objective_ablation

    start = time.perf_counter()
    arms = run_objective_ablation(seed)
    return {"seed": seed, "seconds": round(time.perf_counter() - start, 1), "arms": arms}


def table(runs: list[dict]) -> str:
    arms = list(runs[0]["arms"])
    names = list(runs[0]["arms"][arms[0]])
    lines = ["| objectives | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for arm in arms:
        cells = []
        for name in names:
            values = [r["arms"][arm][name] for r in runs if r["arms"][arm][name] is not None]
            cells.append(f"{sum(values) / len(values):.3f} ({min(values):.3f}-{max(values):.3f})" if values else "-")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(runs: list[dict]) -> str:
    """Per arm and measure, the per-seed change from the arm above (one objective added): mean, and in how many
    seeds it is higher; plus, per arm with ITM, re-ranked minus ITC R@1 of the same model."""
    arms = list(runs[0]["arms"])
    names = [n for n in runs[0]["arms"][arms[0]] if n != "ITM colour swaps"]
    lines = ["| change | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def cell(pairs: list[tuple[float, float]]) -> str:
        d = [b - a for a, b in pairs]
        return f"{sum(d) / len(d):+.3f} ({sum(x > 0 for x in d)}/{len(d)} higher)" if d else "-"

    for above, arm in zip(arms, arms[1:]):
        cells = [cell([(r["arms"][above][n], r["arms"][arm][n]) for r in runs
                       if r["arms"][above][n] is not None and r["arms"][arm][n] is not None]) for n in names]
        lines.append(f"| {above} -> {arm} | " + " | ".join(cells) + " |")
    for arm in arms:
        pairs = [(r["arms"][arm]["ITC R@1"], r["arms"][arm]["re-ranked R@1"]) for r in runs
                 if r["arms"][arm]["re-ranked R@1"] is not None]
        if pairs:
            lines.append(f"| re-ranked - ITC R@1, {arm} | {cell(pairs)} |" + " |" * (len(names) - 1))
    return "\n".join(lines)


def write_report(record: dict) -> str:
    runs = record["runs"]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    body = f"{table(runs)}\n\nPaired by seed:\n\n{paired_table(runs)}"
    OUT.with_suffix(".md").write_text(
        f"# Objective ablation of lesson 10b\n\n`{record['command']}` on {record['machine']}; python "
        f"{record['versions']['python']}, torch {record['versions']['torch']}; {record['wall seconds']} s.\n\n"
        f"Mean (min-max) over seeds {seeds}; 200 validation images.\n\n{body}\n")
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at the same time (one thread each)")
    parser.add_argument("--report", action="store_true", help="only rewrite the markdown from the recorded JSON")
    args = parser.parse_args()
    if args.report:
        print(write_report(json.loads(OUT.with_suffix(".json").read_text())))
        return 0
    if args.jobs < 1 or any(s < 0 for s in args.seeds):
        parser.error("--jobs must be >= 1 and seeds >= 0")
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        runs = sorted(pool.map(one_seed, args.seeds), key=lambda r: r["seed"])
    record = {"command": "python benchmarks/vlp_objective_ablation.py " + " ".join(sys.argv[1:]),
              "machine": f"{cpu_name()}, {args.jobs} run(s) at a time, 1 torch thread each",
              "versions": {"python": platform.python_version(), "torch": torch.__version__},
              "wall seconds": round(time.perf_counter() - start, 1), "runs": runs}
    OUT.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(write_report(record))
    print("wrote", OUT.with_suffix(".json"), OUT.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
