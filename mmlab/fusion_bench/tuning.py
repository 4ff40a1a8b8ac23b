"""Hyper-parameter selection on the validation split: Optuna's TPE sampler, seeded, ask-and-tell.

Each trial trains the method once (at `tune_seed`) with the sampled settings, early-stopped on validation;
its score is the best validation accuracy. The selected configuration is the trial with the highest score
(the earliest on ties). Nothing here reads `task.test`.

Resuming: trials already in the store are not retrained. The study is replayed instead: the sampler, seeded
the same way, is asked again for each stored trial and told its stored score, so the trials asked after
the replay are exactly those an uninterrupted run would have asked (the replayed parameters are checked
against the stored ones; a mismatch is an error rather than a silent mix of two searches).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from mmlab.fusion.search_space import Choice, FloatRange, IntRange, Param
from mmlab.fusion_bench.methods import Method
from mmlab.fusion_bench.store import ResultStore
from mmlab.fusion_bench.tasks import Task
from mmlab.fusion_bench.training import RunSettings, train_run


@dataclass(frozen=True)
class TuningSettings:
    trials: int = 4
    startup_trials: int = 2  # random trials before TPE models the results
    sampler_seed: int = 0
    tune_seed: int = 0  # the training seed of every trial
    max_steps: int = 200


def distributions(space: dict[str, Param]) -> dict[str, Any]:
    """Optuna distributions for a search space."""
    import optuna

    out = {}
    for name, p in space.items():
        if isinstance(p, IntRange):
            out[name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, FloatRange):
            out[name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, Choice):
            out[name] = optuna.distributions.CategoricalDistribution(p.values)
        else:
            raise TypeError(f"search space entry {name!r} is not an IntRange, FloatRange or Choice: {p!r}")
    return out


def tune(task: Task, method: Method, tuning: TuningSettings, run: RunSettings, store: ResultStore | None = None,
         on_unit: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run `tuning.trials` trials; return {"params", "val", "trial", "trials": [per-trial records]}."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=tuning.sampler_seed, n_startup_trials=tuning.startup_trials)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = distributions(method.space(tuning.max_steps))
    records = []
    for k in range(tuning.trials):
        trial = study.ask(dists)
        params = dict(trial.params)
        unit = f"trial_{k:03d}"
        record = store.get(task.name, method.label, unit) if store is not None else None
        if record is not None and record["params"] != params:
            raise ValueError(f"stored {unit} of {method.label!r} on {task.name!r} has params {record['params']}, "
                             f"but the seeded sampler asks {params}: the store holds another search")
        if record is None:
            result = train_run(task, method, params, tuning.tune_seed, run)
            record = {"trial": k, "params": params, "val": result.best_val, "best_step": result.best_step,
                      "steps_run": result.steps_run, "seconds": result.seconds, "curve": result.curve}
            if store is not None:
                store.put(task.name, method.label, unit, record)
        study.tell(trial, record["val"])
        records.append(record)
        if on_unit is not None:
            on_unit()
    best = max(records, key=lambda r: (r["val"], -r["trial"]))
    return {"params": best["params"], "val": best["val"], "trial": best["trial"], "trials": records}
