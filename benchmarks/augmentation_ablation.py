"""Image augmentation ablation on Shapes-World: which augmentation helps which attribute, measured on held-out data.

    python benchmarks/augmentation_ablation.py --seeds 0 1 2 --jobs 2      # trains, writes .json and .md
    python benchmarks/augmentation_ablation.py --report                    # rewrites the .md from the .json

A small CNN with three heads (shape, colour, size; cross-entropy summed) is trained on 400 training images for
400 steps (batch 64, AdamW, lr 2e-3, cosine), the same settings for every arm; only the augmentation of the training
batches changes. Accuracy is read on 2000 validation-split images. Arms: none; random flip; random resized crop
(scale 0.35-1); RandAugment (2 operations, magnitude 9); MixUp (alpha 0.2, soft targets for all three heads).
Paired per-seed differences against "none" with a 95% t-interval (`mmlab.fusion_bench.stats`).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmlab.data import ShapesWorld
from mmlab.fusion_bench.stats import mean_std, paired_difference
from mmlab.preprocess import augment
from mmlab.runtime import cpu_name
from mmlab.train import TrainConfig, fit

OUT = Path(__file__).resolve().parent / "results" / "augmentation_ablation"
N_TRAIN, N_TEST, STEPS, BATCH, LR = 400, 2000, 400, 64, 2e-3
HEADS = {"shape": 4, "color": 6, "size": 2}
ARMS = ("none", "flip", "crop", "randaugment", "mixup")


def model() -> nn.Module:
    """Conv stages of 32, 32, 64, 64 channels (3x3, max-pooled to 4x4), a hidden layer on the flattened map, 3 heads."""
    body = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 4 * 4, 64), nn.ReLU())
    return nn.ModuleDict({"body": body, **{k: nn.Linear(64, n) for k, n in HEADS.items()}})


def augmented(arm: str, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The training images after the arm's (label-free) augmentation."""
    if arm == "flip":
        return augment.random_flip(images, generator=g)
    if arm == "crop":
        return augment.random_resized_crop(images, images.shape[-1], scale=(0.35, 1.0), generator=g)
    if arm == "randaugment":
        return augment.rand_augment(images, num_ops=2, magnitude=9, generator=g)
    return images


def run(arm: str, seed: int) -> dict:
    torch.set_num_threads(1)
    train = ShapesWorld("train", size=N_TRAIN, image_size=32).batch(range(N_TRAIN))
    test = ShapesWorld("val", size=N_TEST, image_size=32).batch(range(N_TEST))
    onehot = {k: F.one_hot(train[k], n).float() for k, n in HEADS.items()}
    torch.manual_seed(seed)
    net = model()
    order = torch.randint(N_TRAIN, (STEPS, BATCH), generator=torch.Generator().manual_seed(seed))

    def loss_fn(m, step):
        idx = order[step]
        g = torch.Generator().manual_seed(seed * 100_003 + step)
        images = train["image"][idx]
        soft = {k: onehot[k][idx] for k in HEADS}
        if arm == "mixup":  # one coefficient and one pairing for the image and every head's targets
            mixed, _, _ = augment.mixup({"image": images, **soft}, soft["shape"], alpha=0.2, generator=g)
            images, soft = mixed["image"], {k: mixed[k] for k in HEADS}
        else:
            images = augmented(arm, images, g)
        feats = m["body"](images)
        return sum(F.cross_entropy(m[k](feats), soft[k]) for k in HEADS)

    start = time.perf_counter()
    fit(net, loss_fn, lambda step: step, TrainConfig(steps=STEPS, lr=LR, schedule="cosine", seed=seed, progress=False))
    net.eval()
    with torch.no_grad():
        feats = net["body"](test["image"])
        acc = {k: float((net[k](feats).argmax(-1) == test[k]).float().mean()) for k in HEADS}
    return {"arm": arm, "seed": seed, "acc": acc, "seconds": time.perf_counter() - start}


def report(data: dict) -> str:
    runs = data["runs"]
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["arm"], r["seed"]): r["acc"] for r in runs}
    lines = ["# Image augmentation ablation (Shapes-World, small CNN, 400 training images)", "",
             f"- command: `{data['command']}`", f"- machine: {data['machine']}; {data['versions']}; {data['date']}; "
             f"wall time {data['wall_s']:.0f} s", f"- seeds {seeds}; test: {N_TEST} validation-split images; "
             "accuracy mean ± std over seeds; Δ: paired per-seed difference against no augmentation, 95% "
             "t-interval, `*` where it excludes 0", "",
             "| augmentation | " + " | ".join(f"{k} acc | Δ {k}" for k in HEADS) + " |",
             "|---|" + "---|---|" * len(HEADS)]
    for arm in ARMS:
        cells = []
        for k in HEADS:
            accs = [by[(arm, s)][k] for s in seeds]
            mean, std = mean_std(accs)
            cells.append(f"{mean:.3f} ± {std:.3f}")
            if arm == "none":
                cells.append("—")
            else:
                d = paired_difference(accs, [by[("none", s)][k] for s in seeds])
                cells.append(f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{'*' if d['excludes_zero'] else ''}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="only rewrite the markdown from the JSON")
    args = parser.parse_args()
    if args.report:
        data = json.loads(OUT.with_suffix(".json").read_text())
    else:
        start = time.perf_counter()
        jobs = [(arm, s) for s in args.seeds for arm in ARMS]
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(run, *zip(*jobs)))
        data = {"runs": runs, "wall_s": time.perf_counter() - start,
                "command": "python benchmarks/augmentation_ablation.py --seeds " + " ".join(map(str, args.seeds))
                + f" --jobs {args.jobs}", "machine": f"{cpu_name()} ({platform.machine()})",
                "versions": f"python {platform.python_version()}, torch {torch.__version__}",
                "date": time.strftime("%Y-%m-%d", time.gmtime())}
        OUT.with_suffix(".json").write_text(json.dumps(data, indent=1))
    OUT.with_suffix(".md").write_text(report(data))
    print(report(data))


if __name__ == "__main__":
    main()
