"""The benchmark protocol: for every task and method, tune on validation, then evaluate the selected
configuration on test at several seeds, with and without modality-dropout training.

Per (task, method), in order:
1. `tune`: `trials` trials of the seeded TPE sampler over the method's search space, each trained at seed
   `first_seed` and early-stopped on validation; the best validation accuracy selects the configuration.
2. The selected configuration is trained at every seed in `seeds` (early-stopped on validation as in tuning)
   and read on test once per seed: clean accuracy, accuracy with each modality zeroed and noised, plus its
   validation learning curve. Multimodal methods are also trained with modality dropout `modality_dropout`
   at the first `dropout_seeds` seeds (robustness columns).
3. Parameters, FLOPs per sample and CPU latency of the first seed's model.

Every finished trial and seed is stored (`ResultStore`), so a rerun continues. `jobs` > 1 runs (task, method)
studies in that many processes (one torch thread each).
"""
from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from mmlab import validation
from mmlab.fusion_bench.measure import accuracy, count_flops, latency_ms, noised
from mmlab.fusion_bench.methods import Method, check_methods
from mmlab.fusion_bench.store import ResultStore
from mmlab.fusion_bench.tasks import Task
from mmlab.fusion_bench.training import RunSettings, train_run
from mmlab.fusion_bench.tuning import TuningSettings, tune
from mmlab.runtime import cpu_name


