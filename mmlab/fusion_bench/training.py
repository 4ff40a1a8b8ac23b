"""One training run through `mmlab.train.fit`, with early stopping on the validation split.

Every `eval_every` steps the model's validation accuracy is recorded (the learning curve); the parameters
of the best validation step are kept, and training stops after `patience` evaluations without improvement,
counted from half the schedule on (so a slow start, as on the synergy task's plateau, is not cut short).
The returned model holds the best-validation parameters. Only `task.train` and `task.val` are read here:
the test split never reaches training or selection.

Progressive training (`Method.training`): first each modality's encoder is trained alone with its own head,
as that modality's unimodal baseline (early fusion on it), with the same training settings and seed and
early-stopped on validation; its encoder weights are copied into the multimodal model, whose fusion is then
trained on top with those encoders frozen ("progressive_frozen") or trained further ("progressive_finetune").
The first stage's time counts in `seconds`; the curve and steps are the second stage's.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from mmlab import validation
from mmlab.fusion_bench.measure import accuracy
from mmlab.fusion_bench.methods import TRAINING_OPTIONS, Method
from mmlab.fusion_bench.model import FusionModel
from mmlab.fusion_bench.tasks import Task
from mmlab.train import TrainConfig, fit


@dataclass(frozen=True)
class RunSettings:
    """What every run shares (not tuned): batch size, encoder width, how often and how patiently to validate."""

    batch_size: int = 64
    width: int = 32
    eval_every: int = 20
    patience: int = 3

    def __post_init__(self) -> None:
        for name in ("batch_size", "width", "eval_every", "patience"):
            validation.positive_int(name, getattr(self, name))


@dataclass
class RunResult:
    model: FusionModel  # with the best-validation parameters
    curve: list[tuple[int, float]]  # (step, validation accuracy)
    best_step: int
    best_val: float
    steps_run: int
    seconds: float


class _Stop(Exception):
    """Raised by the validation callback to end `fit` early."""


def train_run(task: Task, method: Method, params: Mapping[str, Any], seed: int, settings: RunSettings,
              modality_dropout: float = 0.0) -> RunResult:
    """Train `method` with the tuned `params` (lr, weight_decay, steps and fusion options) at `seed`."""
    validation.non_negative_int("seed", seed)
    validation.finite_float("modality_dropout", modality_dropout, 0, 1, high_open=True)
    steps = validation.positive_int("steps", params["steps"])
    start = time.perf_counter()
    torch.manual_seed(seed)  # the model's initialisation
    model = method.build(task, settings.width, params)
    if method.training != "end_to_end":
        pretrain_encoders(task, model, params, seed, settings)
        if method.training == "progressive_frozen":
            model.encoders.requires_grad_(False)
    order = torch.randint(len(task.train), (steps, settings.batch_size),
                          generator=torch.Generator().manual_seed(seed))  # the batches: a function of the seed

    def loss_fn(net: nn.Module, index: torch.Tensor) -> torch.Tensor:
        batch = task.train.take(index)
        logits = net(batch.features, batch.masks, dropout_p=modality_dropout)  # dropout draws: fit's seeded RNG
        return nn.functional.cross_entropy(logits, batch.labels)

    curve: list[tuple[int, float]] = []
    best = {"val": -1.0, "step": 0, "state": None}

    def validate(step: int, net: nn.Module, history: dict) -> None:
        if step % settings.eval_every and step != steps:
            return
        val = accuracy(net, task.val)  # restores train mode
        curve.append((step, val))
        if val > best["val"]:
            best.update(val=val, step=step, state=copy.deepcopy(net.state_dict()))
        elif step >= steps // 2 and sum(s > max(best["step"], steps // 2 - 1) for s, _ in curve) >= settings.patience:
            raise _Stop  # `patience` checks without improvement, counted from half the schedule on

    config = TrainConfig(steps=steps, lr=float(params["lr"]), weight_decay=float(params["weight_decay"]),
                         schedule="cosine", progress=False, seed=seed)
    try:
        fit(model, loss_fn, lambda i: order[i], config, callbacks=[validate])
    except _Stop:
        pass
    seconds = time.perf_counter() - start
    model.load_state_dict(best["state"])
    model.eval()
    return RunResult(model, curve, best["step"], best["val"], curve[-1][0], seconds)


def pretrain_encoders(task: Task, model: FusionModel, params: Mapping[str, Any], seed: int,
                      settings: RunSettings) -> None:
    """Progressive training's first stage: each of `model`'s modality encoders replaced by the encoder of that
    modality's unimodal baseline, trained alone (its own head) with `params`' training settings at `seed`."""
    for m in model.modalities:
        alone = train_run(task, Method("early", modalities=(m,)), {k: params[k] for k in TRAINING_OPTIONS},
                          seed, settings)
        model.encoders[m].load_state_dict(alone.model.encoders[m].state_dict())
