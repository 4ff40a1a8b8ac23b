"""The benchmark's figures: accuracy with 95% intervals, validation learning curves, accuracy against FLOPs."""
from __future__ import annotations

import math
from pathlib import Path


def _tasks(result) -> list[str]:
    return list(result.meta["tasks"])


def plot_accuracy(result, figsize=(10, 4)):
    """Per task: test accuracy (mean over seeds) with its 95% t-interval, methods sorted by mean."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows() if r["modality_dropout"] == 0.0]
    tasks = _tasks(result)
    fig, axes = plt.subplots(1, len(tasks), figsize=figsize, dpi=80, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = sorted((r for r in rows if r["task"] == task), key=lambda r: r["acc_mean"])
        y = range(len(mine))
        err = [[r["acc_mean"] - r["acc_ci_low"] if not math.isnan(r["acc_ci_low"]) else 0 for r in mine],
               [r["acc_ci_high"] - r["acc_mean"] if not math.isnan(r["acc_ci_high"]) else 0 for r in mine]]
        colors = ["tab:gray" if " only" in r["method"] else "tab:blue" for r in mine]
        ax.barh(list(y), [r["acc_mean"] for r in mine], xerr=err, color=colors, capsize=2)
        ax.set_yticks(list(y), [r["method"] for r in mine], fontsize=7)
        ax.axvline(result.meta["tasks"][task]["chance"], color="k", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("test accuracy (95% CI)", fontsize=8)
    fig.tight_layout()
    return fig


def mean_curve(seeds: list[dict]) -> tuple[list[int], list[float]]:
    """Mean validation accuracy at each evaluated step, over the seeds that reached it."""
    by_step: dict[int, list[float]] = {}
    for s in seeds:
        for step, acc in s["curve"]:
            by_step.setdefault(int(step), []).append(acc)
    steps = sorted(by_step)
    return steps, [sum(by_step[k]) / len(by_step[k]) for k in steps]


def plot_learning_curves(result, figsize=(10, 3.5)):
    """Per task: validation accuracy against training steps of each method's selected configuration (mean over
    its seeds, no modality dropout); a curve ends where early stopping ended the runs."""
    import matplotlib.pyplot as plt

    tasks = _tasks(result)
    fig, axes = plt.subplots(1, len(tasks), figsize=figsize, dpi=80, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in (r for r in result.records if r["task"] == task):
            steps, accs = mean_curve([s for s in r["seeds"] if s["modality_dropout"] == 0.0])
            ax.plot(steps, accs, lw=1, ls="--" if r["unimodal"] else "-", label=r["method"])
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("val accuracy", fontsize=8)
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def plot_accuracy_vs_flops(result, figsize=(10, 3.5)):
    """Per task: test accuracy (mean, 95% CI) against forward MFLOPs per sample (log scale)."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows() if r["modality_dropout"] == 0.0]
    tasks = _tasks(result)
    fig, axes = plt.subplots(1, len(tasks), figsize=figsize, dpi=80, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in (r for r in rows if r["task"] == task):
            low = r["acc_ci_low"] if not math.isnan(r["acc_ci_low"]) else r["acc_mean"]
            high = r["acc_ci_high"] if not math.isnan(r["acc_ci_high"]) else r["acc_mean"]
            ax.errorbar(r["mflops_per_sample"], r["acc_mean"], yerr=[[r["acc_mean"] - low], [high - r["acc_mean"]]],
                        fmt="o", ms=3)
            ax.annotate(r["method"], (r["mflops_per_sample"], r["acc_mean"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("MFLOPs / sample", fontsize=8)
        ax.set_ylabel("test accuracy", fontsize=8)
    fig.tight_layout()
    return fig


def save_plots(result, out: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for name, make in (("accuracy", plot_accuracy), ("learning_curves", plot_learning_curves),
                       ("accuracy_vs_flops", plot_accuracy_vs_flops)):
        fig = make(result)
        path = Path(out) / f"{stem}_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
