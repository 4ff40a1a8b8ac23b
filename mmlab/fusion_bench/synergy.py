"""The synergy task: only the interaction of the two modalities carries the label.

Each example keeps the image of one AV-Digits item and pairs it with a spoken digit of the same split
chosen by design: within each group of images of one digit, the digits heard cycle through a shuffled
0..9, so the digit heard is independent of the digit seen and each heard digit's parity is balanced
within every seen digit (to one example per group); the clip is drawn from that split's clips of the
digit heard. The label is the parity of the sum: y = (digit seen + digit heard) mod 2. Either modality
alone is therefore at chance (0.5) by construction; `Task.by_construction` states, per modality, the
accuracy on the test split of the best rule that knows that modality's digit exactly (computed from the
true digits; fitted to the test labels themselves, so it sits slightly above 0.5 by chance). A model that
adds one score per modality (late fusion of logits) cannot represent this XOR-like label; a fusion that
multiplies or attends across modalities can.
Lower noise than "avdigits" by default, so that each digit is readable and the interaction is the hard part.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from mmlab.fusion_bench.tasks import SPLIT_NAMES, AVDigitsConfig, Split, Task, avdigits_tokens, full_masks


@dataclass(frozen=True)
class SynergyConfig:
    image_noise: float = 0.1
    audio_noise: float = 1.0
    seed: int = 0


def single_reader_accuracy(known: torch.Tensor, labels: torch.Tensor) -> float:
    """The best accuracy of any rule that sees only `known` (an attribute per example) and predicts the label:
    for each value, the most frequent label among the examples with that value."""
    hits = 0
    for value in known.unique():
        hits += int(torch.bincount(labels[known == value]).max())
    return hits / len(labels)


@lru_cache(maxsize=4)
def synergy_task(config: SynergyConfig) -> Task:
    tokens = avdigits_tokens(AVDigitsConfig(image_noise=config.image_noise, audio_noise=config.audio_noise,
                                            seed=config.seed))
    splits, digits = {}, {}
    for code, split in enumerate(SPLIT_NAMES):
        image, audio, digit = tokens[split]
        g = torch.Generator().manual_seed(1000 * config.seed + code)
        heard = torch.empty_like(digit)
        for d in range(10):  # the digits heard cycle through a shuffled 0..9 within each digit seen
            group = (digit == d).nonzero().flatten()
            cycle = torch.cat([torch.randperm(10, generator=g) for _ in range(len(group) // 10 + 1)])
            heard[group] = cycle[: len(group)]
        partner = torch.empty_like(digit)
        for d in range(10):  # a clip of the digit heard, cycling through the split's clips of that digit
            need, clips = (heard == d).nonzero().flatten(), (digit == d).nonzero().flatten()
            rounds = len(need) // len(clips) + 1
            order = torch.cat([clips[torch.randperm(len(clips), generator=g)] for _ in range(rounds)])
            partner[need] = order[: len(need)]
        label = (digit + heard) % 2
        feats = {"image": image, "audio": audio[partner]}
        splits[split] = Split(feats, full_masks(feats), label)
        digits[split] = (digit, heard)
    seen, heard = digits["test"]
    labels = splits["test"].labels
    by_construction = {
        "image": f"chance (0.5): the parity of the digit heard is independent of the digit seen; the best rule "
                 f"knowing the digit seen scores {single_reader_accuracy(seen, labels):.3f} on test",
        "audio": f"chance (0.5): the digit seen is independent of the digit heard; the best rule knowing the digit "
                 f"heard scores {single_reader_accuracy(heard, labels):.3f} on test",
        "both": "reading both digits gives the label exactly (1.0)",
    }
    image, audio, _ = tokens["train"]
    return Task("synergy", ("image", "audio"), {"image": image.shape[-1], "audio": audio.shape[-1]}, 2,
                splits["train"], splits["val"], splits["test"], ("even", "odd"), by_construction=by_construction,
                notes={"config": config, "information": "synergistic (only the interaction carries the label)"})
