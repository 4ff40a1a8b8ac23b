"""Retrieval and classification metrics for joint embedding spaces, and caption metrics (BLEU-4, CIDEr-D).

Features are compared with dot products: pass L2-normalised features for cosine similarity.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from mmlab import validation


def _features(x: Tensor, name: str) -> Tensor:
    return validation.features(name, x).detach().float()


def _labels(y: Tensor | Sequence[int], n: int | None, name: str) -> Tensor:
    return validation.class_indices(name, y.detach().cpu() if isinstance(y, Tensor) else y, n)


def check_logistic_regression(C: float, max_iter: int) -> None:
    """A clear error unless C is finite and > 0 and max_iter a positive int: the settings of every linear probe
    (scikit-learn's LogisticRegression), checked before any features are computed."""
    validation.finite_float("C", C, low=0, low_open=True)
    validation.positive_int("max_iter", max_iter)


def recall_at_k(image_features: Tensor, text_features: Tensor, ks: Sequence[int] = (1, 5, 10),
                text_to_image: Tensor | Sequence[int] | None = None) -> dict[str, float]:
    """Image->text and text->image Recall@K.

    image_features (N_i, D), text_features (N_t, D); text_to_image (N_t,) gives the image index of each
    text (default: text j describes image j, needs N_t == N_i). Image->text: an image counts as found
    at K if any of its captions is among its K nearest texts. Text->image: the caption's own image is
    among its K nearest images. Returns {"i2t@K": ..., "t2i@K": ...} as fractions in [0, 1].
    """
    img, txt = _features(image_features, "image_features"), _features(text_features, "text_features")
    if isinstance(ks, str) or not isinstance(ks, Iterable):
        raise TypeError(f"ks must be a sequence of positive ints, got {type(ks).__name__} {ks!r}")
    ks = [validation.positive_int("ks", k) for k in ks]
    if not ks:
        raise ValueError("ks is empty; pass one or more K, e.g. (1, 5, 10)")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"width mismatch: image features {img.shape[1]} vs text features {txt.shape[1]}")
    if img.device != txt.device:
        raise ValueError(f"device mismatch: image_features on {img.device}, text_features on {txt.device}")
    n_i, n_t = len(img), len(txt)
    if text_to_image is None:
        if n_i != n_t:
            raise ValueError(f"{n_t} texts for {n_i} images: pass text_to_image to say which image each text describes")
        owner = torch.arange(n_t)
    else:
        owner = _labels(text_to_image, n_t, "text_to_image")
        if owner.max() >= n_i:
            raise ValueError(f"text_to_image values must be image indices in [0, {n_i}), got {int(owner.max())}")
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
    validation.require_callable("encode_text", encode_text)
    class_names = validation.str_list("class_names", class_names, single=False)
    templates = validation.str_list("templates", templates, single=False)
    validation.distinct("class_names", class_names)
    for t in templates:
        try:
            fills_in_the_name = t.format("a") != t.format("b")
        except (IndexError, KeyError, ValueError) as err:
            raise ValueError(f"template {t!r} is not a format string with one '{{}}' slot: {err!r}") from None
        if not fills_in_the_name:
            raise ValueError(f"every template needs a '{{}}' placeholder for the class name, got {t!r}")
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
    validation.boolean("return_predictions", return_predictions)
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

    check_logistic_regression(C, max_iter)
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
    """(C, C) int64 counts: row = true class, column = predicted class; `num_classes` defaults to the
    largest index + 1."""
    if num_classes is not None:
        validation.positive_int("num_classes", num_classes)
    y = _labels(labels, None, "labels")
    p = _labels(predictions, len(y), "predictions")
    top = int(max(p.max(), y.max())) + 1 if p.numel() else 0
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise ValueError(f"a class index {top - 1} is >= num_classes {num_classes}")
    return torch.bincount(y * num_classes + p, minlength=num_classes**2).view(num_classes, num_classes)


