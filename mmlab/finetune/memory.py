"""What a training step keeps in memory, counted exactly (device-independent): parameters, gradients,
AdamW state, and the activations autograd saves for the backward pass."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mmlab import validation


def _unique_params(model: nn.Module) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    return list(seen.values())


def saved_activation_bytes(fn: Callable[[], Tensor], exclude: list[Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for backward while `fn()` runs, each storage counted once,
    leaving out the storages of `exclude` (pass the parameters: they are counted as weights)."""
    validation.require_callable("fn", fn)
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def training_memory(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batch: Any,
                    optimizer_slots: int = 2) -> dict[str, int]:
    """Bytes held during one training step of `loss_fn(model, batch)`: "weights" (all parameters),
    "gradients" and "optimizer" (`optimizer_slots` tensors per trainable parameter: 2 for Adam/AdamW),
    "activations" (saved for backward), and their "total". Runs one forward pass, no backward."""
    validation.require_module("model", model)
    validation.require_callable("loss_fn", loss_fn)
    validation.non_negative_int("optimizer_slots", optimizer_slots)
    params = _unique_params(model)
    trainable = [p for p in params if p.requires_grad]
    weights = sum(p.numel() * p.element_size() for p in params)
    grads = sum(p.numel() * p.element_size() for p in trainable)
    activations = saved_activation_bytes(lambda: loss_fn(model, batch), exclude=params)
    out = {"weights": weights, "gradients": grads, "optimizer": optimizer_slots * grads, "activations": activations}
    out["total"] = sum(out.values())
    return out
