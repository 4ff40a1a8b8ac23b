"""Calibration of lesson 11's asserted quantities: the lesson's pipeline as a script, over seeds and thread counts.

    for s in 0 1 2; do for t in 1 2; do .venv/bin/python benchmarks/calibration/lesson_11.py $s $t; done; done

Each run prints one markdown row (seed, threads, then every quantity the lesson asserts or compares). The seed
drives seed_everything and every fit (the lesson uses 0); the data are the same in every run.
"""
from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from mmlab.captioning import DECODERS, CaptionVocabulary, DecoderConfig, PrecomputedTokens, UnifiedDecoder
from mmlab.captioning.readback import caption_accuracy
from mmlab.captioning.tagging import scene_patch_labels, tagging_accuracy, tagging_heads, tagging_loss
from mmlab.captioning.vocabulary import caption_words
from mmlab.data import ShapesWorld
from mmlab.data.shapes_world import SCENE_ANSWERS
from mmlab.encoders import VisionTransformer, ViTConfig
from mmlab.evaluate import bleu, cider
from mmlab.generate import greedy
from mmlab.preprocess.text import WordPieceTokenizer
from mmlab.runtime import seed_everything
from mmlab.train import TrainConfig, fit

N_TRAIN, N_VAL, IMAGE, PATCH, MAX_OBJECTS = 2000, 200, 32, 8, 2
TOWER_STEPS, CAPTION_STEPS, VQA_STEPS = 400, 200, 200


