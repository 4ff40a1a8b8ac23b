"""Retrieval and classification metrics for joint embedding spaces.

Features are compared with dot products: pass L2-normalised features for cosine similarity.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from mmlab import validation


def _features(x: Tensor, name: str) -> Tensor:
    return validation.features(name, x).detach().float()


def _labels(y: Tensor | Sequence[int], n: int, name: str) -> Tensor:
    y = torch.as_tensor(y).detach().cpu()
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices, got {y.dtype}")
    return y.long()


def recall_at_k(image_features: Tensor, text_features: Tensor, ks: Sequence[int] = (1, 5, 10),
                text_to_image: Tensor | Sequence[int] | None = None) -> dict[str, float]:
    """Image->text and text->image Recall@K.

    image_features (N_i, D), text_features (N_t, D); text_to_image (N_t,) gives the image index of each
    text (default: text j describes image j, needs N_t == N_i). Image->text: an image counts as found
    at K if any of its captions is among its K nearest texts. Text->image: the caption's own image is
    among its K nearest images. Returns {"i2t@K": ..., "t2i@K": ...} as fractions in [0, 1].
    """
    img, txt = _features(image_features, "image_features"), _features(text_features, "text_features")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"width mismatch: image features {img.shape[1]} vs text features {txt.shape[1]}")
    n_i, n_t = len(img), len(txt)
    if text_to_image is None:
        if n_i != n_t:
            raise ValueError(f"{n_t} texts for {n_i} images: pass text_to_image to say which image each text describes")
        owner = torch.arange(n_t)
    else:
        owner = _labels(text_to_image, n_t, "text_to_image")
        if owner.min() < 0 or owner.max() >= n_i:
            raise ValueError(f"text_to_image values must be in [0, {n_i})")
    for k in ks:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"every K must be a positive int, got {k!r}")
    sim = (img @ txt.T).cpu()  # (N_i, N_t)
    owner_of = owner[None, :] == torch.arange(n_i)[:, None]  # (N_i, N_t): text t belongs to image i
    # rank of the best caption of each image = number of texts scoring strictly higher than it
    best = sim.masked_fill(~owner_of, float("-inf")).max(dim=1).values  # (N_i,)
    i2t_rank = (sim > best[:, None]).sum(dim=1)  # (N_i,)
    own = sim[owner, torch.arange(n_t)]  # (N_t,) score of each text with its own image
    t2i_rank = (sim > own[None, :]).sum(dim=0)  # (N_t,)
    has_caption = owner_of.any(dim=1)
    out = {}
    for k in ks:
        out[f"i2t@{k}"] = float((i2t_rank[has_caption] < k).float().mean())
        out[f"t2i@{k}"] = float((t2i_rank < k).float().mean())
    return out


def zero_shot_classifier(encode_text: Callable[[list[str]], Tensor], class_names: Sequence[str],
                         templates: Sequence[str] = ("{}",)) -> Tensor:
    """Class embeddings (C, D): each class's prompts (templates filled with its name) encoded, normalised,
    averaged over templates and renormalised (prompt ensembling, Radford et al., 2021, section 3.1.4)."""
    if not class_names:
        raise ValueError("class_names is empty")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"every template needs a '{{}}' placeholder for the class name, got {list(templates)}")
    prompts = [t.format(name) for name in class_names for t in templates]
    z = _features(encode_text(prompts), "encode_text(prompts)")
    if len(z) != len(prompts):
        raise ValueError(f"encode_text returned {len(z)} rows for {len(prompts)} prompts")
    z = torch.nn.functional.normalize(z, dim=-1).view(len(class_names), len(templates), -1)
    return torch.nn.functional.normalize(z.mean(dim=1), dim=-1)  # (C, D)


def zero_shot_accuracy(image_features: Tensor, labels: Tensor | Sequence[int],
                       encode_text: Callable[[list[str]], Tensor], class_names: Sequence[str],
                       templates: Sequence[str] = ("{}",), return_predictions: bool = False):
    """Accuracy of classifying images by their nearest class prompt embedding (ensembled over templates)."""
    img = _features(image_features, "image_features")
    y = _labels(labels, len(img), "labels")
    classes = zero_shot_classifier(encode_text, class_names, templates).to(img.device)
    if classes.shape[1] != img.shape[1]:
        raise ValueError(f"width mismatch: image features {img.shape[1]} vs text features {classes.shape[1]}")
    pred = (img @ classes.T).argmax(dim=1).cpu()  # (N,)
    acc = float((pred == y).float().mean())
    return (acc, pred) if return_predictions else acc


def linear_probe_accuracy(train_features: Tensor, train_labels: Tensor | Sequence[int], test_features: Tensor,
                          test_labels: Tensor | Sequence[int], C: float = 1.0, max_iter: int = 1000) -> float:
    """Test accuracy of a scikit-learn LogisticRegression fitted on frozen (standardised) train features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = _features(train_features, "train_features"), _features(test_features, "test_features")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"width mismatch: train features {xtr.shape[1]} vs test features {xte.shape[1]}")
    ytr, yte = _labels(train_labels, len(xtr), "train_labels"), _labels(test_labels, len(xte), "test_labels")
    if len(torch.unique(ytr)) < 2:
        raise ValueError("train_labels has a single class; a linear probe needs at least two")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(xtr.cpu().numpy(), ytr.numpy())
    return float(np.mean(clf.predict(xte.cpu().numpy()) == yte.numpy()))


def confusion_matrix(predictions: Tensor | Sequence[int], labels: Tensor | Sequence[int],
                     num_classes: int | None = None) -> Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    y = torch.as_tensor(labels).cpu()
    p = _labels(predictions, len(y), "predictions")
    y = _labels(y, len(p), "labels")
    if (p.numel() and p.min() < 0) or (y.numel() and y.min() < 0):
        raise ValueError("class indices must be non-negative")
    top = int(max(p.max(), y.max())) + 1 if p.numel() else 0
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise ValueError(f"a class index {top - 1} is >= num_classes {num_classes}")
    return torch.bincount(y * num_classes + p, minlength=num_classes**2).view(num_classes, num_classes)
