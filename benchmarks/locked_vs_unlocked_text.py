"""Lesson 06's uL arm (a from-scratch ViT against a *locked* pretrained MiniLM) against uU (the same, MiniLM
*unlocked*), on Shapes-World, over seeds (lesson 06 reads it).

Notation of LiT (Zhai et al., 2022), image tower first: L locked pretrained, U unlocked pretrained, u unlocked from
scratch. One thing changes between uL and uU: whether all-MiniLM-L6-v2's weights train. Everything else is lesson
06's uL run: the same ViT initialisation, 64-d projections, InfoNCE with the same-class positive mask, 200 steps of
128 pairs on the same seeded batches, AdamW lr 1e-3 and weight decay 0.01 for the ViT and projections, MiniLM's
captions mean-pooled over its tokens, MiniLM's dropout off (eval mode) in both arms. uU's MiniLM gets a learning rate
of its own (1e-3 would wreck a pretrained BERT-sized tower) and AdamW's weight decay on its matrices (0.01, none on
embeddings, biases and norms: `mmlab.optim.parameter_groups`), tuned on the grid below at seed 0 on the validation
split (selection: mean of val class i2t@1 and t2i@1); uL is the grid's point lr = 0 (its features computed once).
Metric: attribute-class Recall@1 (the nearest item counts when it has the query's shape, colour and size),
image->text and text->image, on val (train templates) and test (held-out templates and unseen synonyms).

    python benchmarks/locked_vs_unlocked_text.py      # writes benchmarks/results/locked_vs_unlocked_text_cpu.{json,md}
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from mmlab.align.model import DualEncoder, clamp_logit_scale
from mmlab.align.shapes_recipe import CaptionedImages, CompactVocabulary, attribute_recall, clip_loss, tiny_dual_encoder
from mmlab.data import ShapesWorld
from mmlab.optim import parameter_groups
from mmlab.preprocess.text import minilm_path
from mmlab.runtime import seed_everything
from mmlab.train import TrainConfig, fit

MAX_LEN, STEPS, BATCH = 24, 200, 128


class MeanPooledMiniLM(nn.Module):
    """all-MiniLM-L6-v2 as a text tower: `pooled(input_ids, attention_mask)` -> (B, 384) token mean. Its dropout
    stays off in training too (`train()` keeps the inner model in eval mode), so that unlocking changes only whether
    the weights learn, not the function that the locked arm's features were computed with."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    def pooled(self, input_ids, attention_mask):
        h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, 384)
        m = attention_mask[..., None].float()
        return (h * m).sum(1) / m.sum(1)


def minilm_tokens(vocab: CompactVocabulary, captions: list[str]) -> dict[str, torch.Tensor]:
    """MiniLM's own WordPiece ids (the full vocabulary, no [UNK] mapping) of every caption, padded to MAX_LEN."""
    return vocab.tokenizer.encode(captions, max_length=MAX_LEN, padding="max_length")


def with_minilm_text(batch: dict, tokens: dict[str, torch.Tensor]) -> dict:
    rows = batch["caption_rows"]
    length = int(tokens["attention_mask"][rows].sum(1).max())
    batch["text"] = {k: v[rows, :length] for k, v in tokens.items()}
    return batch


