"""Benchmark the symmetric InfoNCE loss on one GPU: naive eager, torch.compile, chunked PyTorch, Inf-CL, mmlab.

    python benchmarks/bench_contrastive_loss.py                    # CUDA: full run, writes JSON + markdown
    python benchmarks/bench_contrastive_loss.py --loss siglip      # the SigLIP loss: naive eager, torch.compile, mmlab
    python benchmarks/bench_contrastive_loss.py --smoke            # CPU plumbing check (torch paths, tiny sizes)

Per implementation, B and d (bf16 inputs): median ms of forward, backward and forward+backward (CUDA events),
peak memory above the inputs and their gradients, TFLOP/s counting 6·B²·d per forward+backward and that rate
as a fraction of a measured large bf16 matmul; then the largest B that fits at d = 512 for each implementation.
Out-of-memory is recorded as "oom", never guessed. Results: benchmarks/results/contrastive_loss_<device>.{json,md}
(siglip_loss_<device> for --loss siglip).
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from mmlab.kernels.info_nce import info_nce, info_nce_chunked
from mmlab.kernels.siglip import siglip_loss

RESULTS = Path(__file__).resolve().parent / "results"
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SCALE = 1 / 0.07
SIGLIP_SCALE, SIGLIP_BIAS = 10.0, -10.0  # SigLIP's initial t' = log 10 and b = -10 (Zhai et al., 2023)


def naive_info_nce(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The textbook loss: materialises the (B, B) logits (and their float32 copy)."""
    logits = SCALE * x @ y.T  # (B, B)
    target = torch.arange(x.shape[0], device=x.device)
    return (F.cross_entropy(logits.float(), target) + F.cross_entropy(logits.T.float(), target)) / 2


