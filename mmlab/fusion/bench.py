"""Fusion leaderboard: train every variant on a task at several seeds and compare them fairly.

Columns: test accuracy (mean +/- std over seeds), accuracy with one modality dropped (its
tokens zeroed) or noised at test time, parameters, forward FLOPs per sample
(`torch.utils.flop_counter`, attention counted through the math kernel), CPU latency
(median ms per batch) and training time; each variant with and without modality-dropout
training. From the shell: `python -m mmlab fusion-bench --task avdigits vqa --seeds 3`.
"""
from __future__ import annotations

import argparse
import ast
import csv
import io
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from mmlab import validation
from mmlab.fusion.registry import available_fusions
from mmlab.fusion.tasks import TASKS, FusionModel, Split, Task, load_task

WORD_NOISE = 0.5  # fraction of word tokens replaced by random words when "noising" text


@dataclass
class Variant:
    """One leaderboard entry: a registered fusion, its options, and which modalities it sees."""

    fusion: str
    options: dict = field(default_factory=dict)
    modalities: tuple[str, ...] | None = None  # None: all the task's modalities
    label: str = ""

    def __post_init__(self):
        if not isinstance(self.fusion, str):
            raise TypeError(f"fusion must be a registered fusion's name (str), got {type(self.fusion).__name__}")
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise TypeError(f"options must be a dict of keyword arguments for the fusion, got {self.options!r}")
        if self.modalities is not None:
            self.modalities = tuple(validation.str_list("modalities", self.modalities, single=False))
        if not self.label:
            opts = ",".join(f"{k}={v}" for k, v in self.options.items())
            self.label = self.fusion + (f"({opts})" if opts else "")
            if self.modalities:
                self.label = f"{'+'.join(self.modalities)} only ({self.label})"


@dataclass
class BenchConfig:
    task: str = "avdigits"
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 150
    batch_size: int = 64
    lr: float = 5e-3  # peak; cosine decay to 0
    weight_decay: float = 0.01
    width: int = 32  # token width of the modality encoders
    dropout_ps: tuple[float, ...] = (0.0, 0.3)  # modality-dropout probabilities to train with
    noise: float = 1.0  # test-time Gaussian noise std on standardised features
    budget_s: float | None = None  # optional wall-clock cap per training run
    latency_batch: int = 64
    latency_repeats: int = 15
    threads: int | None = 1  # torch CPU threads while benchmarking (tiny models: 1 is fastest on a busy CPU)
    progress: bool = True

    def __post_init__(self) -> None:
        check_config(vars(self))


