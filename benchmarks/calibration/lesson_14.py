"""Calibration of lesson 14's asserted quantities: the lesson's pipeline (train, export, INT8, recall on 500
held-out scenes, HNSW recall against exact) for seeds 0, 1, 2 and 1 and 2 torch threads; prints a markdown table.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/lesson_14.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from mmlab import deploy
from mmlab.align.recipe import ShapesRecipe, train_shapes_dual_encoder
from mmlab.data import ShapesWorld
from mmlab.evaluate import recall_at_k
from mmlab.runtime import seed_everything
from mmlab.search import EmbeddingIndex


def run(seed: int, threads: int) -> dict:
    seed_everything(seed)
    torch.set_num_threads(threads)
    trained = train_shapes_dual_encoder(ShapesRecipe(steps=100, batch_size=64, train_size=1000, seed=seed))
    held = ShapesWorld("val", size=500, with_audio=False).batch(range(500))
    captions = [c for caps in held["captions"] for c in caps]
    tokens = trained.tokenize(captions)
    owner = torch.arange(500).repeat_interleave(4)
    folder = Path(tempfile.mkdtemp())
    paths = deploy.export_onnx(trained.model, folder)
    image, text = deploy.OnnxEncoder(paths["image"]), deploy.OnnxEncoder(paths["text"])
    worst = 0.0
    for batch in (1, 5):
        with torch.no_grad():
            worst = max(worst, float((image(held["image"][:batch]) - trained.model.encode_image(held["image"][:batch]))
                                     .abs().max()))
            for length in (3, 9):
                inputs = {k: v[:batch, :length] for k, v in tokens.items()}
                inputs["attention_mask"][:, 0] = 1
                worst = max(worst, float((text(inputs) - trained.model.encode_text(inputs)).abs().max()))
    int8 = {k: deploy.quantize_int8(p, folder / f"{k}_int8.onnx") for k, p in paths.items()}
    fp32 = image(held["image"]), text(tokens)
    q = deploy.OnnxEncoder(int8["image"])(held["image"]), deploy.OnnxEncoder(int8["text"])(tokens)
    before = recall_at_k(*fp32, ks=(1, 10), text_to_image=owner)
    after = recall_at_k(*q, ks=(1, 10), text_to_image=owner)
    change = max(abs(after[k] - before[k]) for k in before)
    cosine = min(float((a * b).sum(1).min()) for a, b in zip(fp32, q))
    diff = max(float((a - b).abs().max()) for a, b in zip(fp32, q))
    exact, hnsw = EmbeddingIndex(64), EmbeddingIndex(64, "hnsw", hnsw_m=16, ef_search=32)
    exact.add(fp32[0])
    hnsw.add(fp32[0])
    queries = text(trained.tokenize(captions[::20]))
    truth, found = exact.search(queries, 10)[1], hnsw.search(queries, 10)[1]
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(truth, found)) / truth.numel()
    return {"onnx_vs_torch": worst, "int8_recall_change": change, "int8_min_cosine": cosine, "int8_max_diff": diff,
            "hnsw_recall": recall, "t2i@10": before["t2i@10"], "i2t@10": before["i2t@10"]}


if __name__ == "__main__":
    print("| seed | threads | max abs ONNX-torch | largest INT8 recall change | min cosine INT8/fp32 "
          "| max abs INT8-fp32 | HNSW recall@10 | fp32 t2i@10 | fp32 i2t@10 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in (0, 1, 2):
        for threads in (1, 2):
            r = run(seed, threads)
            print(f"| {seed} | {threads} | {r['onnx_vs_torch']:.1e} | {r['int8_recall_change']:.3f} | "
                  f"{r['int8_min_cosine']:.4f} | {r['int8_max_diff']:.4f} | {r['hnsw_recall']:.3f} | "
                  f"{r['t2i@10']:.3f} | {r['i2t@10']:.3f} |",
                  flush=True)
