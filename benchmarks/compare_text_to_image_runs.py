"""Score two saved text-to-image runs with the same code (`mmlab.diffusion.measure_run`: 480 val and 480 test
prompts, guidance 1 and 3, 16 Euler steps, seed 0) and print every metric of both and their differences: a check
that two trainings by data/train_text_to_image.py (e.g. on two machines) give the same numbers.

    .venv/bin/python benchmarks/compare_text_to_image_runs.py RUN_A RUN_B

A run folder from an earlier commit can be restored with `git show COMMIT:data/text_to_image/FILE > DIR/FILE`.
"""
from __future__ import annotations

import argparse
import json

import torch

from mmlab.diffusion import load_run, measure_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scores = {}
    for folder in (args.run_a, args.run_b):
        run = load_run(folder)
        scores[folder] = measure_run(run.generator, run.reader, run.dual_encoder)
        print(folder, json.dumps(scores[folder]))
    a, b = scores[args.run_a], scores[args.run_b]
    worst = (0.0, "")
    for split in a:
        for images in a[split]:
            for key, value in a[split][images].items():
                diff = b[split][images][key] - value
                print(f"{split:4} {images:8} {key:10} {value:7.4f} {b[split][images][key]:7.4f} {diff:+.4f}")
                worst = max(worst, (abs(diff), f"{split} {images} {key}"))
    print(f"largest |difference|: {worst[0]:.4f} ({worst[1]})")


if __name__ == "__main__":
    main()
