"""Deployment benchmark: torch fp32 vs ONNX Runtime fp32 / INT8 / FP16 encoders, and exact vs HNSW search.

Not a test. Writes raw JSON (and prints a markdown summary) to --out.

    python benchmarks/bench_deploy.py --part models                        # the lesson's model (width 64)
    python benchmarks/bench_deploy.py --part models --dim 256 --depth 4 --tag wide   # wider: can INT8 pay off?
    python benchmarks/bench_deploy.py --part index --sizes 10000 100000 1000000

Models: the Shapes-World dual encoder of `mmlab.align.recipe` (trained here, --steps), exported with
`mmlab.deploy`. Per variant: file size (ONNX files; for torch the fp32 weights), median latency of the image and
the text tower at batch 1 and 64 (after warm-up), throughput at batch 64, and retrieval on held-out scenes (the
"val" split, --held-out images, 4 captions each): Recall@1/@10 image->text and text->image.
Index: synthetic unit vectors around random centres (as embeddings of a few classes are), queries from the same
distribution but not in the gallery; build time, memory held (`EmbeddingIndex.nbytes`: features + ids, for HNSW
also faiss's vectors and graph), queries/s over --queries queries, and recall@10 of HNSW against exact search (the
fraction of the exact top 10 that HNSW returns).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmlab.runtime import cpu_name


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def median_seconds(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def versions() -> dict:
    import faiss
    import onnx
    import onnxruntime

    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "faiss": faiss.__version__, "numpy": np.__version__}


# ---- models ------------------------------------------------------------------------------------------

def bench_models(args) -> dict:
    from mmlab import deploy
    from mmlab.align.recipe import ShapesRecipe, train_shapes_dual_encoder
    from mmlab.data import ShapesWorld
    from mmlab.evaluate import recall_at_k

    torch.set_num_threads(1)  # training a tiny model: one thread (two spin against each other on a shared CPU)
    recipe = ShapesRecipe(dim=args.dim, depth=args.depth, steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    trained = train_shapes_dual_encoder(recipe)
    train_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)  # what is measured runs with --threads (torch and onnxruntime alike)
    model = trained.model
    data = ShapesWorld("val", size=args.held_out, with_audio=False).batch(range(args.held_out))
    captions = [c for caps in data["captions"] for c in caps]
    tokens = trained.tokenize(captions)
    owner = torch.arange(args.held_out).repeat_interleave(4)
    g = torch.Generator().manual_seed(0)
    rows = {b: torch.randint(0, len(captions), (b,), generator=g) for b in (1, 64)}
    image_in = {b: data["image"][rows[b] // 4] for b in (1, 64)}
    text_in = {b: {k: v[rows[b]] for k, v in tokens.items()} for b in (1, 64)}

    folder = Path(tempfile.mkdtemp(prefix="bench_deploy_"))
    t0 = time.perf_counter()
    fp32 = deploy.export_onnx(model, folder)
    export_s = time.perf_counter() - t0
    variants = {"ONNX fp32": fp32}
    variants["ONNX INT8 (7-bit weights, default)"] = {
        k: deploy.quantize_int8(p, folder / f"{k}_int8.onnx") for k, p in fp32.items()}
    variants["ONNX INT8 per-channel"] = {
        k: deploy.quantize_int8(p, folder / f"{k}_int8_pc.onnx", per_channel=True) for k, p in fp32.items()}
    variants["ONNX INT8 (8-bit weights)"] = {
        k: deploy.quantize_int8(p, folder / f"{k}_int8_8bit.onnx", reduce_range=False) for k, p in fp32.items()}
    variants["ONNX FP16"] = {k: deploy.convert_fp16(p, folder / f"{k}_fp16.onnx") for k, p in fp32.items()}

    with torch.no_grad():
        reference = model.encode_image(data["image"]), model.encode_text(tokens)
    results = []

    def record(name, encode_image, encode_text, size_bytes, extra=None):
        with torch.no_grad():
            feats = encode_image(data["image"]), encode_text(tokens)
        recall = recall_at_k(*feats, ks=(1, 10), text_to_image=owner)
        row = {"variant": name, "size_bytes": size_bytes, "recall": recall,
               "max_abs_diff_vs_torch": max(float((a - b).abs().max()) for a, b in zip(feats, reference))}
        for tower, fn, inputs in (("image", encode_image, image_in), ("text", encode_text, text_in)):
            for b in (1, 64):
                with torch.no_grad():
                    s = median_seconds(lambda: fn(inputs[b]), args.repeats)
                row[f"{tower}_latency_ms_b{b}"] = 1000 * s
            row[f"{tower}_items_per_s_b64"] = 64 / (row[f"{tower}_latency_ms_b64"] / 1000)
        row.update(extra or {})
        results.append(row)
        print(f"{name:38s} size {size_bytes / 1e6:6.2f} MB | image b64 {row['image_latency_ms_b64']:7.2f} ms | "
              f"text b64 {row['text_latency_ms_b64']:7.2f} ms | t2i@10 {recall['t2i@10']:.3f} "
              f"i2t@10 {recall['i2t@10']:.3f} | max diff {row['max_abs_diff_vs_torch']:.4f}", flush=True)

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    record("torch fp32", model.encode_image, model.encode_text, buffer.getbuffer().nbytes)
    quantized = deploy.quantize_torch_dynamic(model)
    if quantized is not None:
        buffer = io.BytesIO()
        torch.save(quantized.state_dict(), buffer)
        record("torch dynamic INT8 (nn.Linear)", quantized.encode_image, quantized.encode_text,
               buffer.getbuffer().nbytes)
    for name, paths in variants.items():
        image = deploy.OnnxEncoder(paths["image"], threads=args.threads)
        text = deploy.OnnxEncoder(paths["text"], threads=args.threads)
        record(name, image, text, sum(p.stat().st_size for p in paths.values()))
    return {"recipe": recipe.__dict__, "train_seconds": train_s, "export_seconds": export_s,
            "held_out_images": args.held_out, "threads": args.threads, "results": results}


# ---- index ------------------------------------------------------------------------------------------

def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 0.35) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=torch.Generator().manual_seed(12345))
    x = centres[torch.randint(0, clusters, (n,), generator=g)] + spread * torch.randn(n, dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1)


def bench_index(args) -> dict:
    import faiss

    from mmlab.search import EmbeddingIndex

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    out = []
    queries = clustered(args.queries, args.index_dim, args.clusters, seed=999)
    for n in args.sizes:
        gallery = clustered(n, args.index_dim, args.clusters, seed=n)
        row = {"items": n, "dim": args.index_dim}
        exact = EmbeddingIndex(args.index_dim, "exact")
        t0 = time.perf_counter()
        exact.add(gallery)
        row["exact_build_s"] = time.perf_counter() - t0
        row["exact_memory_mib"] = exact.nbytes / 2**20
        t0 = time.perf_counter()
        _, truth = exact.search(queries, 10)
        row["exact_queries_per_s"] = args.queries / (time.perf_counter() - t0)
        approx = EmbeddingIndex(args.index_dim, "hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
        t0 = time.perf_counter()
        approx.add(gallery)
        row["hnsw_build_s"] = time.perf_counter() - t0
        row["hnsw_memory_mib"] = approx.nbytes / 2**20
        row["hnsw"] = []
        for ef in args.ef_search:
            approx.params["ef_search"] = ef
            t0 = time.perf_counter()
            _, found = approx.search(queries, 10)
            qps = args.queries / (time.perf_counter() - t0)
            recall = float(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(truth.numpy(), found.numpy())]))
            row["hnsw"].append({"ef_search": ef, "queries_per_s": qps, "recall_at_10": recall})
            print(f"N={n:>8d} exact {row['exact_queries_per_s']:9.1f} q/s | hnsw ef={ef:4d} {qps:9.1f} q/s "
                  f"({qps / row['exact_queries_per_s']:5.1f}x) recall@10 {recall:.3f} | build exact "
                  f"{row['exact_build_s']:.1f} s hnsw {row['hnsw_build_s']:.1f} s", flush=True)
        out.append(row)
        del exact, approx, gallery
    return {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction, "clusters": args.clusters,
            "queries": args.queries, "threads": args.threads, "results": out}


def summary(folder: Path) -> str:
    """Markdown tables of every deploy_cpu_*.json in `folder`."""
    lines = []
    for path in sorted(folder.glob("deploy_cpu_*.json")):
        info = json.loads(path.read_text())
        lines += [f"### {path.name}", "", f"{info['started']}, {info['cpu']}, {info['threads']} threads, load average "
                  f"{info['load_average_before']} before, {info['load_average_after']} after; {info['versions']}", ""]
        if "recipe" in info:
            r = info["recipe"]
            lines += [f"Model: width {r['dim']}, depth {r['depth']}, {r['steps']} training steps; retrieval on "
                      f"{info['held_out_images']} held-out images x 4 captions.", "",
                      "| variant | size (MB) | image b1 (ms) | image b64 (ms) | images/s b64 | text b1 (ms) | "
                      "text b64 (ms) | texts/s b64 | i2t R@1 | i2t R@10 | t2i R@1 | t2i R@10 | max abs diff |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for x in info["results"]:
                rc = x["recall"]
                lines.append(f"| {x['variant']} | {x['size_bytes'] / 1e6:.2f} | {x['image_latency_ms_b1']:.2f} | "
                             f"{x['image_latency_ms_b64']:.2f} | {x['image_items_per_s_b64']:.0f} | "
                             f"{x['text_latency_ms_b1']:.2f} | {x['text_latency_ms_b64']:.2f} | "
                             f"{x['text_items_per_s_b64']:.0f} | {rc['i2t@1']:.3f} | {rc['i2t@10']:.3f} | "
                             f"{rc['t2i@1']:.3f} | {rc['t2i@10']:.3f} | {x['max_abs_diff_vs_torch']:.4f} |")
        else:
            lines += [f"HNSW M={info['hnsw_m']}, efConstruction={info['ef_construction']}; {info['queries']} queries, "
                      f"{info['clusters']} clusters.", "",
                      "| items | exact build (s) | exact memory (MiB) | exact q/s | HNSW build (s) | HNSW memory (MiB) "
                      "| efSearch | HNSW q/s | speed-up | recall@10 |", "|---|---|---|---|---|---|---|---|---|---|"]
            for x in info["results"]:
                for h in x["hnsw"]:
                    lines.append(f"| {x['items']:,} | {x['exact_build_s']:.1f} | {x['exact_memory_mib']:.0f} | "
                                 f"{x['exact_queries_per_s']:.1f} | {x['hnsw_build_s']:.1f} | "
                                 f"{x['hnsw_memory_mib']:.0f} | {h['ef_search']} | {h['queries_per_s']:.0f} | "
                                 f"{h['queries_per_s'] / x['exact_queries_per_s']:.1f}x | {h['recall_at_10']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("models", "index", "summary"), required=True)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--tag", default="", help="suffix of the JSON file name")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--index-dim", type=int, default=64)
    p.add_argument("--clusters", type=int, default=48)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128])
    args = p.parse_args(argv)
    if args.part == "summary":
        print(summary(args.out))
        return 0
    info = {"cpu": cpu_name(), "cores": os.cpu_count(),
            "load_average_before": load_average(), "versions": versions(), "argv": sys.argv[1:],
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    info.update(bench_models(args) if args.part == "models" else bench_index(args))
    info["load_average_after"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"deploy_cpu_{args.part}{'_' + args.tag if args.tag else ''}.json"
    (args.out / name).write_text(json.dumps(info, indent=1))
    print(f"wrote {args.out / name}; load average before {info['load_average_before']}, "
          f"after {info['load_average_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
