"""A model's identity: a digest of its weights, so features, exported graphs and indexes can say which model
made them (and a loaded index can refuse queries from another model)."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from mmlab import validation


def model_fingerprint(model: nn.Module) -> str:
    """"sha256:<first 16 hex digits>" of the SHA-256 over every state_dict entry's name, dtype, shape and bytes,
    in state_dict order. Equal for two models with the same architecture names and the same weights; changes
    when any weight changes (even by one bit)."""
    validation.require_module("model", model)
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + digest.hexdigest()[:16]