def check_config(values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> None:
    """A TypeError or ValueError for the first bad setting among `values` (BenchConfig's fields), naming it
    as `names` spells it (the command line passes its options; default: the field name)."""
    def name(key: str) -> str:
        return (names or {}).get(key, key)

    for key, check in (("seeds", lambda n, v: validation.int_in_range(n, v, 0, 2**63 - 1)),
                       ("dropout_ps", lambda n, v: validation.finite_float(n, v, 0, 1, high_open=True))):
        items = values[key]
        if not isinstance(items, (tuple, list)):
            raise TypeError(f"{name(key)} must be a tuple, got {type(items).__name__} {items!r}")
        if not items:
            raise ValueError(f"{name(key)} must list one or more values, got {items!r}")
        for item in items:
            check(name(key), item)
        validation.distinct(name(key), items)
    for key in ("steps", "batch_size", "width", "latency_batch", "latency_repeats"):
        validation.positive_int(name(key), values[key])
    validation.finite_float(name("lr"), values["lr"], low=0, low_open=True)
    validation.finite_float(name("weight_decay"), values["weight_decay"], low=0)
    validation.finite_float(name("noise"), values["noise"], low=0)
    if values["budget_s"] is not None:
        validation.finite_float(name("budget_s"), values["budget_s"], low=0, low_open=True)
    if values["threads"] is not None:
        validation.positive_int(name("threads"), values["threads"])
    validation.boolean(name("progress"), values["progress"])


@dataclass
class Leaderboard:
    rows: list[dict]  # one per (variant, modality dropout), aggregated over seeds
    runs: list[dict]  # one per training run
    meta: dict

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def to_markdown(self, latency: bool = True) -> str:
        mods = self.meta["modalities"]
        head = ["fusion", "mod. dropout", "accuracy"] + [f"drop {m}" for m in mods] + [f"noise {m}" for m in mods]
        head += ["params", "MFLOPs/sample"] + (["latency ms/batch"] if latency else [])
        lines = [
            f"# Fusion leaderboard: task `{self.meta['task']}`", "",
            f"- command: `{self.meta['command']}`",
            f"- seeds {self.meta['seeds']}, {self.meta['steps']} steps of batch {self.meta['batch_size']}, "
            f"lr {self.meta['lr']}, token width {self.meta['width']}",
            f"- test set: {self.meta['test_size']} examples, {self.meta['num_classes']} classes "
            f"(chance {1 / self.meta['num_classes']:.3f})",
            f"- drop m: m's tokens zeroed at test time; noise m: Gaussian noise of std {self.meta['noise']} on m's "
            f"standardised features (word tokens: {WORD_NOISE:.0%} replaced by random words)",
            f"- latency: median of {self.meta['latency_repeats']} forward passes of a batch of "
            f"{self.meta['latency_batch']} on CPU ({self.meta['threads']} threads)",
            f"- machine: {self.meta['machine']}; {self.meta['versions']}; {self.meta['date']}", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
        ]
        for r in self.rows:
            cells = [r["fusion"], f"{r['modality_dropout']:.1f}", f"{r['acc_mean']:.3f} ± {r['acc_std']:.3f}"]
            cells += [f"{r[f'acc_drop_{m}']:.3f}" for m in mods] + [f"{r[f'acc_noise_{m}']:.3f}" for m in mods]
            cells += [f"{r['params']:,}", f"{r['mflops_per_sample']:.3f}"]
            cells += [f"{r['latency_ms']:.2f}"] if latency else []
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def save(self, out: str | Path) -> tuple[Path, Path]:
        """Write `<out>.md` and `<out>.csv` (see `output_paths`); return both paths."""
        md, cs = output_paths(out)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(self.to_markdown())
        cs.write_text(self.to_csv())
        return md, cs


class MultiTaskLeaderboard(Leaderboard):
    """Several tasks' leaderboards: one CSV (a `task` column) and one markdown section per task."""

    def __init__(self, boards: list[Leaderboard]):
        super().__init__([r for b in boards for r in b.rows], [r for b in boards for r in b.runs],
                         {"tasks": [b.meta["task"] for b in boards]})
        self.boards = boards

    def to_csv(self) -> str:
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def to_markdown(self, latency: bool = True) -> str:
        return "\n".join(b.to_markdown(latency).replace("# Fusion leaderboard", "## Fusion leaderboard", 1)
                         for b in self.boards)


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """The markdown and CSV files a leaderboard saved as `out` is written to: `<out>.md`, `<out>.csv`
    (a ".md" or ".csv" suffix of `out` is dropped first)."""
    out = validation.as_path("out", out)
    out = out.with_suffix("") if out.suffix in (".md", ".csv") else out
    return out.with_name(out.name + ".md"), out.with_name(out.name + ".csv")


def merge_leaderboards(boards: list[Leaderboard]) -> Leaderboard:
    """Combine per-task leaderboards (e.g. from `--task avdigits vqa`)."""
    if not boards:
        raise ValueError("merge_leaderboards needs at least one leaderboard")
    return MultiTaskLeaderboard(boards)


def parse_variant(spec: str) -> Variant:
    """"name" or "name:key=value,key=value" (values parsed as Python literals when possible); the options go
    to the fusion (`width` is the fusion's own, e.g. early fusion's hidden width; --width sets the encoders')."""
    if not isinstance(spec, str):
        raise TypeError(f"a fusion variant is a string such as 'late:combine=learned', got {type(spec).__name__}")
    name, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"bad option {item!r} in {spec!r}; expected key=value")
        if key in options:
            raise ValueError(f"option {key!r} is given twice in {spec!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    if name not in available_fusions():
        raise KeyError(f"unknown fusion {name!r}; available: {', '.join(available_fusions())}")
    return Variant(name, options)


def noised(split: Split, modality: str, level: float, generator: torch.Generator,
           vocab_size: int | None = None) -> Split:
    """A copy of `split` with `modality` noised (floats: + N(0, level^2); word ids: random replacements)."""
    validation.finite_float("level", level, low=0)
    features = dict(split.features)
    x = features[modality]
    if x.is_floating_point():
        features[modality] = x + level * torch.randn(x.shape, generator=generator)
    else:
        replace = (torch.rand(x.shape, generator=generator) < WORD_NOISE) & split.masks[modality]
        random_ids = torch.randint(2, vocab_size or int(x.max()) + 1, x.shape, generator=generator)  # 0, 1: pad, unk
        features[modality] = torch.where(replace, random_ids, x)
    return Split(features, split.masks, split.labels)


@torch.no_grad()
def accuracy(model: FusionModel, split: Split, drop: tuple[str, ...] = ()) -> float:
    model.eval()
    logits = model(split.features, split.masks, drop=drop)
    return float((logits.argmax(-1) == split.labels).float().mean())


def build_model(task: Task, variant: Variant, width: int) -> FusionModel:
    """The variant's model: modality encoders of token width `width` feeding its fusion, built with its options
    (a `width` among them is the fusion's own, e.g. `early:width=64`)."""
    return FusionModel(task, variant.fusion, variant.modalities, width=width, fusion_options=dict(variant.options))


def check_variants(variants: Sequence[Variant], task: Task, config: BenchConfig) -> None:
    """Build every variant's model once (then drop it), so that a bad fusion option fails before any training;
    two variants with the same label are a ValueError."""
    if not variants:
        raise ValueError("need at least one fusion variant")
    validation.distinct("the fusion variants", [v.label for v in variants])
    for variant in variants:
        try:
            build_model(task, variant, config.width)
        except (TypeError, ValueError) as err:
            kind = TypeError if isinstance(err, TypeError) else ValueError
            raise kind(f"fusion variant {variant.label!r} cannot be built for task {task.name!r}: {err}") from err


def train(task: Task, variant: Variant, seed: int, config: BenchConfig,
          dropout_p: float = 0.0) -> tuple[FusionModel, float]:
    """Train one model; return it and the seconds it took."""
    validation.finite_float("dropout_p", dropout_p, 0, 1, high_open=True)
    torch.manual_seed(seed)
    model = build_model(task, variant, config.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # cosine decay to 0 over the run
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps)))
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(config.steps):
        batch = task.train.take(torch.randint(len(task.train), (config.batch_size,), generator=generator))
        logits = model(batch.features, batch.masks, dropout_p=dropout_p, generator=generator)
        loss = nn.functional.cross_entropy(logits, batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if config.budget_s is not None and time.perf_counter() - start > config.budget_s:
            break
    return model, time.perf_counter() - start


def count_flops(model: FusionModel, split: Split, batch: int = 16) -> float:
    """Forward FLOPs per sample (attention through the math kernel so the counter sees its matmuls)."""
    validation.positive_int("batch", batch)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    part = split.take(torch.arange(min(batch, len(split))))
    model.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(part.features, part.masks)  # grad enabled: keeps torch's fused inference fast path out
    return counter.get_total_flops() / len(part)


@torch.no_grad()
def latency_ms(model: FusionModel, split: Split, batch: int, repeats: int) -> float:
    """Median wall time (ms) of `repeats` forward passes of the first `batch` examples, after 2 warm-up passes."""
    validation.positive_int("batch", batch)
    validation.positive_int("repeats", repeats)
    part = split.take(torch.arange(min(batch, len(split))))
    model.eval()
    for _ in range(2):
        model(part.features, part.masks)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(part.features, part.masks)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def default_variants(task: Task, baselines: bool = True) -> list[Variant]:
    """Every registered fusion, plus single-modality baselines (early fusion on one modality)."""
    variants = [Variant(name) for name in available_fusions()]
    if baselines:
        variants = [Variant("early", modalities=(m,)) for m in task.modalities] + variants
    return variants


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_bench(variants: Sequence[Variant | str] | None = None, config: BenchConfig | None = None,
              task: Task | None = None, command: str = "") -> Leaderboard:
    """Train every variant at every seed and modality-dropout setting; aggregate into a leaderboard.

    Every argument is checked first, each variant's model built once (`check_variants`), before any training."""
    config = config or BenchConfig()
    if not isinstance(config, BenchConfig):
        raise TypeError(f"config must be a BenchConfig, got {type(config).__name__}")
    task = task or load_task(config.task)
    if variants is None:
        variants = default_variants(task)
    else:
        variants = [v if isinstance(v, Variant) else parse_variant(v) for v in variants]
    check_variants(variants, task, config)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(variants, config, task, command)
    finally:
        torch.set_num_threads(threads)


def _run(variants: list[Variant], config: BenchConfig, task: Task, command: str) -> Leaderboard:
    from tqdm.auto import tqdm

    jobs = [(v, p, s) for v in variants for p in config.dropout_ps
            if not (p > 0 and len(v.modalities or task.modalities) < 2) for s in config.seeds]
    if not jobs:
        raise ValueError(f"nothing to train: single-modality variants train without modality dropout only, and "
                         f"dropout_ps={config.dropout_ps} has no 0")
    runs, cost = [], {}
    for variant, p, seed in tqdm(jobs, desc=f"fusion-bench {task.name}", disable=not config.progress):
        model, seconds = train(task, variant, seed, config, dropout_p=p)
        run = {"fusion": variant.label, "modality_dropout": p, "seed": seed, "train_s": seconds,
               "acc": accuracy(model, task.test)}
        gen = torch.Generator().manual_seed(10_000 + seed)
        for m in task.modalities:
            run[f"acc_drop_{m}"] = accuracy(model, task.test, drop=(m,))
            run[f"acc_noise_{m}"] = accuracy(model, noised(task.test, m, config.noise, gen, task.feature_dims[m]))
        if variant.label not in cost:  # architecture cost does not depend on the seed or training
            cost[variant.label] = {
                "params": sum(q.numel() for q in model.parameters()),
                "fusion_params": sum(q.numel() for q in model.fusion.parameters()),
                "mflops_per_sample": count_flops(model, task.test) / 1e6,
                "latency_ms": latency_ms(model, task.test, config.latency_batch, config.latency_repeats),
            }
        runs.append(run)
    rows = []
    for variant in variants:
        for p in config.dropout_ps:
            group = [r for r in runs if r["fusion"] == variant.label and r["modality_dropout"] == p]
            if not group:
                continue
            acc, acc_std = _mean_std([r["acc"] for r in group])
            row = {"task": task.name, "fusion": variant.label, "modality_dropout": p, "seeds": len(group),
                   "acc_mean": acc, "acc_std": acc_std}
            for key in [k for k in group[0] if k.startswith(("acc_drop_", "acc_noise_"))]:
                row[key], row[key + "_std"] = _mean_std([r[key] for r in group])
            row.update(cost[variant.label])
            row["train_s"] = statistics.fmean(r["train_s"] for r in group)
            rows.append(row)
    meta = {"task": task.name, "modalities": list(task.modalities), "seeds": list(config.seeds),
            "steps": config.steps, "batch_size": config.batch_size, "lr": config.lr, "width": config.width,
            "noise": config.noise, "test_size": len(task.test), "num_classes": task.num_classes,
            "latency_batch": config.latency_batch, "latency_repeats": config.latency_repeats,
            "threads": torch.get_num_threads(), "command": command or "mmlab.fusion.bench.run_bench(...)",
            "machine": f"{_cpu_name()} ({platform.system()} {platform.machine()}, {os.cpu_count()} cores), "
                       f"{torch.get_num_threads()} torch threads",
            "versions": f"python {platform.python_version()}, torch {torch.__version__}",
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    return Leaderboard(rows, runs, meta)


def plot_leaderboard(board: Leaderboard, figsize=(8, 4)):
    """Bar chart: clean accuracy (+/- std) and accuracy with each modality dropped; returns the Figure."""
    import matplotlib.pyplot as plt

    rows = board.rows
    mods = board.meta["modalities"]
    labels = [f"{r['fusion']}{' +md' if r['modality_dropout'] > 0 else ''}" for r in rows]
    x = torch.arange(len(rows)).float()
    width = 0.8 / (1 + len(mods))
    fig, ax = plt.subplots(figsize=figsize, dpi=80)
    ax.bar(x, [r["acc_mean"] for r in rows], width, yerr=[r["acc_std"] for r in rows], label="clean")
    for i, m in enumerate(mods, start=1):
        ax.bar(x + i * width, [r[f"acc_drop_{m}"] for r in rows], width, label=f"{m} dropped")
    ax.axhline(1 / board.meta["num_classes"], color="gray", lw=1, ls="--", label="chance")
    ax.set_xticks(x + width * len(mods) / 2, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"fusion leaderboard: {board.meta['task']}")
    ax.legend(fontsize=7, ncol=len(mods) + 2)
    fig.tight_layout()
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmlab fusion-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", default=None,
                        help="fusions to compare, e.g. early late:combine=learned (default: all registered)")
    parser.add_argument("--task", choices=TASKS, nargs="+", default=["avdigits"], help="one or more tasks")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ..., N-1)")
    parser.add_argument("--steps", type=int, default=150, help="training steps per run")
    parser.add_argument("--budget", type=float, default=None, help="optional cap in seconds per training run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (cosine decay)")
    parser.add_argument("--width", type=int, default=32, help="token width of the modality encoders")
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.0, 0.3],
                        help="modality-dropout probabilities to train with")
    parser.add_argument("--noise", type=float, default=1.0, help="test-time noise std (standardised features)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the single-modality baselines")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for tiny models)")
    parser.add_argument("--out", type=Path, default=Path("fusion_leaderboard"),
                        help="output prefix: writes OUT.md and OUT.csv")
    parser.add_argument("--no-progress", action="store_true")
    return parser