# ---- caption metrics: BLEU-4 and CIDEr-D ------------------------------------------------------------------
# Both take candidates: list[str] and references: list[list[str]] (one non-empty list per candidate), already
# lower-case and space-tokenised (words are what str.split() returns), and give the values of pycocoevalcap's
# Bleu(4) (its 4-gram score) and Cider on the same input, the scorers the COCO caption benchmark reports.

def _caption_corpus(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[tuple[list, list]]:
    """[(candidate words, [reference words, ...]), ...] after checking the two lists."""
    for name, value in (("candidates", candidates), ("references", references)):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} lists of references; one list each")
    if not candidates:
        raise ValueError("candidates is empty; the metrics need at least one caption")
    corpus = []
    for i, (cand, refs) in enumerate(zip(candidates, references)):
        if not isinstance(cand, str):
            raise TypeError(f"candidates[{i}] must be a str, got {type(cand).__name__}")
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty list of str, got {refs!r}")
        for r in refs:
            if not isinstance(r, str):
                raise TypeError(f"references[{i}] must hold str only, got {type(r).__name__} {r!r}")
        corpus.append((cand.split(), [r.split() for r in refs]))
    return corpus


def _ngram_counts(words: list[str], n: int = 4) -> dict[tuple[str, ...], int]:
    """Counts of every 1- to n-gram of `words`, by n then position (the order the sums below run in)."""
    counts: dict[tuple[str, ...], int] = {}
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            gram = tuple(words[i:i + k])
            counts[gram] = counts.get(gram, 0) + 1
    return counts


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (Papineni et al., 2002): the geometric mean of the clipped 1- to 4-gram precisions, pooled
    over the corpus, times the brevity penalty exp(1 - r/c) when the total candidate length c is below r, the
    sum over candidates of the reference length closest to each (the shorter on a tie).

    As pycocoevalcap's Bleu(4): each precision is (matches + 1e-15) / (candidate n-grams + 1e-9), which keeps
    an empty corpus finite (a corpus without a matching 4-gram scores about 0, not an error)."""
    tiny, small = 1e-15, 1e-9
    correct, guess = [0] * 4, [0] * 4
    cand_len = ref_len = 0
    for cand, refs in _caption_corpus(candidates, references):
        cand_len += len(cand)
        ref_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
        best: dict[tuple[str, ...], int] = {}
        for r in refs:
            for gram, count in _ngram_counts(r).items():
                best[gram] = max(best.get(gram, 0), count)
        for gram, count in _ngram_counts(cand).items():
            correct[len(gram) - 1] += min(count, best.get(gram, 0))
        for k in range(4):
            guess[k] += max(0, len(cand) - k)
    product = 1.0
    for k in range(4):
        product *= float(correct[k] + tiny) / (guess[k] + small)
    score = product ** (1.0 / 4)
    ratio = (cand_len + tiny) / (ref_len + small)
    return float(score * math.exp(1 - 1 / ratio)) if ratio < 1 else float(score)


def cider(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """CIDEr-D (Vedantam et al., 2015), as pycocoevalcap's Cider computes it.

    Each sentence becomes, for n = 1..4, a vector of its n-gram counts weighted by
    idf = log(number of items) - log(max(1, number of items whose references contain the n-gram)). Per item
    and n: the clipped cosine sum_g min(c_g, r_g) r_g / (|c| |r|) with each reference r, times the Gaussian
    length penalty exp(-(l_c - l_r)^2 / (2 * 6^2)); averaged over n and over the references, times 10; the
    corpus score is the mean over items. As in pycocoevalcap, a sentence's length l is its number of bigrams
    (words - 1, or 0), and a corpus of one item scores 0 (every idf is log 1 - log 1 = 0)."""
    corpus = [(_ngram_counts(c), [_ngram_counts(r) for r in refs]) for c, refs in
              _caption_corpus(candidates, references)]
    doc_freq: dict[tuple[str, ...], float] = {}
    for _, refs in corpus:
        for gram in {g for r in refs for g in r}:
            doc_freq[gram] = doc_freq.get(gram, 0.0) + 1.0
    log_items = np.log(float(len(corpus)))

    def tf_idf(counts: dict[tuple[str, ...], int]) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(4)]
        norm_sq = [0.0] * 4
        for gram, tf in counts.items():
            n = len(gram) - 1
            vec[n][gram] = float(tf) * (log_items - np.log(max(1.0, doc_freq.get(gram, 0.0))))
            norm_sq[n] += vec[n][gram] ** 2
        return vec, [np.sqrt(s) for s in norm_sq], sum(tf for g, tf in counts.items() if len(g) == 2)

    scores = []
    for cand, refs in corpus:
        c_vec, c_norm, c_len = tf_idf(cand)
        total = np.zeros(4)
        for ref in refs:
            r_vec, r_norm, r_len = tf_idf(ref)
            sim = np.zeros(4)
            for n in range(4):
                for gram, w in c_vec[n].items():
                    r_w = r_vec[n].get(gram, 0.0)
                    sim[n] += min(w, r_w) * r_w
                if c_norm[n] != 0 and r_norm[n] != 0:
                    sim[n] /= c_norm[n] * r_norm[n]
                sim[n] *= np.e ** (-(float(c_len - r_len) ** 2) / (2 * 6.0**2))
            total += sim
        scores.append(np.mean(total) / len(refs) * 10.0)
    return float(np.mean(np.array(scores)))


def _boxes(name: str, boxes: Tensor) -> Tensor:
    """An (N, 4) floating tensor of xyxy boxes with x1 >= x0 and y1 >= y0, finite (values read on the host only)."""
    validation.require_tensor(name, boxes)
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be floating point (x0, y0, x1, y1), got {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if validation.on_host(boxes) and len(boxes):
        values = boxes.detach()
        finite = torch.isfinite(values).all(1)
        if not finite.all():
            row = int((~finite).nonzero()[0])
            raise ValueError(f"{name} contains NaN or inf: row {row} is {values[row].tolist()}")
        bad = (values[:, 2] < values[:, 0]) | (values[:, 3] < values[:, 1])
        if bad.any():
            row = int(bad.nonzero()[0])
            raise ValueError(f"{name} row {row} is {values[row].tolist()}: need x1 >= x0 and y1 >= y0 (xyxy boxes)")
    return boxes


def _iou_parts(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    a, b = _boxes("a", a), _boxes("b", b)
    if a.device != b.device:
        raise ValueError(f"device mismatch: a on {a.device}, b on {b.device}")
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # (N,)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # (M,)
    low = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)  # (N, M)
    return inter, area_a[:, None] + area_b[None, :] - inter


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of every pair of xyxy boxes: a (N, 4), b (M, 4) -> (N, M).

    IoU = |A ∩ B| / |A ∪ B|, the formula of torchvision.ops.box_iou. Where the union is empty (two boxes of zero
    area) the IoU is 0 here (torchvision gives 0/0 = NaN). A box with x1 < x0 or y1 < y0, or a NaN/inf
    coordinate, is a ValueError (checked on CPU tensors). Differentiable.
    """
    inter, union = _iou_parts(a, b)
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU (Rezatofighi et al., CVPR 2019) of every pair of xyxy boxes: (N, 4), (M, 4) -> (N, M).

    GIoU = IoU - |C \\ (A ∪ B)| / |C| with C the smallest box enclosing A and B; it lies in (-1, 1] and, unlike
    IoU, still has a gradient when the boxes do not overlap (the term DETR's box loss uses, 1 - GIoU). Where C is
    empty (two identical zero-area boxes) the penalty term is taken as 0. Same checks as `box_iou`.
    """
    inter, union = _iou_parts(a, b)
    iou = torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))
    low = torch.minimum(a[:, None, :2], b[None, :, :2])  # (N, M, 2) enclosing box
    high = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    hull = (high - low).prod(-1)  # (N, M); corners already checked, so >= 0
    penalty = torch.where(hull > 0, (hull - union) / hull.clamp(min=torch.finfo(hull.dtype).tiny),
                          torch.zeros_like(hull))
    return iou - penalty
