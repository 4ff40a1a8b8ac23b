"""Calibration of lessons 07 and 07b's asserted quantities: each lesson's code cells re-run by
`notebook_seeds.py` for seeds 0, 1, 2 and 1 and 2 torch threads (a seed moves the global seed, the Optuna sampler
seed and the protocol's first training seed, `first_seed = 10 * seed`); prints one markdown table per lesson.

    .venv/bin/python benchmarks/calibration/lesson_07.py [--jobs 2] [--lesson 07 07b]

The protocol trains with one torch thread whatever the process's setting (`run_protocol` sets it), so the 1- and
2-thread rows of one seed are expected to agree; `train_one` in lesson 07 runs at the process's thread count.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ("dropout_seeds=0, progress=False)=>"
            "dropout_seeds=0, progress=False, sampler_seed={seed}, first_seed=10 * {seed})")
LESSONS = {
    "07": ("notebooks/07_fusion_variants.ipynb", [
        "seed_everything(0)=>seed_everything({seed})", PROTOCOL, "seed=0,=>seed={seed},"], [
        "text only=live_rows['text only']['acc_mean']", "best unimodal=best_unimodal", "late=late['acc_mean']",
        "early=early['acc_mean']",
        "early-late low=early['vs_late_low']", "train_one test=accs['test']"]),
    "07b": ("notebooks/07b_custom_fusion.ipynb", ["seed_everything(0)=>seed_everything({seed})", PROTOCOL], [
        "max_pool=mp['acc_mean']", "max_pool-unimodal low=mp['vs_unimodal_low']",
        "best unimodal=max(rows[m]['acc_mean'] for m in ('image only', 'audio only'))"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lesson", nargs="+", default=list(LESSONS), choices=list(LESSONS))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    for lesson in args.lesson:
        notebook, subs, values = LESSONS[lesson]
        cmd = [sys.executable, str(ROOT / "benchmarks/calibration/notebook_seeds.py"), str(ROOT / notebook),
               "--seeds", "0", "1", "2", "--threads", "1", "2", "--jobs", str(args.jobs)]
        cmd += [a for s in subs for a in ("--sub", s)] + [a for v in values for a in ("--value", v)]
        print(f"## lesson {lesson}\n", flush=True)
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