# the command-line option that sets each BenchConfig field, named in error messages
OPTIONS = {"seeds": "--seeds", "steps": "--steps", "batch_size": "--batch-size", "lr": "--lr", "width": "--width",
           "dropout_ps": "--dropout", "noise": "--noise", "budget_s": "--budget", "threads": "--threads"}


def plan(args: argparse.Namespace) -> list[tuple[BenchConfig, Task, list[Variant]]]:
    """(config, task, variants) per task of the parsed command line, every argument checked (a TypeError or
    ValueError naming the option) and every variant's model built once: all of it before any training."""
    validation.positive_int("--seeds", args.seeds)
    validation.distinct("--task", args.task)
    settings = dict(seeds=tuple(range(args.seeds)), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    width=args.width, dropout_ps=tuple(args.dropout), noise=args.noise, budget_s=args.budget,
                    threads=args.threads, progress=not args.no_progress)
    check_config({**vars(BenchConfig()), **settings}, OPTIONS)
    for path in output_paths(args.out):
        validation.writable_path("--out", path)
    try:
        chosen = [parse_variant(spec) for spec in args.names or []]
    except (KeyError, ValueError) as err:  # KeyError: an unknown fusion name
        raise ValueError(f"--names: {err.args[0]}") from None
    out = []
    for name in args.task:
        task = load_task(name)
        variants = default_variants(task, baselines=not args.no_baselines)
        if chosen:
            variants = variants[: 0 if args.no_baselines else len(task.modalities)] + chosen
        config = BenchConfig(task=name, **settings)
        check_variants(variants, task, config)
        out.append((config, task, variants))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mmlab fusion-bench ...`: a bad argument is one line naming it and exit status 2, before any
    training."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        runs = plan(args)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    command = shlex.join(["python", "-m", "mmlab", "fusion-bench", *argv])
    boards = [run_bench(variants, config, task, command=command) for config, task, variants in runs]
    board = boards[0] if len(boards) == 1 else merge_leaderboards(boards)
    md, cs = board.save(args.out)
    print(board.to_markdown())
    print(f"wrote {md} and {cs}")
    return 0
