"""Calibration of lesson 10's thresholds: the lesson's own runs (mmlab.pretrain.recipes.run_lesson) for several
seeds and torch thread counts; prints one markdown table row per run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/lesson_10.py --seeds 0 1 2 --threads 1
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/lesson_10.py --seeds 0 1 2 --threads 2
"""
from __future__ import annotations

import argparse
import sys

import torch

from mmlab.pretrain.recipes import run_lesson


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--header", action="store_true", help="print the table header first")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for i, seed in enumerate(args.seeds):
        out = run_lesson(seed)
        if args.header and i == 0:
            print("| seed | threads | " + " | ".join(out) + " |")
            print("|---|---|" + "---|" * len(out))
        print(f"| {seed} | {args.threads} | " + " | ".join(f"{v:.3f}" for v in out.values()) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
