"""SigLIP's sigmoid loss against CLIP's InfoNCE on Shapes-World, over batch sizes and seeds (lesson 06 reads it).

One thing changes between the arms: the loss (with its own initial scale and bias: InfoNCE s = 1/0.07; SigLIP
s = 10, b = -10, Zhai et al., 2023). Both train the same tiny dual encoder for the same number of steps on the same
batches, with no positive mask (SigLIP's loss takes none, so duplicates are negatives for both). The temperature
(and SigLIP's bias) get their own learning rate, tuned for each loss on the same grid at batch 64, seed 0, on the
validation split: at the towers' lr of 1e-3 Adam moves a scalar by about 1e-3 per step, so in a few hundred steps
SigLIP's scale and bias would barely leave their initial values. Metric: attribute-level Recall@1 (a retrieved
item counts when it has the query's shape, colour and size), mean of image->text and text->image, on the
validation split (train templates) and on the test split (held-out phrasings).

    python benchmarks/siglip_vs_infonce.py            # writes benchmarks/results/siglip_vs_infonce_cpu.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from mmlab.align.model import clamp_logit_scale
from mmlab.align.shapes_recipe import CaptionedImages, CompactVocabulary, attribute_recall, tiny_dual_encoder
from mmlab.data import ShapesWorld
from mmlab.optim import parameter_groups
from mmlab.runtime import seed_everything
from mmlab.train import TrainConfig, fit

LOSSES = ("info_nce", "siglip")
SCALAR_NAMES = ("logit_scale.log_scale", "logit_bias")


def optimizer(model, lr: float, scalar_lr: float) -> torch.optim.AdamW:
    """AdamW over the usual groups, with the temperature and bias moved to a group of their own at `scalar_lr`."""
    groups = []
    for group in parameter_groups(model, weight_decay=0.01):
        keep = [(n, p) for n, p in zip(group["param_names"], group["params"]) if n not in SCALAR_NAMES]
        groups.append({"params": [p for _, p in keep], "weight_decay": group["weight_decay"], "lr": lr})
    scalars = [p for n, p in model.named_parameters() if n in SCALAR_NAMES]
    groups.append({"params": scalars, "weight_decay": 0.0, "lr": scalar_lr})
    return torch.optim.AdamW(groups, lr=lr)


def plain_loss(model, batch):
    out = model(batch["image"], batch["text"])
    return model.loss(out["image"], out["text"])


def train_and_score(data, vocab, loss: str, batch_size: int, seed: int, steps: int, scalar_lr: float) -> dict:
    seed_everything(seed)
    model = tiny_dual_encoder(len(vocab), loss=loss)
    start = time.perf_counter()
    fit(model, plain_loss, data["train"].batches(batch_size, offset=1_000_000 * seed),
        TrainConfig(steps=steps, lr=1e-3, seed=seed, progress=False),
        optimizer=optimizer(model, 1e-3, scalar_lr), callbacks=(clamp_logit_scale,))
    seconds = time.perf_counter() - start
    model.eval()
    result = {"loss": loss, "batch_size": batch_size, "seed": seed, "steps": steps, "scalar_lr": scalar_lr,
              "train_s": round(seconds, 2), "scale": float(model.logit_scale()),
              "bias": float(model.logit_bias) if model.logit_bias is not None else None}
    for split in ("val", "test"):
        d = data[split]
        with torch.no_grad():
            r = attribute_recall(model.encode_image(d.images), model.encode_text(vocab(d.captions)),
                                 d.classes, d.classes.repeat_interleave(4))
        result[f"{split}_r1"] = (r["i2t@1"] + r["t2i@1"]) / 2
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--scalar-lrs", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "siglip_vs_infonce_cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = ShapesWorld("train", size=2000, with_audio=False).batch(range(2000))
    vocab = CompactVocabulary([c for caps in train["captions"] for c in caps])
    data = {"train": CaptionedImages.from_split(train, vocab)}
    for split in ("val", "test"):
        items = ShapesWorld(split, size=200, with_audio=False).batch(range(200))
        data[split] = CaptionedImages.from_split(items, vocab)
    start = time.perf_counter()
    tuning = [train_and_score(data, vocab, loss, 64, 0, args.steps, lr) for loss in LOSSES for lr in args.scalar_lrs]
    for r in tuning:
        print("tune", json.dumps(r), flush=True)
    best = {loss: max((r for r in tuning if r["loss"] == loss), key=lambda r: r["val_r1"])["scalar_lr"]
            for loss in LOSSES}
    runs = []
    for batch_size in args.batch_sizes:
        for seed in args.seeds:
            for loss in LOSSES:
                runs.append(train_and_score(data, vocab, loss, batch_size, seed, args.steps, best[loss]))
                print("run", json.dumps(runs[-1]), flush=True)
    meta = {"command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
            "machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), 1 torch thread",
            "versions": f"python {platform.python_version()}, torch {torch.__version__}",
            "date": time.strftime("%Y-%m-%d"), "total_s": round(time.perf_counter() - start, 1),
            "best_scalar_lr": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "tuning": tuning, "runs": runs}, indent=1))
    args.out.with_suffix(".md").write_text(report(meta, tuning, runs))
    print(report(meta, tuning, runs))
    return 0


def report(meta: dict, tuning: list[dict], runs: list[dict]) -> str:
    lines = ["# SigLIP vs InfoNCE on Shapes-World (CPU)", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; {meta['versions']}; {meta['date']}; "
             f"total {meta['total_s']} s (other processes shared the cores).", "",
             "## Scalar learning rate (temperature, bias), batch 64, seed 0: attribute R@1 on val", "",
             "| loss | scalar lr | val R@1 | final scale | final bias |", "|---|---|---|---|---|"]
    for r in tuning:
        bias = "" if r["bias"] is None else f"{r['bias']:.1f}"
        lines.append(f"| {r['loss']} | {r['scalar_lr']:g} | {r['val_r1']:.3f} | {r['scale']:.1f} | {bias} |")
    lines += ["", f"Selected: {meta['best_scalar_lr']}", "",
              "## Over batch sizes and seeds (mean ± std over seeds; paired difference SigLIP - InfoNCE per seed)", "",
              "| batch | InfoNCE val | SigLIP val | diff val | InfoNCE test | SigLIP test | diff test |",
              "|---|---|---|---|---|---|---|"]
    for b in sorted({r["batch_size"] for r in runs}):
        cells = [str(b)]
        for split in ("val", "test"):
            by = {loss: {r["seed"]: r[f"{split}_r1"] for r in runs if r["batch_size"] == b and r["loss"] == loss}
                  for loss in LOSSES}
            diffs = [by["siglip"][s] - by["info_nce"][s] for s in sorted(by["siglip"])]
            for values in (list(by["info_nce"].values()), list(by["siglip"].values()), diffs):
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):+.3f} ± {sd:.3f}" if values is diffs
                             else f"{statistics.fmean(values):.3f} ± {sd:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Raw runs: the JSON file beside this one."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