@dataclass
class ProtocolConfig:
    """The protocol's settings (`python -m mmlab fusion-bench` defaults)."""

    trials: int = 8
    seeds: int = 5  # seeds first_seed, first_seed + 1, ...; trials train at first_seed
    first_seed: int = 0
    dropout_seeds: int = 2
    modality_dropout: float = 0.5
    max_steps: int = 600
    batch_size: int = 64
    width: int = 32
    eval_every: int = 20
    patience: int = 3
    startup_trials: int = 2
    sampler_seed: int = 0
    noise: float = 1.0
    latency_batch: int = 64
    latency_repeats: int = 10
    jobs: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        check_config(vars(self))

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change results (a resumed run must match them)."""
        return {k: v for k, v in asdict(self).items() if k not in ("jobs", "progress", "latency_repeats")}

    def tuning(self) -> TuningSettings:
        return TuningSettings(self.trials, min(self.startup_trials, self.trials), self.sampler_seed,
                              self.first_seed, self.max_steps)

    def run(self) -> RunSettings:
        return RunSettings(self.batch_size, self.width, self.eval_every, self.patience)


def check_config(values: dict[str, Any], names: dict[str, str] | None = None) -> None:
    """A TypeError or ValueError for the first bad setting among `values` (ProtocolConfig's fields), named as
    `names` spells it (the command line passes its option names)."""
    def name(key: str) -> str:
        return (names or {}).get(key, key)

    for key in ("trials", "seeds", "max_steps", "batch_size", "width", "eval_every", "patience", "latency_batch",
                "latency_repeats", "jobs"):
        validation.positive_int(name(key), values[key])
    for key in ("dropout_seeds", "startup_trials", "sampler_seed", "first_seed"):
        validation.non_negative_int(name(key), values[key])
    if values["dropout_seeds"] > values["seeds"]:
        raise ValueError(f"{name('dropout_seeds')}={values['dropout_seeds']} must not exceed "
                         f"{name('seeds')}={values['seeds']}")
    validation.finite_float(name("modality_dropout"), values["modality_dropout"], 0, 1, high_open=True)
    validation.finite_float(name("noise"), values["noise"], low=0)
    validation.boolean(name("progress"), values["progress"])


def evaluate_seed(task: Task, method: Method, params: dict, seed: int, config: ProtocolConfig,
                  dropout_p: float) -> tuple[dict, Any]:
    """Train the selected configuration at `seed`; read it on test (once); return (record, model)."""
    result = train_run(task, method, params, seed, config.run(), modality_dropout=dropout_p)
    model = result.model
    record = {"seed": seed, "modality_dropout": dropout_p, "val": result.best_val, "best_step": result.best_step,
              "steps_run": result.steps_run, "seconds": result.seconds, "curve": result.curve,
              "acc": accuracy(model, task.test)}
    gen = torch.Generator().manual_seed(10_000 + seed)
    for m in model.modalities:
        if len(model.modalities) > 1:
            record[f"acc_drop_{m}"] = accuracy(model, task.test, drop=(m,))
        record[f"acc_noise_{m}"] = accuracy(model, noised(task.test, m, config.noise, gen, task.feature_dims[m]))
    return record, model


def measure_cost(model, task: Task, config: ProtocolConfig) -> dict[str, float]:
    """Parameters, forward MFLOPs per sample and median CPU latency (ms per batch) of a trained model."""
    return {"params": sum(q.numel() for q in model.parameters()),
            "fusion_params": sum(q.numel() for q in model.fusion.parameters()),
            "mflops_per_sample": count_flops(model, task.test) / 1e6,
            "latency_ms": latency_ms(model, task.test, config.latency_batch, config.latency_repeats)}


def run_study(task: Task, method: Method, config: ProtocolConfig, out: str | Path | None,
              on_unit=None) -> dict[str, Any]:
    """Steps 1-3 of the protocol for one (task, method); every finished unit stored under `out` (if given)."""
    store = ResultStore(out) if out is not None else None
    selection = tune(task, method, config.tuning(), config.run(), store, on_unit)
    params = selection["params"]
    arms = [(0.0, config.seeds)]
    if not method.unimodal and config.dropout_seeds and config.modality_dropout > 0:
        arms.append((config.modality_dropout, config.dropout_seeds))
    seeds, cost = [], None
    for p, n in arms:
        for seed in range(config.first_seed, config.first_seed + n):
            unit = f"seed_{seed}_md{p:g}"
            record = store.get(task.name, method.label, unit) if store is not None else None
            if record is None:
                record, model = evaluate_seed(task, method, params, seed, config, p)
                if seed == config.first_seed and p == 0.0:  # architecture cost: the same for every seed
                    record["cost"] = measure_cost(model, task, config)
                if store is not None:
                    store.put(task.name, method.label, unit, record)
            if seed == config.first_seed and p == 0.0:
                cost = record["cost"]
            seeds.append(record)
            if on_unit is not None:
                on_unit()
    return {"task": task.name, "method": method.label, "fusion": method.fusion, "unimodal": method.unimodal,
            "training": method.training,
            "modalities": list(method.modalities or task.modalities), "selection": selection, "seeds": seeds,
            "cost": cost}


def units(method: Method, config: ProtocolConfig) -> int:
    """How many stored units (trials and seeds) one study has."""
    dropout = 0 if method.unimodal or config.modality_dropout == 0 else config.dropout_seeds
    return config.trials + config.seeds + dropout


def _cost_estimate(task: Task, method: Method, config: ProtocolConfig) -> float:
    """Forward FLOPs of the method's default model on a few validation examples: a proxy for its training cost."""
    return count_flops(method.build(task, config.width), task.val, batch=4)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _study_in_worker(task: Task, method: Method, config: ProtocolConfig, out: str | None) -> dict:
    return run_study(task, method, config, out)


def run_protocol(tasks: Sequence[Task], methods: dict[str, Sequence[Method]], config: ProtocolConfig,
                 out: str | Path | None = None, command: str = ""):
    """Run the protocol for every task and its methods (`methods[task.name]`); return a `BenchResult`.
    Every method is built once first, and the stored protocol checked, so bad input fails before any training."""
    from tqdm.auto import tqdm

    from mmlab.fusion_bench.report import BenchResult

    if not isinstance(config, ProtocolConfig):
        raise TypeError(f"config must be a ProtocolConfig, got {type(config).__name__}")
    for task in tasks:
        check_methods(methods[task.name], task, config.width)
    if out is not None:
        validation.writable_path("out", out, folder=True)
        ResultStore(out).check_protocol(config.fingerprint())
    studies = [(task, m) for task in tasks for m in methods[task.name]]
    total = sum(units(m, config) for _, m in studies)
    bar = tqdm(total=total, desc="fusion-bench", disable=not config.progress, unit="run")
    start = time.perf_counter()
    records: list[dict] = []
    threads = torch.get_num_threads()
    try:
        if config.jobs == 1:
            torch.set_num_threads(1)
            for task, method in studies:
                bar.set_postfix_str(f"{task.name}/{method.label}", refresh=False)
                records.append(run_study(task, method, config, out, on_unit=lambda: bar.update(1)))
        else:
            with ProcessPoolExecutor(config.jobs, initializer=_worker_init) as pool:
                # the costliest studies first, so that no long one starts last while the other process idles
                ranked = sorted(studies, key=lambda s: -_cost_estimate(*s, config))
                futures = {pool.submit(_study_in_worker, task, m, config, None if out is None else str(out)):
                           units(m, config) for task, m in ranked}
                for future in as_completed(futures):
                    records.append(future.result())
                    bar.update(futures[future])
    finally:
        bar.close()
        torch.set_num_threads(threads)
    order = {(t.name, m.label): i for i, (t, m) in enumerate(studies)}
    records.sort(key=lambda r: order[(r["task"], r["method"])])
    meta = {"command": command or "mmlab.fusion_bench.run_protocol(...)", "config": asdict(config),
            "wall_s": time.perf_counter() - start, "tasks": {t.name: task_meta(t) for t in tasks},
            "machine": machine(), "versions": versions(), "date": time.strftime("%Y-%m-%d", time.gmtime())}
    return BenchResult(records, meta)


def task_meta(task: Task) -> dict[str, Any]:
    return {"modalities": list(task.modalities), "num_classes": task.num_classes, "train": len(task.train),
            "val": len(task.val), "test": len(task.test), "chance": task.chance,
            "by_construction": dict(task.by_construction), "information": task.notes.get("information", "")}


def machine() -> str:
    return f"{cpu_name()} ({platform.system()} {platform.machine()}, {os.cpu_count()} cores)"


def versions() -> str:
    import optuna

    return f"python {platform.python_version()}, torch {torch.__version__}, optuna {optuna.__version__}"
