"""Linear probes on frozen embeddings, and a classifier head on top of any encoder (for LoRA or full
fine-tuning with a gradient)."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.evaluate import check_logistic_regression, linear_probe_accuracy


def _slice(inputs: Any, start: int, stop: int) -> Any:
    if isinstance(inputs, Mapping):
        return {k: _slice(v, start, stop) for k, v in inputs.items()}
    return inputs[start:stop]


def _length(inputs: Any) -> int:
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("inputs is empty: a dict of inputs needs at least one entry")
        lengths = {_length(v) for v in inputs.values()}
        if len(lengths) != 1:
            raise ValueError(f"the inputs' entries have different lengths {sorted(lengths)}")
        return lengths.pop()
    try:
        return len(inputs)
    except TypeError:
        raise TypeError(f"inputs must be a tensor, a list or a dict of them, got {type(inputs).__name__}") from None


@torch.no_grad()
def extract_features(encode: Callable[[Any], Tensor], inputs: Any, batch_size: int = 256) -> Tensor:
    """encode(batch) -> (b, D) over `inputs` (a tensor, a list, or a dict of equally long tensors) in
    batches, with gradients off. Returns (N, D) float32 on the CPU. Put the model in eval mode first."""
    validation.require_callable("encode", encode)
    validation.positive_int("batch_size", batch_size)
    n = _length(inputs)
    if n == 0:
        raise ValueError("no inputs to encode")
    chunks = []
    for start in range(0, n, batch_size):
        z = encode(_slice(inputs, start, min(start + batch_size, n)))
        if not isinstance(z, Tensor) or z.ndim != 2:
            raise ValueError(f"encode must return (B, D) features, got {tuple(getattr(z, 'shape', ()))}")
        chunks.append(z.detach().float().cpu())
    return torch.cat(chunks)  # (N, D)


def linear_probe(encode: Callable[[Any], Tensor], train_inputs: Any, train_labels: Tensor | Sequence[int],
                 test_inputs: Any, test_labels: Tensor | Sequence[int], C: float = 1.0, max_iter: int = 1000,
                 batch_size: int = 256) -> float:
    """Accuracy of a logistic regression (scikit-learn) on frozen features: the encoder does not change."""
    check_logistic_regression(C, max_iter)
    xtr = extract_features(encode, train_inputs, batch_size)
    xte = extract_features(encode, test_inputs, batch_size)
    return linear_probe_accuracy(xtr, train_labels, xte, test_labels, C=C, max_iter=max_iter)


def probe_head(features: Tensor, labels: Tensor | Sequence[int], C: float = 1.0, max_iter: int = 1000) -> nn.Linear:
    """An nn.Linear equal to a logistic regression fitted on standardised `features` (N, D), with the
    standardisation folded into its weights: a head to start fine-tuning from ("linear probe, then
    fine-tune", Kumar et al., 2022), or to use as the probe itself."""
    from sklearn.linear_model import LogisticRegression

    validation.require_tensor("features", features)
    x = validation.features("features", features.detach().cpu()).double()
    y = validation.class_indices("labels", labels, len(x)).cpu()
    check_logistic_regression(C, max_iter)
    classes = torch.unique(y)
    if len(classes) < 2 or not torch.equal(classes, torch.arange(len(classes))):
        raise ValueError(f"labels must be 0..K-1 with K >= 2 all present, got classes {classes.tolist()}")
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-12)
    clf = LogisticRegression(C=C, max_iter=max_iter).fit(((x - mean) / std).numpy(), y.numpy())
    w = torch.from_numpy(clf.coef_) / std  # (K, D), or (1, D) for two classes
    b = torch.from_numpy(clf.intercept_) - w @ mean
    if len(classes) == 2:  # sklearn keeps one logit for binary problems: logits (-z/2, z/2) give the same softmax
        w, b = torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
    head = nn.Linear(x.shape[1], len(classes))
    with torch.no_grad():
        head.weight.copy_(w.float())
        head.bias.copy_(b.float())
    return head


class Classifier(nn.Module):
    """A linear head on an encoder: logits = head(encode(x)). `encode` names a method of `backbone`
    (e.g. "pooled" of an encoder; default: its forward); `head` may be given (e.g. from `probe_head`).
    The backbone is kept as it is, so after fine-tuning it can still be used (and measured) for its
    original task."""

    def __init__(self, backbone: nn.Module, in_dim: int, num_classes: int, encode: str | None = None,
                 head: nn.Linear | None = None):
        super().__init__()
        validation.require_module("backbone", backbone)
        validation.positive_int("in_dim", in_dim)
        validation.int_in_range("num_classes", num_classes, 2, 2**31 - 1)
        if encode is not None and not isinstance(encode, str):
            raise TypeError(f"encode must be the name of a method (str) or None, got {type(encode).__name__}")
        if encode is not None and not callable(getattr(backbone, encode, None)):
            raise AttributeError(f"{type(backbone).__name__} has no method {encode!r}")
        if head is not None and not isinstance(head, nn.Linear):
            raise TypeError(f"head must be an nn.Linear or None, got {type(head).__name__}")
        self.backbone, self.encode = backbone, encode
        if head is not None and (head.in_features, head.out_features) != (in_dim, num_classes):
            raise ValueError(f"head maps {head.in_features} -> {head.out_features}, expected {in_dim} -> {num_classes}")
        self.head = head if head is not None else nn.Linear(in_dim, num_classes)

    def features(self, x: Any) -> Tensor:
        z = getattr(self.backbone, self.encode)(x) if self.encode else self.backbone(x)
        if z.ndim != 2 or z.shape[1] != self.head.in_features:
            raise ValueError(f"the backbone gave features {tuple(z.shape)}; "
                             f"the head expects (B, {self.head.in_features})")
        return z  # (B, D)

    def forward(self, x: Any) -> Tensor:
        return self.head(self.features(x))  # (B, num_classes)


@torch.no_grad()
def accuracy(model: nn.Module, inputs: Any, labels: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of a classifier's logits over `inputs` (eval mode, no gradients; mode restored)."""
    validation.require_module("model", model)
    labels = validation.class_indices("labels", labels, _length(inputs)).cpu()
    was_training = model.training
    model.eval()
    try:
        logits = extract_features(model, inputs, batch_size)  # (N, C)
    finally:
        model.train(was_training)
    return float((logits.argmax(dim=1) == labels).float().mean())
