"""Large-batch contrastive training on a CPU: peak memory and time per step against the batch size, for plain steps,
GradCache (`mmlab.train.grad_cache_step`, several chunk sizes) and two processes (DDP on gloo with
`mmlab.align.distributed.info_nce`, local-loss form), on the CLIP of `python -m mmlab train-clip` (width 32).

    .venv/bin/python benchmarks/bench_large_batch.py --out benchmarks/results/large_batch_cpu.md

Each measurement runs in a fresh process. Memory: the growth of the process's resident set during the steps (Linux:
the peak VmHWM after resetting it with /proc/self/clear_refs, minus the resident set at the reset), so it counts
the step's activations, gradients and optimizer state, not the interpreter; for two processes, the larger of the
two. Time: the median of the timed steps (after one untimed step), AdamW included. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(step, steps: int) -> dict[str, float]:
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
    base = _status_kib("VmRSS")
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"peak_mib": (_status_kib("VmHWM") - base) / 1024, "step_s": statistics.median(times[1:])}


def _setup(batch: int, rank: int = 0, world: int = 1):
    import torch

    from mmlab.runtime import seed_everything
    from mmlab.train_clip import build_model, global_batch_rows, shapes_clip_data

    data = shapes_clip_data(max(1000, batch))
    idx, rows = global_batch_rows(0, seed=0, batch_size=batch, train_size=max(1000, batch))
    b = batch // world
    mine = slice(rank * b, (rank + 1) * b)
    ids, mask = data["ids"][rows[mine]], data["mask"][rows[mine]]
    length = int(data["mask"][rows].sum(1).max())  # the global batch's padding, the same on every rank
    images, texts = data["image"][idx[mine]], {"input_ids": ids[:, :length], "attention_mask": mask[:, :length]}
    seed_everything(0)
    model = build_model(data["vocab"], dim=32, loss="info_nce")
    return torch, model, images, texts


def worker(kind: str, batch: int, chunk: int, steps: int) -> dict[str, float]:
    """One process: `kind` is "plain" or "gradcache"."""
    torch, model, images, texts = _setup(batch)
    from mmlab.align import info_nce
    from mmlab.train import grad_cache_step

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loss_fn(za, zb):
        return info_nce(za, zb, model.logit_scale())

    def step():
        opt.zero_grad(set_to_none=True)
        if kind == "plain":
            loss_fn(model.encode_image(images), model.encode_text(texts)).backward()
        else:
            grad_cache_step(model.encode_image, model.encode_text, images, texts, loss_fn, chunk)
        opt.step()
    return _measure(step, steps)


def _ddp_rank(rank: int, world: int, port: int, batch: int, steps: int, threads: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch, model, images, texts = _setup(batch, rank, world)
    torch.set_num_threads(threads)
    from mmlab.align import distributed

    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        o = ddp(images, texts)
        distributed.info_nce(o["image"], o["text"], o["logit_scale"], local_loss=True).backward()
        opt.step()
    torch.distributed.barrier()
    result = _measure(step, steps)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()


def ddp_worker(batch: int, steps: int, threads: int) -> dict[str, float]:
    import tempfile

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        torch.multiprocessing.spawn(_ddp_rank, args=(2, port, batch, steps, threads, out), nprocs=2)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(2)]
    return {"peak_mib": max(r["peak_mib"] for r in ranks), "step_s": ranks[0]["step_s"]}


def _run_child(args: list[str], threads: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--worker", *args, "--threads", str(threads)], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/large_batch_cpu.md")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "BATCH", "CHUNK"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        kind, batch, chunk = args.worker[0], int(args.worker[1]), int(args.worker[2])
        result = (ddp_worker(batch, args.steps, args.threads) if kind == "ddp2"
                  else worker(kind, batch, chunk, args.steps))
        print(json.dumps(result))
        return

    import torch

    arms = [("plain", 0, 1), ("plain", 0, 2)] + [("gradcache", c, 1) for c in args.chunks] + [("ddp2", 0, 1)]
    rows = []
    for batch in args.batches:
        for kind, chunk, threads in arms:
            if chunk and chunk >= batch:
                continue
            r = _run_child([kind, str(batch), str(chunk), "--steps", str(args.steps)], threads)
            name = {"plain": "plain", "gradcache": f"GradCache, chunks of {chunk}",
                    "ddp2": "2 processes (DDP, gloo), B/2 each"}[kind]
            rows.append((batch, name, threads, r["peak_mib"], r["step_s"]))
            print(f"batch {batch:4d}  {name:34s} threads {threads}  peak {r['peak_mib']:8.1f} MiB  "
                  f"step {r['step_s']:.3f} s", flush=True)
    load = os.getloadavg()
    lines = [
        "# Large-batch contrastive training on a CPU: memory and time per step",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_large_batch.py --batches {' '.join(map(str, args.batches))} "
        f"--chunks {' '.join(map(str, args.chunks))} --steps {args.steps}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}. Load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min): other processes shared the cores, so the "
        "times are inflated and noisy; the memory column does not depend on the load.",
        "",
        "Model: the CLIP of `python -m mmlab train-clip` (ViT and text transformer, width 32, 2 layers, float32),",
        "InfoNCE, AdamW. Peak = growth of the resident set during the steps (per process; max of the two ranks).",
        "Threads: torch threads per process (the 2-process arm uses 2 cores, so compare it with plain at 2 threads).",
        "",
        "| batch | method | threads | peak MiB | s / step |",
        "|---|---|---|---|---|",
        *[f"| {b} | {n} | {t} | {m:.1f} | {s:.3f} |" for b, n, t, m, s in rows],
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
