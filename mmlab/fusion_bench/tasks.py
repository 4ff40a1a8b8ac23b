"""The benchmark's tasks: token features per modality, split into train / validation / test.

- "avdigits": AV-Digits digit classification from an 8x8 image (16 patches of 2x2) and a spoken digit
  (16 log-mel frames), each modality noised so that neither alone suffices (redundant information).
- "vqa": Shapes-World VQA-lite: a question (word tokens, padded + masked) and a 32x32 image (16 patches
  of 8x8) -> an answer from `ANSWERS` (the question says what to read from the image).
- "synergy": the digit seen and the digit heard are drawn independently; the label is the parity of
  their sum (`mmlab.fusion_bench.synergy`), so only the interaction carries it.

Every task states in `Task.by_construction` what each modality alone can achieve, and why.
The validation split selects configurations and stops training early; the test split is read once per
selected configuration and seed (`mmlab.fusion_bench.protocol`). Features are computed once per process.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import Tensor, nn

TASKS = ("avdigits", "vqa", "synergy")
SPLIT_NAMES = ("train", "val", "test")


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
    """A classification task over token features. `by_construction`: modality -> what it alone can achieve
    (a sentence; the numbers in it are computed from the data's generating attributes, not from a model)."""

    name: str
    modalities: tuple[str, ...]
    feature_dims: dict[str, int]  # float features: per-token width; word ids: vocabulary size
    num_classes: int
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...] = ()
    by_construction: dict[str, str] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    @property
    def chance(self) -> float:
        """Accuracy of always predicting the most frequent training label, on the test split."""
        majority = int(torch.bincount(self.train.labels, minlength=self.num_classes).argmax())
        return float((self.test.labels == majority).float().mean())


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
    val_size: int = 400
    test_size: int = 400
    image_size: int = 32
    patch_size: int = 8
    seed: int = 0


def standardise(train: Tensor, *others: Tensor) -> list[Tensor]:
    """Zero-mean, unit-variance per feature using train statistics."""
    mean = train.mean(dim=(0, 1), keepdim=True)
    std = train.std(dim=(0, 1), keepdim=True).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def full_masks(features: dict[str, Tensor]) -> dict[str, Tensor]:
    return {m: torch.ones(x.shape[:2], dtype=torch.bool) for m, x in features.items()}


def _audio_tokens(audio: Tensor, config: AVDigitsConfig) -> Tensor:
    from mmlab.data.av_digits import SAMPLE_RATE
    from mmlab.preprocess.audio import mel_spectrogram

    mel = mel_spectrogram(audio, SAMPLE_RATE, n_mels=config.n_mels)  # (N, n_mels, frames)
    mel = 10.0 * torch.log10(mel.clamp_min(1e-10))  # dB
    mel = nn.functional.adaptive_avg_pool1d(mel, config.audio_tokens)  # (N, n_mels, audio_tokens)
    return mel.transpose(1, 2).contiguous()  # (N, audio_tokens, n_mels)


@lru_cache(maxsize=4)
def avdigits_tokens(config: AVDigitsConfig) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """split -> (image patches (N, 16, 4), log-mel tokens (N, 16, n_mels), digit (N,)), standardised with the
    train split's statistics."""
    from mmlab.data import AVDigits
    from mmlab.preprocess.image import patchify

    raw = {}
    for split in SPLIT_NAMES:
        data = AVDigits(split, image_noise=config.image_noise, audio_noise=config.audio_noise,
                        seed=config.seed).tensors()
        image = patchify(data["image"].float(), config.patch_size)  # (N, 16, 4)
        raw[split] = (image, _audio_tokens(data["audio"].float(), config), data["label"].long())
    images = standardise(*(raw[s][0] for s in SPLIT_NAMES))
    audio = standardise(*(raw[s][1] for s in SPLIT_NAMES))
    return {s: (images[i], audio[i], raw[s][2]) for i, s in enumerate(SPLIT_NAMES)}


