"""Text-to-image benchmark on this CPU: sampler speed and quality against Euler steps, the guidance trade-off, and
training time against attribute accuracy (read from the run's MANIFEST.json, measured while it trained).

Not a test. Writes JSON and markdown to --out.

    python benchmarks/bench_text_to_image.py                     # the committed run in data/text_to_image

Sampler: samples/s at batch --batch (median of --repeats after one warm-up) for each step count and guidance 1
(one network call per step) or 3 (two: conditional and unconditional, batched); attribute accuracy and CLIP score of
--prompts val prompts at each step count (guidance 3). Guidance sweep: the same prompts at each guidance scale
(16 steps), with diversity = mean over --diversity-prompts prompts of the mean pairwise RMS pixel distance of 8
samples each (the real images of 8 items with the same shape, colour and size give the reference value).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from mmlab.data.shapes_text import COLORS, SHAPES, SIZES
from mmlab.data.shapes_world import ShapesWorld
from mmlab.diffusion import diversity, load_run, prompt_set, score_images
from mmlab.runtime import cpu_name

STEPS = (2, 4, 8, 16, 32)
GUIDANCE = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)


def samples_per_second(generator, prompts: list[str], steps: int, guidance: float, repeats: int) -> float:
    generator.generate(prompts, guidance_scale=guidance, steps=steps)  # warm-up (and caches the embeddings)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generator.generate(prompts, guidance_scale=guidance, steps=steps)
        times.append(time.perf_counter() - t0)
    return len(prompts) / statistics.median(times)


def diversity_prompts(count: int) -> tuple[list[str], list[float]]:
    """`count` canonical prompts "a {size} {colour} {shape}" and the diversity of 8 real val images of each."""
    data = ShapesWorld("val", size=2000, with_audio=False).batch(range(2000))
    prompts, real = [], []
    for k in range(count):
        s, c, z = k % len(SHAPES), (k * 5) % len(COLORS), (k // 4) % len(SIZES)
        match = (data["shape"] == s) & (data["color"] == c) & (data["size"] == z)
        prompts.append(f"a {SIZES[z]} {COLORS[c]} {SHAPES[s]}")
        real.append(diversity(data["image"][match][:8]))
    return prompts, real


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a saved run (default: the committed one)")
    ap.add_argument("--prompts", type=int, default=192)
    ap.add_argument("--diversity-prompts", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/text_to_image_cpu"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = load_run(args.run)
    gen, reader, dual = run.generator, run.reader, run.dual_encoder
    prompts = prompt_set("val", args.prompts)
    speed_prompts = prompts.prompts[:args.batch]
    out = {"machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
           "versions": {"python": platform.python_version(), "torch": torch.__version__},
           "command": "python benchmarks/bench_text_to_image.py " + " ".join(argv or []),
           "run_manifest": {k: run.history["manifest"][k] for k in ("command", "seconds", "machine", "sha256")},
           "sampler": [], "guidance": [], "training": run.history["manifest"]["evals"]}
    for steps in STEPS:
        row = {"steps": steps, **{f"samples_per_s_g{w:g}": round(samples_per_second(gen, speed_prompts, steps, w,
                                                                                       args.repeats), 1)
                                   for w in (1.0, 3.0)}}
        images = gen.generate(prompts.prompts, guidance_scale=3.0, steps=steps)
        row.update({k: round(v, 4) for k, v in score_images(images, prompts, reader, dual).items()})
        out["sampler"].append(row)
        print(row, flush=True)
    div_prompts, real_div = diversity_prompts(args.diversity_prompts)
    out["real_diversity"] = round(statistics.mean(real_div), 4)
    for w in GUIDANCE:
        images = gen.generate(prompts.prompts, guidance_scale=w, steps=16)
        row = {"guidance": w, **{k: round(v, 4) for k, v in score_images(images, prompts, reader, dual).items()}}
        samples = gen.generate([p for p in div_prompts for _ in range(8)], guidance_scale=w, steps=16, seed=1)
        row["diversity"] = round(statistics.mean(diversity(samples[i:i + 8]) for i in range(0, len(samples), 8)), 4)
        out["guidance"].append(row)
        print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
