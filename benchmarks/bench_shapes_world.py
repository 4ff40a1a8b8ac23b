"""Shapes-World generation speed: items per second through `ShapesWorld.batch`.

Not a test. Single-threaded by default (torch.set_num_threads(1)), fresh indices every
call (nothing is cached per item), the one-off table building timed separately.

    python benchmarks/bench_shapes_world.py                      # 32x32 image + 1 s sound
    python benchmarks/bench_shapes_world.py --video-frames 8     # with an 8-frame video
    python benchmarks/bench_shapes_world.py --max-objects 4      # multi-object scenes (64x64, no sound)
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from mmlab.data import ShapesWorld
from mmlab.runtime import cpu_name


def measure(ds: ShapesWorld, batch_size: int, repeats: int, start: int) -> list[float]:
    """items/s of `repeats` calls, each on batch_size indices never generated before."""
    rates = []
    for r in range(repeats):
        lo = start + r * batch_size
        t0 = time.perf_counter()
        ds.batch(np.arange(lo, lo + batch_size))
        rates.append(batch_size / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=None, help="default: 32, or 64 with --max-objects > 1")
    ap.add_argument("--audio-seconds", type=float, default=1.0)
    ap.add_argument("--video-frames", type=int, default=0)
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--max-objects", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    ds = ShapesWorld(
        "train",
        size=10**9,
        image_size=args.image_size,
        audio_seconds=args.audio_seconds,
        video_frames=args.video_frames,
        with_audio=not args.no_audio and args.max_objects == 1,
        max_objects=args.max_objects,
    )
    t0 = time.perf_counter()
    ds.batch([0])  # builds the sound and noise tables once per process
    setup = time.perf_counter() - t0
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, cpu {cpu_name()}")
    print(f"{ds!r}\none-off table build: {setup:.3f} s")
    print("| batch size | items/s (median) | min | max | per call |")
    print("|---:|---:|---:|---:|---:|")
    start = 1
    for bs in args.batch_sizes:
        rates = measure(ds, bs, args.repeats, start)
        start += bs * args.repeats
        med = statistics.median(rates)
        print(f"| {bs} | {med:,.0f} | {min(rates):,.0f} | {max(rates):,.0f} | {bs / med * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