def run(seed: int) -> dict[str, float]:
    t0 = time.time()
    train = ShapesWorld("train", size=N_TRAIN, max_objects=MAX_OBJECTS, image_size=IMAGE).batch(range(N_TRAIN))
    val = ShapesWorld("val", size=N_VAL, max_objects=MAX_OBJECTS, image_size=IMAGE).batch(range(N_VAL))
    vocab = CaptionVocabulary(WordPieceTokenizer.from_minilm(),
                              [c for cs in train["captions"] for c in cs] + train["question"] + list(SCENE_ANSWERS))
    out: dict[str, float] = {}

    # 1. the vision tower: dense tagging, then frozen
    labels = scene_patch_labels(train, IMAGE, PATCH)
    seed_everything(seed)
    vit = VisionTransformer(ViTConfig(dim=64, depth=2, heads=4, mlp_ratio=2.0, image_size=IMAGE, patch_size=PATCH))
    tower = nn.ModuleDict({"vit": vit, **tagging_heads(64)})

    def tower_loss(m, step):
        idx = torch.randint(0, N_TRAIN, (64,), generator=torch.Generator().manual_seed(step))
        patches = m["vit"](train["image"][idx])[:, 1:]  # (B, G*G, D)
        return tagging_loss(m, patches, {k: v[idx] for k, v in labels.items()})

    fit(tower, tower_loss, lambda step: step,
        TrainConfig(steps=TOWER_STEPS, lr=3e-3, schedule="cosine", warmup_steps=20, seed=seed, progress=False))
    vit.eval()
    with torch.no_grad():
        train_tokens, val_tokens = vit(train["image"]), vit(val["image"])  # (N, 17, 64)
        tagged = tagging_accuracy(tower, val_tokens[:, 1:], scene_patch_labels(val, IMAGE, PATCH))
        out["tower colour acc"] = tagged["colors"]

    # 2. four captioners on the same frozen tokens
    caps = vocab.encode([c for cs in train["captions"] for c in cs], max_length=32)
    ids, mask = caps["input_ids"], caps["attention_mask"]

    def caption_batch(step, size=32):
        g = torch.Generator().manual_seed(step)
        idx = torch.randint(0, N_TRAIN, (size,), generator=g)
        rows = idx * 4 + torch.randint(0, 4, (size,), generator=g)  # one of the four captions
        length = int(mask[rows].sum(1).max())
        return train_tokens[idx], ids[rows, :length], mask[rows, :length]

    refs = [[caption_words(c) for c in cs] for cs in val["captions"]]
    config = DecoderConfig(vocab_size=vocab.size, max_length=32, dim=64, depth=2, heads=4, mlp_ratio=2.0)
    for name, cls in DECODERS.items():
        seed_everything(seed)
        model = cls(config, PrecomputedTokens(64, pool="mean"))
        fit(model, lambda m, b: m.loss(*b), caption_batch,
            TrainConfig(steps=CAPTION_STEPS, lr=3e-3, schedule="cosine", warmup_steps=20, seed=seed, progress=False))
        gen = [caption_words(c) for c in
               vocab.decode(greedy(model.step(val_tokens), vocab.bos(N_VAL), 30, eos_id=vocab.eos_id))]
        acc = caption_accuracy(gen, val["shapes"], val["colors"], val["sizes"], val["boxes"], val["object_mask"])
        out[f"{name} BLEU-4"], out[f"{name} CIDEr-D"] = bleu(gen, refs), cider(gen, refs)
        out[f"{name} colour"], out[f"{name} count"] = acc["color"], acc["count"]
        if name == "flamingo":
            out["flamingo min gate"] = min(abs(g) for pair in model.gates() for g in pair)

    # 3. VQA: the unified decoder writes the answer, or a classification head reads its prefix
    q = vocab.encode(train["question"], max_length=16)
    q_val = vocab.encode(val["question"], max_length=16)
    a = vocab.encode(train["answer"], max_length=8)

    def vqa_batch(step, size=32):
        idx = torch.randint(0, N_TRAIN, (size,), generator=torch.Generator().manual_seed(step))
        lq, la = int(q["attention_mask"][idx].sum(1).max()), int(a["attention_mask"][idx].sum(1).max())
        return (train_tokens[idx], a["input_ids"][idx, :la], a["attention_mask"][idx, :la],
                q["input_ids"][idx, :lq], q["attention_mask"][idx, :lq], train["answer_id"][idx])

    vqa_config = DecoderConfig(vocab_size=vocab.size, max_length=8, dim=64, depth=2, heads=4, mlp_ratio=2.0)
    vqa_train = TrainConfig(steps=VQA_STEPS, lr=3e-3, schedule="cosine", warmup_steps=20, seed=seed, progress=False)
    seed_everything(seed)
    writer = UnifiedDecoder(vqa_config, PrecomputedTokens(64))
    fit(writer, lambda m, b: m.loss(b[0], b[1], b[2], b[3], b[4]), vqa_batch, vqa_train)
    step = writer.step(val_tokens, q_val["input_ids"], q_val["attention_mask"])
    written = vocab.decode(greedy(step, vocab.bos(N_VAL), 4, eos_id=vocab.eos_id))
    out["VQA generative"] = sum(w == t for w, t in zip(written, val["answer"])) / N_VAL

    def classifier_accuracy(tokens_of):
        """The classification head over the unified backbone's prefix, trained and scored on tokens_of(image
        tokens): the tokens themselves, or zeros (the question alone)."""
        seed_everything(seed)
        model = nn.ModuleDict({"backbone": UnifiedDecoder(vqa_config, PrecomputedTokens(64)),
                               "head": nn.Linear(64, len(SCENE_ANSWERS))})

        def batch(step):
            tokens, *rest = vqa_batch(step)
            return (tokens_of(tokens), *rest)

        fit(model, lambda m, b: F.cross_entropy(m["head"](m["backbone"].pooled_prefix(b[0], b[3], b[4])), b[5]),
            batch, vqa_train)
        with torch.no_grad():
            logits = model["head"](model["backbone"].eval().pooled_prefix(tokens_of(val_tokens), q_val["input_ids"],
                                                                           q_val["attention_mask"]))
        return float((logits.argmax(-1) == val["answer_id"]).float().mean())

    out["VQA classifier"] = classifier_accuracy(lambda tokens: tokens)
    out["VQA question only"] = classifier_accuracy(torch.zeros_like)
    out["VQA classifier - question only"] = out["VQA classifier"] - out["VQA question only"]
    out["seconds"] = time.time() - t0
    return out


if __name__ == "__main__":
    seed, threads = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    result = run(seed)
    if seed == 0 and threads == 1:
        print("| seed | threads | " + " | ".join(result) + " |")
        print("|---" * (len(result) + 2) + "|")
    print(f"| {seed} | {threads} | " + " | ".join(f"{v:.3f}" if k != "seconds" else f"{v:.0f}"
                                                  for k, v in result.items()) + " |", flush=True)
