"""Train the text-to-image run that lesson 15 loads, and write it to a folder (default data/text_to_image).

    python data/train_text_to_image.py --out data/text_to_image --eval-every 1000 --threads 1   # the committed run
    python data/train_text_to_image.py --out /tmp/t2i --eval-every 1000 --threads 1 --check data/text_to_image

The committed run took 28 min on this project's 2-core AMD EPYC virtual machine with 1 torch thread (the other core
running lesson calibrations); MANIFEST.json records the exact command, time, machine and versions.

What it does, deterministically (every random draw comes from generators seeded by --seed):
1. trains the attribute reader and the CLIP-score dual encoder on real Shapes-World "train" images;
2. trains the DiT generator by flow matching (mmlab.diffusion.recipe), scoring its EMA weights every --eval-every
   steps on 96 val prompts (guidance 3, 16 Euler steps), so training time can be read against attribute accuracy;
3. measures the final run (mmlab.diffusion.evaluation.measure_run: val and test prompts, guidance 1 and 3, the real
   images of the same prompts as the ceiling and shuffled prompts as the chance-level control);
4. writes the weights and MANIFEST.json (command, wall time, machine, versions, SHA-256 of each file, metrics).

With --check FOLDER it then compares its metrics with FOLDER's recorded ones and exits 1 if any differs by more than
the tolerance recorded there (TOLERANCE below when the run was made). After retraining the committed run, copy the
printed manifest SHA-256 into mmlab/diffusion/weights.py (COMMITTED_MANIFEST_SHA256).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from mmlab import validation
from mmlab.data.assets import sha256_file
from mmlab.diffusion.evaluation import measure_run, prompt_set
from mmlab.diffusion.recipe import TextToImageRecipe, train_text_to_image
from mmlab.diffusion.weights import MANIFEST, read_manifest, save_run
from mmlab.runtime import cpu_name

# Largest accepted |difference| of a recorded metric between two runs of this script. Runs on one machine and thread
# count are bit-identical; two AMD EPYC hosts (one with AVX-512 VNNI) differed by up to 0.0355 (val g3 shape), so the
# bound is that / 0.8 (benchmarks/results/text_to_image_cpu.md, "Reproduction across machines").
TOLERANCE = 0.045


def compare(metrics: dict, recorded: dict, tolerance: float, prefix: str = "") -> list[str]:
    """Every number in `recorded` (nested dicts) against the same key in `metrics`: the keys that differ."""
    bad = []
    for key, want in recorded.items():
        got = metrics.get(key)
        if isinstance(want, dict):
            bad += compare(got or {}, want, tolerance, f"{prefix}{key}.")
        elif got is None or abs(got - want) > tolerance:
            bad.append(f"{prefix}{key}: recorded {want}, this run {got}")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "text_to_image")
    parser.add_argument("--steps", type=int, default=TextToImageRecipe.steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the committed run used 1)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--check", type=Path, help="a saved run whose recorded metrics this run must reproduce")
    args = parser.parse_args(argv)
    try:
        recipe = TextToImageRecipe(steps=args.steps, seed=args.seed)
        validation.positive_int("--threads", args.threads)
        validation.positive_int("--eval-every", args.eval_every)
        validation.writable_path("--out", args.out, folder=True)
        recorded = read_manifest(args.check) if args.check is not None else None
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    trained = train_text_to_image(recipe, progress=True, monitor=prompt_set("val", 96), eval_every=args.eval_every)
    for row in trained.history["evals"]:
        print(row)
    seconds = time.perf_counter() - start
    metrics = measure_run(trained.generator, trained.reader, trained.dual_encoder)
    provenance = {
        "command": "python data/train_text_to_image.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(seconds, 1), "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "metrics": metrics, "evals": trained.history["evals"], "tolerance": TOLERANCE,
        "loss_first_last": [round(trained.history["loss"][0], 4), round(trained.history["loss"][-1], 4)]}
    save_run(args.out, trained, provenance)
    print(json.dumps(metrics, indent=1))
    print(f"wrote {args.out} in {seconds:.0f} s; {MANIFEST} SHA-256 {sha256_file(args.out / MANIFEST)}")
    if recorded is not None:
        bad = compare(metrics, recorded["metrics"], recorded.get("tolerance", TOLERANCE))
        print("reproduced within tolerance" if not bad else "NOT reproduced:\n" + "\n".join(bad))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
