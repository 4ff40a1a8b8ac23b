"""Calibration and tower-pretraining ablation of lesson 12 (visual grounding): the lesson's own cells re-run for
seeds 0, 1, 2 and 1 and 2 torch threads (`notebook_seeds.py`), once as written (the tower pretrained on dense
tagging plus per-patch boxes) and once with the box term switched off (`box_weight=0.0`: tagging only), the one
change between the two arms (the lesson's cell that prints this file is skipped). Prints a markdown table per arm
and writes every run to benchmarks/results/grounding_tower_ablation.json, which the lesson prints.

    .venv/bin/python benchmarks/calibration/lesson_12.py --jobs 2
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from notebook_seeds import markdown_table, run_grid  # noqa: E402 (a sibling script, not a package)

from mmlab.runtime import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "12_visual_grounding.ipynb"
OUT = ROOT / "benchmarks" / "results" / "grounding_tower_ablation.json"
SEED_SITES = ["seed_everything(0)=>seed_everything({seed})", "SEED = 0=>SEED = {seed}"]
ARMS = {"tagging + boxes": [], "tagging only": ["pretrain_tower(box_weight=5.0)=>pretrain_tower(box_weight=0.0)"]}
VALUES = {
    "val Acc@0.5": "ok.float().mean()",
    "val mean IoU": "iou_target.mean()",
    "val right object": "right_object.float().mean()",
    "val boxes touching nothing": "(~touches).float().mean()",
    "val relation right object": "right_object[is_relation].float().mean()",
    "val attribute right object (2-4 objects)": "right_object[multi & ~is_relation].float().mean()",
    "val relation Acc@0.5": "ok[is_relation].float().mean()",
    "test Acc@0.5": "ok_test.float().mean()",
    "tag colour": "tag_acc['colors']",
    "tag shape": "tag_acc['shapes']",
    "patch box error px": "box_err",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (seconds then measure sharing)")
    args = parser.parse_args()
    runs = []
    for arm, subs in ARMS.items():
        spec = argparse.Namespace(notebook=NOTEBOOK, sub=SEED_SITES + subs, skip=[OUT.name],
                                  value=[f"{k}={v}" for k, v in VALUES.items()])
        rows = run_grid(spec, [0, 1, 2], [1, 2], args.jobs)
        print(f"\n{arm}\n" + markdown_table(rows, list(VALUES)))
        runs += [{"arm": arm, **r} for r in rows]
    OUT.write_text(json.dumps({
        "command": "python benchmarks/calibration/lesson_12.py " + " ".join(sys.argv[1:]),
        "machine": f"{cpu_name()}, {args.jobs} run(s) at a time",
        "versions": {"python": platform.python_version(), "torch": torch.__version__}, "runs": runs}, indent=1) + "\n")
    print("wrote", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
