"""What is measured on a trained model: accuracy (clean, a modality dropped or noised), FLOPs, latency."""
from __future__ import annotations

import statistics
import time

import torch

from mmlab import validation
from mmlab.fusion_bench.model import FusionModel
from mmlab.fusion_bench.tasks import Split

WORD_NOISE = 0.5  # fraction of word tokens replaced by random words when "noising" text


def noised(split: Split, modality: str, level: float, generator: torch.Generator,
           vocab_size: int | None = None) -> Split:
    """A copy of `split` with `modality` noised (floats: + N(0, level^2); word ids: random replacements)."""
    validation.finite_float("level", level, low=0)
    features = dict(split.features)
    x = features[modality]
    if x.is_floating_point():
        features[modality] = x + level * torch.randn(x.shape, generator=generator)
    else:
        replace = (torch.rand(x.shape, generator=generator) < WORD_NOISE) & split.masks[modality]
        random_ids = torch.randint(2, vocab_size or int(x.max()) + 1, x.shape, generator=generator)  # 0, 1: pad, unk
        features[modality] = torch.where(replace, random_ids, x)
    return Split(features, split.masks, split.labels)


@torch.no_grad()
def accuracy(model: FusionModel, split: Split, drop: tuple[str, ...] = ()) -> float:
    """Top-1 accuracy on `split` (eval mode), with the modalities in `drop` zeroed."""
    was_training = model.training
    model.eval()
    logits = model(split.features, split.masks, drop=drop)
    model.train(was_training)
    return float((logits.argmax(-1) == split.labels).float().mean())


def count_flops(model: FusionModel, split: Split, batch: int = 16) -> float:
    """Forward FLOPs per sample (attention through the math kernel so the counter sees its matmuls)."""
    validation.positive_int("batch", batch)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    part = split.take(torch.arange(min(batch, len(split))))
    model.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(part.features, part.masks)  # grad enabled: keeps torch's fused inference fast path out
    return counter.get_total_flops() / len(part)


@torch.no_grad()
def latency_ms(model: FusionModel, split: Split, batch: int, repeats: int) -> float:
    """Median wall time (ms) of `repeats` forward passes of the first `batch` examples, after 2 warm-up passes."""
    validation.positive_int("batch", batch)
    validation.positive_int("repeats", repeats)
    part = split.take(torch.arange(min(batch, len(split))))
    model.eval()
    for _ in range(2):
        model(part.features, part.masks)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(part.features, part.masks)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)
