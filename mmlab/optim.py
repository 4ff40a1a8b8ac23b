"""Optimizer settings shared by every training run: weight-decay parameter groups and the lr schedule.

    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay=0.1), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps=1000, schedule="cosine", warmup_steps=100))
"""
from __future__ import annotations

import math
import re

from torch import nn

SCHEDULES = ("constant", "cosine")

# Learned token and position tables held directly by a module: "cls", "pos", "latents", "bottleneck",
# and any name ending in "_token(s)", "_embed" or "_embedding(s)" ("cls_token", "pos_embed", "time_embed").
_TOKEN_LIKE = re.compile(r"(^|_)(cls|pos|latents|bottleneck|tokens?|embed|embeddings?)$")


def _decays(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    if param.ndim < 2 or isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return False
    return not _TOKEN_LIKE.search(name)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters of `model` in two optimizer groups: decayed and not decayed.

    The rule (as minGPT; open_clip exempts only < 2-D, norm, bias and logit-scale parameters, so it decays
    its token embedding): no weight decay for
      - parameters with fewer than 2 dimensions: biases, LayerNorm/BatchNorm weights, 0-d scalars such as
        the temperature `log_scale` and SigLIP's `logit_bias`, gates;
      - the weights of nn.Embedding (and nn.EmbeddingBag);
      - learned token and position tables: parameters named `cls`, `pos`, `latents`, `bottleneck`, or
        ending in `_token(s)`, `_embed`, `_embedding(s)` (e.g. `cls_token`, `pos_embed`, `time_embed`);
        inside an nn.ParameterDict/ParameterList the container's name counts.
    Every other parameter is decayed: the weight matrices of Linear, Conv and MultiheadAttention
    (`in_proj_weight`) and any other >= 2-D matrix (LoRA's `lora_A`/`lora_B`, low-rank fusion factors).

    Only parameters with `requires_grad` are included; a parameter shared by several modules (tied
    weights) appears once, classified where `model.named_parameters()` first meets it. Returns
    `[{"params", "param_names", "weight_decay": weight_decay}, {..., "weight_decay": 0.0}]`, leaving
    out a group that would be empty, ready for any torch.optim optimizer.
    """
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    groups = {True: {"params": [], "param_names": [], "weight_decay": float(weight_decay)},
              False: {"params": [], "param_names": [], "weight_decay": 0.0}}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            container = isinstance(module, (nn.ParameterDict, nn.ParameterList))
            name = module_name.rpartition(".")[2] if container else leaf
            group = groups[_decays(module, name, param)]
            group["params"].append(param)
            group["param_names"].append(f"{module_name}.{leaf}" if module_name else leaf)
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if len(grouped) != len(set(grouped)) or set(grouped) != trainable:
        raise RuntimeError("parameter_groups: the groups do not hold every trainable parameter exactly once")
    return [g for g in groups.values() if g["params"]]


def lr_factor(step: int, steps: int, schedule: str = "constant", warmup_steps: int = 0,
              min_lr_ratio: float = 0.0) -> float:
    """The multiple of the base lr used by optimizer step `step` (0-based, as LambdaLR counts) of `steps`.

    Linear warm-up over the first `warmup_steps` steps, from lr / warmup_steps to lr ((step + 1) /
    warmup_steps); then "constant" stays at 1, and "cosine" (CLIP's schedule) decays along half a cosine
    from 1 towards `min_lr_ratio`: min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * t)) / 2 with
    t = (step - warmup_steps) / (steps - warmup_steps), staying at min_lr_ratio past `steps`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    t = (step - warmup_steps) / max(1, steps - warmup_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