@lru_cache(maxsize=4)
def _avdigits(config: AVDigitsConfig) -> Task:
    tokens = avdigits_tokens(config)

    def make(split):
        image, audio, label = tokens[split]
        feats = {"image": image, "audio": audio}
        return Split(feats, full_masks(feats), label)

    image, audio, _ = tokens["train"]
    reader = ("the digit is the label, so a perfect reader of this modality alone would score 1.0; the noise "
              f"(image std {config.image_noise}, audio {config.audio_noise} x RMS) is what keeps it from that")
    return Task("avdigits", ("image", "audio"), {"image": image.shape[-1], "audio": audio.shape[-1]}, 10,
                make("train"), make("val"), make("test"), tuple(str(i) for i in range(10)),
                by_construction={"image": reader, "audio": reader},
                notes={"config": config, "information": "redundant (both modalities carry the label)"})


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def question_prior_accuracy(train_questions, train_answers, questions, answers) -> float:
    """Accuracy of answering each question with its most frequent training answer (the best a model that
    reads only the question can do, up to unseen questions), on (`questions`, `answers`)."""
    counts: dict[str, dict[int, int]] = {}
    for q, a in zip(train_questions, train_answers):
        counts.setdefault(q, {}).setdefault(int(a), 0)
        counts[q][int(a)] += 1
    overall = torch.bincount(torch.as_tensor(list(train_answers))).argmax().item()
    hits = [int(max(counts[q], key=counts[q].get) if q in counts else overall) == int(a)
            for q, a in zip(questions, answers)]
    return sum(hits) / len(hits)


@lru_cache(maxsize=4)
def _vqa(config: VQAConfig) -> Task:
    from mmlab.data.shapes_world import ANSWERS, ShapesWorld
    from mmlab.preprocess.image import patchify

    raw = {}
    for split, size in zip(SPLIT_NAMES, (config.train_size, config.val_size, config.test_size)):
        ds = ShapesWorld(split, size=size, seed=config.seed, image_size=config.image_size, with_audio=False)
        raw[split] = ds.batch(list(range(size)))
    vocab = ["<pad>", "<unk>"] + sorted({w for q in raw["train"]["question"] for w in _words(q)})
    index = {w: i for i, w in enumerate(vocab)}
    max_len = max(len(_words(q)) for q in raw["train"]["question"])

    def encode(batch):
        ids = torch.zeros(len(batch["question"]), max_len, dtype=torch.long)
        for row, q in enumerate(batch["question"]):
            words = [index.get(w, 1) for w in _words(q)][:max_len]
            ids[row, : len(words)] = torch.tensor(words, dtype=torch.long)
        return patchify(batch["image"].float(), config.patch_size), ids  # (N, 16, 3*p*p), (N, max_len)

    encoded = {s: encode(raw[s]) for s in SPLIT_NAMES}
    images = standardise(*(encoded[s][0] for s in SPLIT_NAMES))

    def split(i, s):
        ids = encoded[s][1]
        return Split({"image": images[i], "text": ids},
                     {"image": torch.ones(images[i].shape[:2], dtype=torch.bool), "text": ids != 0},
                     raw[s]["answer_id"].long())

    prior = question_prior_accuracy(raw["train"]["question"], raw["train"]["answer_id"].tolist(),
                                    raw["test"]["question"], raw["test"]["answer_id"].tolist())
    by_construction = {
        "text": f"the question alone fixes the answer's type but not its value: answering each test question with "
                f"its most frequent training answer scores {prior:.3f}",
        "image": "the image alone does not say which attribute is asked for; no bound by construction "
                 "(the image-only baseline measures it)",
    }
    return Task("vqa", ("image", "text"), {"image": images[0].shape[-1], "text": len(vocab)}, len(ANSWERS),
                *(split(i, s) for i, s in enumerate(SPLIT_NAMES)), tuple(ANSWERS), by_construction=by_construction,
                notes={"config": config, "vocab": tuple(vocab), "question_prior_test": prior,
                       "information": "the question selects what to read from the image"})


def load_task(name: str, **config) -> Task:
    """Build (once per process, then cached) the task `name` (one of `TASKS`); `config`: the fields of
    AVDigitsConfig ("avdigits"), VQAConfig ("vqa") or SynergyConfig ("synergy")."""
    if name == "avdigits":
        return _avdigits(AVDigitsConfig(**config))
    if name == "vqa":
        return _vqa(VQAConfig(**config))
    if name == "synergy":
        from mmlab.fusion_bench.synergy import SynergyConfig, synergy_task

        return synergy_task(SynergyConfig(**config))
    raise KeyError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
