"""The two fusion benchmark tasks, their precomputed token features and small modality encoders.

- "avdigits": AV-Digits digit classification from an 8x8 image (16 patches of 2x2) and a spoken
  digit (log-mel frames), each modality noised so that neither alone suffices.
- "vqa": Shapes-World VQA-lite: a question (word tokens, padded + masked) and a 32x32 image
  (16 patches of 8x8) -> an answer from `ANSWERS`.

Features are computed once per process (`load_task` caches) so each training run takes seconds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import Tensor, nn

from mmlab.fusion.base import modality_dropout
from mmlab.fusion.registry import build_fusion

TASKS = ("avdigits", "vqa")


@dataclass
class Split:
    """Token features per modality: float (N, N_m, F_m) or word ids long (N, N_m); masks (N, N_m); labels (N,)."""

    features: dict[str, Tensor]
    masks: dict[str, Tensor]
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: Tensor) -> "Split":
        return Split({m: x[index] for m, x in self.features.items()},
                     {m: k[index] for m, k in self.masks.items()}, self.labels[index])


@dataclass
class Task:
    name: str
    modalities: tuple[str, ...]
    feature_dims: dict[str, int]  # float features: per-token width; word ids: vocabulary size
    num_classes: int
    train: Split
    test: Split
    class_names: tuple[str, ...] = ()
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AVDigitsConfig:
    image_noise: float = 0.3  # std on [0, 1] pixels
    audio_noise: float = 3.0  # std relative to the clip's RMS (about -10 dB SNR)
    patch_size: int = 2
    n_mels: int = 32
    audio_tokens: int = 16
    seed: int = 0


@dataclass(frozen=True)
class VQAConfig:
    train_size: int = 2000
    test_size: int = 400
    image_size: int = 32
    patch_size: int = 8
    seed: int = 0


def _standardise(train: Tensor, *others: Tensor) -> list[Tensor]:
    """Zero-mean, unit-variance per feature using train statistics."""
    mean = train.mean(dim=(0, 1), keepdim=True)
    std = train.std(dim=(0, 1), keepdim=True).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def _audio_tokens(audio: Tensor, config: AVDigitsConfig) -> Tensor:
    from mmlab.data.av_digits import SAMPLE_RATE
    from mmlab.preprocess.audio import mel_spectrogram

    mel = mel_spectrogram(audio, SAMPLE_RATE, n_mels=config.n_mels)  # (N, n_mels, frames)
    mel = 10.0 * torch.log10(mel.clamp_min(1e-10))  # dB
    mel = nn.functional.adaptive_avg_pool1d(mel, config.audio_tokens)  # (N, n_mels, audio_tokens)
    return mel.transpose(1, 2).contiguous()  # (N, audio_tokens, n_mels)


@lru_cache(maxsize=4)
def _avdigits(config: AVDigitsConfig) -> Task:
    from mmlab.data import AVDigits
    from mmlab.preprocess.image import patchify

    splits = {}
    for split in ("train", "test"):
        data = AVDigits(split, image_noise=config.image_noise, audio_noise=config.audio_noise,
                        seed=config.seed).tensors()
        image = patchify(data["image"].float(), config.patch_size)  # (N, 16, 4)
        splits[split] = (image, _audio_tokens(data["audio"].float(), config), data["label"].long())
    (tr_img, tr_aud, tr_y), (te_img, te_aud, te_y) = splits["train"], splits["test"]
    tr_img, te_img = _standardise(tr_img, te_img)
    tr_aud, te_aud = _standardise(tr_aud, te_aud)

    def make(img, aud, y):
        feats = {"image": img, "audio": aud}
        return Split(feats, {m: torch.ones(x.shape[:2], dtype=torch.bool) for m, x in feats.items()}, y)

    return Task("avdigits", ("image", "audio"), {"image": tr_img.shape[-1], "audio": tr_aud.shape[-1]}, 10,
                make(tr_img, tr_aud, tr_y), make(te_img, te_aud, te_y), tuple(str(i) for i in range(10)),
                notes={"config": config})


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@lru_cache(maxsize=4)
def _vqa(config: VQAConfig) -> Task:
    from mmlab.data.shapes_world import ANSWERS, ShapesWorld
    from mmlab.preprocess.image import patchify

    raw = {}
    for split, size in (("train", config.train_size), ("test", config.test_size)):
        ds = ShapesWorld(split, size=size, seed=config.seed, image_size=config.image_size, with_audio=False)
        raw[split] = ds.batch(list(range(size)))
    vocab = ["<pad>", "<unk>"] + sorted({w for q in raw["train"]["question"] for w in _words(q)})
    index = {w: i for i, w in enumerate(vocab)}
    max_len = max(len(_words(q)) for q in raw["train"]["question"])

    def make(batch):
        ids = torch.zeros(len(batch["question"]), max_len, dtype=torch.long)
        for row, q in enumerate(batch["question"]):
            words = [index.get(w, 1) for w in _words(q)][:max_len]
            ids[row, : len(words)] = torch.tensor(words, dtype=torch.long)
        image = patchify(batch["image"].float(), config.patch_size)  # (N, 16, 3*p*p)
        return image, ids, batch["answer_id"].long()

    (tr_img, tr_ids, tr_y), (te_img, te_ids, te_y) = make(raw["train"]), make(raw["test"])
    tr_img, te_img = _standardise(tr_img, te_img)

    def split(img, ids, y):
        return Split({"image": img, "text": ids},
                     {"image": torch.ones(img.shape[:2], dtype=torch.bool), "text": ids != 0}, y)

    return Task("vqa", ("image", "text"), {"image": tr_img.shape[-1], "text": len(vocab)}, len(ANSWERS),
                split(tr_img, tr_ids, tr_y), split(te_img, te_ids, te_y), tuple(ANSWERS),
                notes={"config": config, "vocab": tuple(vocab)})


def load_task(name: str, **config) -> Task:
    """Build (once per process, then cached) the task `name` ("avdigits" or "vqa")."""
    if name == "avdigits":
        return _avdigits(AVDigitsConfig(**config))
    if name == "vqa":
        return _vqa(VQAConfig(**config))
    raise KeyError(f"unknown task {name!r}; available: {', '.join(TASKS)}")


class TokenEncoder(nn.Module):
    """Small per-modality encoder: features (or word ids) + learned positions -> token-wise MLP -> (B, N, width)."""

    def __init__(self, feature_dim: int, max_tokens: int, width: int = 32, words: bool = False):
        super().__init__()
        self.embed = nn.Embedding(feature_dim, width) if words else nn.Linear(feature_dim, width)
        self.pos = nn.Parameter(0.02 * torch.randn(1, max_tokens, width))
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)  # (B, N, width)
        return self.mlp(h + self.pos[:, : h.shape[1]])  # (B, N, width)


class FusionModel(nn.Module):
    """Modality encoders of token width `width` feeding one registered fusion, built with `fusion_options`
    (its own options: a `width` there is the fusion's); optional modality dropout on the fused tokens."""

    def __init__(self, task: Task, fusion: str, modalities: tuple[str, ...] | None = None, width: int = 32,
                 fusion_options: dict | None = None):
        super().__init__()
        self.modalities = tuple(modalities or task.modalities)
        unknown = set(self.modalities) - set(task.modalities)
        if unknown:
            raise ValueError(f"task {task.name!r} has no modalities {sorted(unknown)}; it has {task.modalities}")
        self.encoders = nn.ModuleDict({
            m: TokenEncoder(task.feature_dims[m], task.train.features[m].shape[1], width,
                            words=not task.train.features[m].is_floating_point())
            for m in self.modalities
        })
        self.fusion = build_fusion(fusion, {m: width for m in self.modalities}, task.num_classes,
                                   **(fusion_options or {}))

    def tokens(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: self.encoders[m](features[m]) for m in self.modalities}

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor], drop: tuple[str, ...] = (),
                dropout_p: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Logits (B, classes). `drop`: modalities replaced by zeros; `dropout_p`: random modality dropout."""
        tokens = self.tokens(features)
        for m in drop:
            if m in tokens:
                tokens[m] = torch.zeros_like(tokens[m])
        if dropout_p > 0:
            tokens = modality_dropout(tokens, dropout_p, generator)
        return self.fusion(tokens, {m: masks[m] for m in self.modalities})