def naive_siglip(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The textbook SigLIP loss: materialises the (B, B) logits and their float32 copy."""
    logits = (SIGLIP_SCALE * x @ y.T + SIGLIP_BIAS).float()  # (B, B)
    z = 2 * torch.eye(x.shape[0], device=x.device) - 1  # +1 on the diagonal, -1 elsewhere
    return -F.logsigmoid(z * logits).sum() / x.shape[0]


@functools.cache
def on_device(value: float, device: torch.device) -> torch.Tensor:
    """`value` as a 0-d tensor on `device`, made once: a learnt logit scale lives there, while a Python float would
    be copied to the GPU, a blocking copy, on every call of the loss."""
    return torch.tensor(value, device=device)


def mmlab_siglip(x: torch.Tensor, y: torch.Tensor, backend: str) -> torch.Tensor:
    return siglip_loss(x, y, on_device(SIGLIP_SCALE, x.device), on_device(SIGLIP_BIAS, x.device), backend=backend)


def mmlab_info_nce(x: torch.Tensor, y: torch.Tensor, backend: str) -> torch.Tensor:
    return info_nce(x, y, on_device(SCALE, x.device), backend=backend)


# --loss -> (naive loss, also the float64 reference of the agreement check; mmlab's loss; title; results prefix)
LOSSES = {"info_nce": (naive_info_nce, mmlab_info_nce, "Symmetric InfoNCE", "contrastive_loss_"),
          "siglip": (naive_siglip, mmlab_siglip, "SigLIP", "siglip_loss_")}


def implementations(device: str, smoke: bool, loss: str = "info_nce") -> dict[str, LossFn | str]:
    """name -> loss function, or a string saying why it is skipped. The chunked loss and Inf-CL: InfoNCE only."""
    naive, mmlab_loss = LOSSES[loss][:2]
    impls: dict[str, LossFn | str] = {"naive_eager": naive}
    if loss == "info_nce":
        impls["chunked_torch"] = lambda x, y: info_nce_chunked(x, y, SCALE, chunk=4096 if not smoke else 32)
    if smoke:
        impls["mmlab_torch_backend"] = lambda x, y: mmlab_loss(x, y, "torch")
        return impls
    impls["torch_compile"] = torch.compile(naive)
    if loss == "info_nce":
        impls["inf_cl"] = inf_cl_info_nce()
    impls["mmlab_triton"] = lambda x, y: mmlab_loss(x, y, "triton")
    return impls


def inf_cl_info_nce() -> LossFn | str:
    """Inf-CL's loss, or why it is skipped."""
    try:
        # Inf-CL (Cheng et al., 2024): cal_flash_loss is its single-GPU path (cal_inf_loss calls it when
        # torch.distributed is not initialised); per-row losses of one direction per call.
        from inf_cl import cal_flash_loss
    except Exception as exc:  # not installed, or no build for this GPU
        return f"skipped: inf_cl not importable ({type(exc).__name__}: {exc})"
    return lambda x, y: (cal_flash_loss(x, y, scale=SCALE).mean() + cal_flash_loss(y, x, scale=SCALE).mean()) / 2


def make_timer(device: str) -> Callable[[Callable[[], object]], float]:
    def cuda_ms(fn: Callable[[], object]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)

    def cpu_ms(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)

    return cuda_ms if device == "cuda" else cpu_ms


def median_ms(fn: Callable[[], object], timer, budget_ms: float = 1500.0, max_reps: int = 25,
              setup: Callable[[], object] | None = None) -> tuple[float, list[float]]:
    """Median time of fn() after one warm-up (compilation, cuBLAS autotuning); `setup` runs untimed before each."""
    def once() -> float:
        if setup is not None:
            setup()
        return timer(fn)

    once()
    reps = max(3, min(max_reps, int(budget_ms / max(once(), 1e-3))))
    times = [once() for _ in range(reps)]
    return statistics.median(times), times


def unit_features(b: int, d: int, dtype: torch.dtype, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (B, d) batches of random unit rows in `dtype`, like L2-normalised image and text embeddings."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = F.normalize(torch.randn(b, d, device=device, generator=g), dim=1).to(dtype)
    y = F.normalize(torch.randn(b, d, device=device, generator=g), dim=1).to(dtype)
    return x, y


def measure(fn: LossFn, b: int, d: int, dtype: torch.dtype, device: str, timer) -> dict:
    x, y = (t.requires_grad_(True) for t in unit_features(b, d, dtype, device, seed=0))
    row: dict = {"B": b, "d": d}
    try:
        if device == "cuda":
            x.grad, y.grad = torch.zeros_like(x), torch.zeros_like(y)  # count gradients as "inputs"
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn(x, y).backward()
            torch.cuda.synchronize()
            row["peak_extra_bytes"] = torch.cuda.max_memory_allocated() - base
        loss_holder: list[torch.Tensor] = []

        def fwd():
            loss_holder[:] = [fn(x, y)]

        def bwd():  # a fresh forward before each (untimed): compiled graphs free their buffers in backward
            loss_holder.pop().backward()

        def both():
            fn(x, y).backward()

        row["fwd_ms"], row["fwd_raw_ms"] = median_ms(fwd, timer)
        row["bwd_ms"], row["bwd_raw_ms"] = median_ms(bwd, timer, setup=fwd)
        loss_holder.clear()
        row["fwd_bwd_ms"], row["fwd_bwd_raw_ms"] = median_ms(both, timer)
        row["tflops"] = 6 * b * b * d / (row["fwd_bwd_ms"] * 1e-3) / 1e12
        row["status"] = "ok"
    except torch.OutOfMemoryError:
        row["status"] = "oom"
    finally:
        x = y = None  # free the features before the next size
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def matmul_tflops(device: str, timer, n: int = 8192) -> float:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms, _ = median_ms(lambda: a @ b, timer)
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


def environment(device: str) -> dict:
    env = {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
           "torch": torch.__version__, "cuda_runtime": torch.version.cuda, "platform": platform.platform()}
    for pkg in ("triton", "inf_cl"):
        try:
            env[pkg] = getattr(__import__(pkg), "__version__", "installed")
        except Exception:
            env[pkg] = None
    if device == "cuda":
        env["device"] = torch.cuda.get_device_name()
        env["memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception as exc:
            env["driver"] = f"unknown ({exc})"
    else:
        env["device"] = platform.processor() or "cpu"
    return env


def agreement(fn: LossFn, reference: LossFn, b: int, d: int, dtype: torch.dtype, device: str) -> dict:
    """Relative error of the loss and of both gradients against `reference` in float64 on the same inputs."""
    x, y = unit_features(b, d, dtype, device, seed=1)
    out = {}
    for name, cast in (("ref", torch.float64), ("impl", dtype)):
        xi, yi = x.to(cast).requires_grad_(True), y.to(cast).requires_grad_(True)
        loss = (reference if name == "ref" else fn)(xi, yi)
        loss.backward()
        out[name] = [loss.detach().double(), xi.grad.double(), yi.grad.double()]
    names = ("loss", "grad_x", "grad_y")
    return {k: float((a - r).norm() / r.norm()) for k, a, r in zip(names, out["impl"], out["ref"])}


def largest_fitting_b(fn: LossFn, d: int, dtype: torch.dtype, device: str, start: int, stop: int,
                      max_seconds: float) -> str:
    """Double B from `start` while one forward+backward fits: the largest B that ran, and why it stopped.

    Doubling B quadruples the work, so the search also stops once a step takes over `max_seconds`.
    """
    best, b, why = None, start, f"reached --largest-stop {stop}"
    while b <= stop:
        try:
            x = torch.randn(b, d, device=device, dtype=dtype, requires_grad=True)
            y = torch.randn(b, d, device=device, dtype=dtype, requires_grad=True)
            t0 = time.perf_counter()
            fn(F.normalize(x, dim=1), F.normalize(y, dim=1)).backward()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            best = b
        except torch.OutOfMemoryError:
            why = f"B = {b} ran out of memory"
            break
        finally:
            x = y = None
            torch.cuda.empty_cache()
        if seconds > max_seconds and 2 * b <= stop:
            why = f"one step took {seconds:.0f} s, larger B not tried"
            break
        b *= 2
    return f"{best} ({why})"


def to_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# Contrastive loss benchmark ({env['device']})", "",
             f"{report['loss_name']}, bf16 inputs, median of CUDA-event timings; "
             "extra memory = peak above inputs and grads; TFLOP/s counts 6·B²·d per forward+backward.", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             f"Measured matmul ({report['matmul_n']}³, {report['dtype']}): {report['matmul_tflops']:.1f} TFLOP/s", "",
             "| impl | B | d | fwd ms | bwd ms | fwd+bwd ms | extra MB | TFLOP/s | of matmul |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['impl']} | {r['B']} | {r['d']} | {r['status']} | | | | | |")
            continue
        mb = r.get("peak_extra_bytes", float("nan")) / 2 ** 20
        lines.append(f"| {r['impl']} | {r['B']} | {r['d']} | {r['fwd_ms']:.2f} | {r['bwd_ms']:.2f} | "
                     f"{r['fwd_bwd_ms']:.2f} | {mb:.1f} | {r['tflops']:.1f} | "
                     f"{r['tflops'] / report['matmul_tflops']:.0%} |")
    skipped = "; ".join(f"{k}: {v}" for k, v in report["skipped"].items()) or "none"
    errors = "; ".join(f"{k} loss {v['loss']:.1e}, grad {max(v['grad_x'], v['grad_y']):.1e}"
                       for k, v in report["agreement"].items())
    b, d = report["agreement_B"], report["rows"][0]["d"]
    lines += ["", f"Relative error against float64 (B = {b}, d = {d}): {errors}"]
    lines += ["", f"Skipped: {skipped}", "",
              "Largest B that fits at d = 512: " + ", ".join(f"{k} {v}" for k, v in report["largest_b_d512"].items()),
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny CPU run of the torch paths (no numbers worth keeping)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[4096, 16384, 32768, 65536])
    p.add_argument("--fused-batch-sizes", type=int, nargs="+", default=[131072, 262144, 524288, 1048576],
                   help="extra sizes for the memory-lean implementations only")
    p.add_argument("--dims", type=int, nargs="+", default=[512, 768])
    p.add_argument("--largest-stop", type=int, default=1 << 21,
                   help="largest B to try at d = 512 (doubling from the largest B already timed)")
    p.add_argument("--largest-max-seconds", type=float, default=30.0,
                   help="stop the largest-B search once one step takes longer than this")
    p.add_argument("--loss", choices=tuple(LOSSES), default="info_nce")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("bench_contrastive_loss: no CUDA GPU found. This benchmark measures GPU kernels and records nothing "
              "on a CPU; run it on a GPU, or pass --smoke for a tiny CPU plumbing check.", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    sizes, fused_sizes, dims = args.batch_sizes, args.fused_batch_sizes, args.dims
    if args.smoke:
        sizes, fused_sizes, dims = [64, 128], [256], [32]
    timer = make_timer(device)
    impls = implementations(device, args.smoke, args.loss)
    skipped = {k: v for k, v in impls.items() if isinstance(v, str)}
    first = ("mmlab_triton", "torch_compile", "naive_eager")  # the slow baselines last: a cut-short run keeps these
    rank = {name: i for i, name in enumerate(first)}
    runnable = {k: v for k, v in sorted(impls.items(), key=lambda kv: rank.get(kv[0], len(first)))
                if not isinstance(v, str)}
    lean = {"chunked_torch", "inf_cl", "mmlab_triton", "mmlab_torch_backend"}

    naive, _, loss_name, prefix = LOSSES[args.loss]
    report = {"environment": environment(device), "dtype": str(dtype), "smoke": args.smoke, "rows": [],
              "loss_name": loss_name,
              "skipped": skipped, "largest_b_d512": {}, "agreement": {}, "agreement_B": 64 if args.smoke else 4096}
    for name, fn in runnable.items():  # correct first: every implementation against float64 at a moderate size
        report["agreement"][name] = agreement(fn, naive, report["agreement_B"], dims[0], dtype, device)
        print(name, "relative error vs float64:", report["agreement"][name], flush=True)
    report["matmul_n"] = 8192 if device == "cuda" else 256
    report["matmul_tflops"] = matmul_tflops(device, timer, n=report["matmul_n"])
    print(f"matmul: {report['matmul_tflops']:.2f} TFLOP/s", flush=True)
    stem = prefix + "".join(c if c.isalnum() else "_" for c in report["environment"]["device"]).strip("_")

    def save() -> None:  # after every row, so that a run cut short still leaves what it measured
        if args.smoke:
            return
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
        (args.out / f"{stem}.md").write_text(to_markdown(report))

    for d in dims:
        for name, fn in runnable.items():
            oom = False
            for b in sizes + (fused_sizes if name in lean else []):
                if oom:
                    report["rows"].append({"impl": name, "B": b, "d": d, "status": "oom (smaller B already did)"})
                    continue
                row = {"impl": name, **measure(fn, b, d, dtype, device, timer)}
                oom = row["status"] == "oom"
                report["rows"].append(row)
                print({k: v for k, v in row.items() if not k.endswith("raw_ms")}, flush=True)
                save()
        if d == 512 and device == "cuda":
            for name, fn in runnable.items():
                timed = [r["B"] for r in report["rows"] if r["impl"] == name and r["d"] == 512 and r["status"] == "ok"]
                start = max(timed) if timed else 4096
                report["largest_b_d512"][name] = largest_fitting_b(fn, 512, dtype, device, start, args.largest_stop,
                                                                   args.largest_max_seconds)
                print(name, "largest B at d=512:", report["largest_b_d512"][name], flush=True)
                save()
    if args.smoke:
        print(to_markdown(report))
        print("smoke run: nothing written")
        return 0
    save()
    print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