def train_and_score(data, vocab, tokens, features, base: nn.Module, seed: int, text_lr: float) -> dict:
    """uL when text_lr == 0 (precomputed MiniLM features), else uU with MiniLM trained at text_lr."""
    locked = text_lr == 0
    tower = nn.Identity() if locked else MeanPooledMiniLM(copy.deepcopy(base))
    seed_everything(seed)
    model = DualEncoder(tiny_dual_encoder(len(vocab), max_length=MAX_LEN).image_encoder, tower, embed_dim=64,
                        text_dim=384)
    text = {id(p) for p in tower.parameters()}  # none when locked
    groups = [{"params": params, "weight_decay": g["weight_decay"], "lr": lr}
              for g in parameter_groups(model, weight_decay=0.01)
              for params, lr in (([p for p in g["params"] if id(p) not in text], 1e-3),
                                 ([p for p in g["params"] if id(p) in text], text_lr))
              if params]
    source = data["train"].batches(size=BATCH, offset=seed * 1_000_000)

    def batch(step):
        b = source(step)
        if locked:
            b["text"] = features["train"][b["caption_rows"]]
            return b
        return with_minilm_text(b, tokens["train"])

    start = time.perf_counter()
    fit(model, clip_loss, batch, TrainConfig(steps=STEPS, lr=1e-3, seed=seed, progress=False),
        optimizer=torch.optim.AdamW(groups, lr=1e-3), callbacks=(clamp_logit_scale,))
    result = {"arm": "uL" if locked else "uU", "seed": seed, "text_lr": text_lr,
              "train_s": round(time.perf_counter() - start, 1)}
    model.eval()
    for split in ("val", "test"):
        d = data[split]
        with torch.no_grad():
            img = model.encode_image(d.images)
            txt = model.encode_text(features[split] if locked else tokens[split])
        r = attribute_recall(img, txt, d.classes, d.classes[d.owner])
        result.update({f"{split} class {k}": round(v, 4) for k, v in r.items()})
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--text-lrs", type=float, nargs="+", default=[3e-6, 1e-5, 3e-5, 1e-4, 3e-4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "locked_vs_unlocked_text_cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModel

    base = AutoModel.from_pretrained(minilm_path(), local_files_only=True).eval()
    splits = {"train": ShapesWorld("train", size=2000, with_audio=False).batch(range(2000)),
              "val": ShapesWorld("val", size=200, with_audio=False).batch(range(200)),
              "test": ShapesWorld("test", size=200, with_audio=False).batch(range(200))}
    vocab = CompactVocabulary([c for caps in splits["train"]["captions"] for c in caps], max_length=MAX_LEN)
    data = {name: CaptionedImages.from_split(batch, vocab) for name, batch in splits.items()}
    tokens = {name: minilm_tokens(vocab, d.captions) for name, d in data.items()}
    with torch.no_grad():
        tower = MeanPooledMiniLM(base)
        features = {name: torch.cat([tower.pooled(t["input_ids"][i:i + 500], t["attention_mask"][i:i + 500])
                                     for i in range(0, len(t["input_ids"]), 500)]) for name, t in tokens.items()}
    start = time.perf_counter()
    tuning = []
    for lr in args.text_lrs:
        tuning.append(train_and_score(data, vocab, tokens, features, base, args.seeds[0], lr))
        print("tune", json.dumps(tuning[-1]), flush=True)
    best = max(tuning, key=lambda r: r["val class i2t@1"] + r["val class t2i@1"])["text_lr"]
    runs = [r for r in tuning if r["text_lr"] == best]
    for seed in args.seeds:
        runs.append(train_and_score(data, vocab, tokens, features, base, seed, 0.0))
        print("run", json.dumps(runs[-1]), flush=True)
        if seed != args.seeds[0]:
            runs.append(train_and_score(data, vocab, tokens, features, base, seed, best))
            print("run", json.dumps(runs[-1]), flush=True)
    meta = {"command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
            "machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), "
                       f"{args.threads} torch thread(s)",
            "versions": f"python {platform.python_version()}, torch {torch.__version__}",
            "date": time.strftime("%Y-%m-%d"), "total_s": round(time.perf_counter() - start, 1), "best_text_lr": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "tuning": tuning, "runs": runs}, indent=1))
    args.out.with_suffix(".md").write_text(report(meta, tuning, runs))
    print(report(meta, tuning, runs))
    return 0


METRICS = ("val class i2t@1", "val class t2i@1", "test class i2t@1", "test class t2i@1")


def report(meta: dict, tuning: list[dict], runs: list[dict]) -> str:
    lines = ["# Locked (uL) vs unlocked (uU) MiniLM text tower on Shapes-World (CPU)", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; {meta['versions']}; {meta['date']}; "
             f"total {meta['total_s']} s.", "",
             "## uU: MiniLM's learning rate, seed 0 (selected by val i2t@1 + t2i@1)", "",
             "| text lr | train s | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for r in tuning:
        lines.append(f"| {r['text_lr']:g} | {r['train_s']} | " + " | ".join(f"{r[m]:.3f}" for m in METRICS) + " |")
    lines += ["", f"Selected: {meta['best_text_lr']:g}", "", "## Over seeds", "",
              "| arm | seed | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for r in sorted(runs, key=lambda r: (r["arm"], r["seed"])):
        lines.append(f"| {r['arm']} | {r['seed']} | " + " | ".join(f"{r[m]:.3f}" for m in METRICS) + " |")
    lines += ["", "Paired difference uU - uL per seed:", ""]
    by = {(r["arm"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    for m in METRICS:
        diffs = [by["uU", s][m] - by["uL", s][m] for s in seeds]
        lines.append(f"- {m}: " + ", ".join(f"{d:+.3f}" for d in diffs) + f" (mean {statistics.fmean(diffs):+.3f})")
    lines += ["", "Raw runs: the JSON file beside this one."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
