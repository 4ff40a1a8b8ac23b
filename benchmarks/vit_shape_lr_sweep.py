"""The learning rate of lesson 10b's image tower: the ViT of `ParadigmSettings` (width 48, 2 layers, 8x8 patches,
mean-pooled) trained *supervised* to classify Shapes-World shape for the lesson's 500 steps of 64, at several
learning rates and seeds; validation accuracy on 1 000 images. Shape is the attribute these towers learn last, so
the lesson uses the learning rate at which this tower learns it best, for every paradigm alike.

    .venv/bin/python benchmarks/vit_shape_lr_sweep.py
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from mmlab.encoders.config import ViTConfig
from mmlab.encoders.vision import VisionTransformer
from mmlab.pretrain.data import load_vl_data
from mmlab.pretrain.paradigms import ParadigmSettings
from mmlab.runtime import cpu_name, seed_everything
from mmlab.train import TrainConfig, fit

OUT = Path(__file__).resolve().parent / "results" / "vit_shape_lr_sweep"
LRS = (5e-4, 1e-3, 2e-3, 5e-3)
SEEDS = (0, 1, 2)


def shape_accuracy(train, val, lr: float, seed: int, s: ParadigmSettings) -> float:
    seed_everything(seed)
    model = nn.Module()
    model.vit = VisionTransformer(ViTConfig(dim=s.dim, depth=2, heads=s.heads, mlp_ratio=2.0, image_size=32,
                                            patch_size=8, pool="mean"))
    model.head = nn.Linear(s.dim, 4)

    def batch(step: int):
        idx = torch.randint(0, len(train), (s.batch,), generator=torch.Generator().manual_seed(seed * 1_000_003 + step))
        return train.images[idx], train.image_facts[idx, 0]

    fit(model, lambda m, b: nn.functional.cross_entropy(m.head(m.vit.pooled(b[0])), b[1]), batch,
        TrainConfig(steps=s.steps, lr=lr, seed=seed, progress=False))
    with torch.no_grad():
        predicted = model.head(model.vit.eval().pooled(val.images)).argmax(1)
    return float((predicted == val.image_facts[:, 0]).float().mean())


def main() -> int:
    torch.set_num_threads(1)
    s = ParadigmSettings()
    train, vocab = load_vl_data("train", s.n_train)
    val, _ = load_vl_data("val", 1000, vocab)
    start = time.perf_counter()
    acc = {lr: [shape_accuracy(train, val, lr, seed, s) for seed in SEEDS] for lr in LRS}
    lines = ["| lr | " + " | ".join(f"seed {k}" for k in SEEDS) + " | mean |", "|---" * (len(SEEDS) + 2) + "|"]
    lines += [f"| {lr:g} | " + " | ".join(f"{a:.3f}" for a in v) + f" | {sum(v) / len(v):.3f} |"
              for lr, v in acc.items()]
    table = "\n".join(lines)
    command = "python benchmarks/vit_shape_lr_sweep.py"
    machine = f"{cpu_name()}, 1 torch thread"
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    seconds = round(time.perf_counter() - start, 1)
    OUT.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine, "versions": versions,
                                                    "seconds": seconds, "steps": s.steps, "batch": s.batch,
                                                    "accuracy": {str(k): v for k, v in acc.items()}}, indent=1) + "\n")
    OUT.with_suffix(".md").write_text(
        f"# Shape accuracy of lesson 10b's image tower, trained supervised, by learning rate\n\n`{command}` on "
        f"{machine}; python {versions['python']}, torch {versions['torch']}; {seconds} s. {s.steps} steps of "
        f"{s.batch}, constant lr, AdamW (`mmlab.train.fit`); accuracy on 1 000 validation images (chance 0.25).\n\n"
        f"{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
