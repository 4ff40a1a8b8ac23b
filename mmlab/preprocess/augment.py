"""Data augmentation per modality and across modalities, seeded by a `torch.Generator` (or a numpy one for audio).

Images `(B, C, H, W)` float: `random_resized_crop` (the Inception crop: Szegedy et al., 2015), `random_flip`,
`rand_augment` (a small RandAugment: N operations drawn uniformly, one shared magnitude; Cubuk et al., 2020).
Text: `token_masking` (ids replaced by a mask id), `synonym_replacement` (on words, as in EDA: Wei & Zou, 2019).
Audio (1-D float waveforms): `time_stretch` (librosa's phase vocoder) and `pitch_shift` (librosa: that stretch, then
resampling), `add_noise` at a given SNR.
Across modalities: `mixup` (Zhang et al., 2018) mixes every modality of a batch with one coefficient and one
pairing, so the mixed image goes with the mixed sound; modality dropout is `mmlab.fusion.modality_dropout`.
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmlab.validation import finite_float, positive_int


def _images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (B, C, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    return images


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def random_resized_crop(images: Tensor, size: int, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> Tensor:
    """Per image: a crop covering a uniform fraction `scale` of the area with a log-uniform aspect `ratio`, resized
    (bilinear) to `size` x `size`. As in the Inception crop, 10 draws are tried; if none fits, the largest centred
    crop within `ratio` is taken. Returns (B, C, size, size)."""
    _images(images)
    positive_int("size", size)
    if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
    b, _, h, w = images.shape
    out = []
    for i in range(b):
        areas = _uniform(10, *scale, generator) * h * w
        aspects = torch.exp(_uniform(10, math.log(ratio[0]), math.log(ratio[1]), generator))
        offsets = torch.rand(10, 2, generator=generator, dtype=torch.float64)
        for area, aspect, (u, v) in zip(areas, aspects, offsets):
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top, left = int(u * (h - ch + 1)), int(v * (w - cw + 1))
                break
        else:  # the fallback: centred, as large as the ratio bounds allow
            aspect = min(max(w / h, ratio[0]), ratio[1])
            cw, ch = (w, round(w / aspect)) if w / h < aspect else (round(h * aspect), h)
            cw, ch = min(cw, w), min(ch, h)
            top, left = (h - ch) // 2, (w - cw) // 2
        crop = images[i: i + 1, :, top: top + ch, left: left + cw]
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(out)


def random_flip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Each image mirrored left-right with probability `p` (only where the labels allow: not for "left of")."""
    _images(images)
    finite_float("p", p, 0, 1)
    flip = torch.rand(len(images), generator=generator) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _affine(image: Tensor, angle_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> Tensor:
    """Rotate by `angle_deg` and translate by (tx, ty) fractions of the size; zeros where nothing maps."""
    a = math.radians(angle_deg)
    theta = torch.tensor([[math.cos(a), -math.sin(a), -2 * tx], [math.sin(a), math.cos(a), -2 * ty]],
                         dtype=image.dtype)[None]
    grid = F.affine_grid(theta, list(image[None].shape), align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


# RandAugment's operations on one image in [0, 1], each given the magnitude m in [0, 1] and a random sign
RAND_AUGMENT_OPS = {
    "identity": lambda x, m, s: x,
    "brightness": lambda x, m, s: (x * (1 + s * 0.9 * m)).clamp(0, 1),
    "contrast": lambda x, m, s: ((x - x.mean()) * (1 + s * 0.9 * m) + x.mean()).clamp(0, 1),
    "solarize": lambda x, m, s: torch.where(x > 1 - m, 1 - x, x),  # pixels above the threshold inverted
    "rotate": lambda x, m, s: _affine(x, angle_deg=s * 30 * m),
    "translate_x": lambda x, m, s: _affine(x, tx=s * 0.3 * m),
    "translate_y": lambda x, m, s: _affine(x, ty=s * 0.3 * m),
}


def rand_augment(images: Tensor, num_ops: int = 2, magnitude: float = 9, ops: Sequence[str] | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Per image, `num_ops` operations drawn uniformly (with replacement) from `ops` (default: all of
    `RAND_AUGMENT_OPS`), each at `magnitude` on RandAugment's 0-30 scale with a random sign. Images in [0, 1]."""
    _images(images)
    positive_int("num_ops", num_ops)
    finite_float("magnitude", magnitude, 0, 30)
    names = list(ops or RAND_AUGMENT_OPS)
    unknown = sorted(set(names) - set(RAND_AUGMENT_OPS))
    if unknown:
        raise ValueError(f"unknown RandAugment operations {unknown}; available: {', '.join(RAND_AUGMENT_OPS)}")
    m = magnitude / 30
    out = []
    for image in images:
        picks = torch.randint(len(names), (num_ops,), generator=generator)
        signs = torch.randint(2, (num_ops,), generator=generator) * 2 - 1
        for k, s in zip(picks.tolist(), signs.tolist()):
            image = RAND_AUGMENT_OPS[names[k]](image, m, s)
        out.append(image)
    return torch.stack(out)


def token_masking(ids: Tensor, attention_mask: Tensor, p: float, mask_id: int, keep_ids: Sequence[int] = (),
                  generator: torch.Generator | None = None) -> Tensor:
    """Each real token (attention_mask True, id not in `keep_ids`, e.g. [CLS]/[SEP]) replaced by `mask_id` with
    probability `p`; padding is never touched. Returns new ids (B, L)."""
    if ids.shape != attention_mask.shape or ids.dim() != 2:
        raise ValueError(f"ids and attention_mask must both be (B, L), got {tuple(ids.shape)} and "
                         f"{tuple(attention_mask.shape)}")
    finite_float("p", p, 0, 1)
    eligible = attention_mask.bool() & ~torch.isin(ids, torch.tensor(list(keep_ids), dtype=ids.dtype))
    hit = (torch.rand(ids.shape, generator=generator) < p) & eligible
    return ids.masked_fill(hit, mask_id)


def synonym_replacement(text: str, synonyms: Mapping[str, Sequence[str]], p: float, rng: random.Random) -> str:
    """Each word of `text` (split on spaces) that has synonyms replaced, with probability `p`, by one of them
    drawn uniformly."""
    finite_float("p", p, 0, 1)
    words = text.split(" ")
    return " ".join(rng.choice(list(synonyms[w])) if w in synonyms and synonyms[w] and rng.random() < p else w
                    for w in words)


def _waveform(waveform) -> np.ndarray:
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise ValueError(f"waveform must be a finite 1-D array, got shape {x.shape}")
    return x


def time_stretch(waveform, rate: float) -> np.ndarray:
    """Faster (`rate` > 1, shorter) or slower, pitch kept (librosa's phase vocoder); length about len / rate."""
    import librosa

    finite_float("rate", rate, low=0.1, high=10)
    return librosa.effects.time_stretch(_waveform(waveform), rate=rate)


def pitch_shift(waveform, sample_rate: int, semitones: float) -> np.ndarray:
    """Every frequency multiplied by 2 ** (semitones / 12), length kept (librosa)."""
    import librosa

    positive_int("sample_rate", sample_rate)
    finite_float("semitones", semitones, -24, 24)
    return librosa.effects.pitch_shift(_waveform(waveform), sr=sample_rate, n_steps=semitones)


def add_noise(waveform, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise scaled so that signal power / noise power = 10 ** (snr_db / 10)."""
    x = _waveform(waveform)
    finite_float("snr_db", snr_db)
    power = float(np.mean(x.astype(np.float64) ** 2))
    if power == 0:
        raise ValueError("waveform is silent: a signal-to-noise ratio is undefined")
    noise = rng.standard_normal(x.shape)
    noise *= math.sqrt(power / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return (x + noise).astype(np.float32)


def mixup(batch: Mapping[str, Tensor], targets: Tensor, alpha: float = 0.2,
          generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor, float]:
    """MixUp across modalities: lam ~ Beta(alpha, alpha) and one random pairing for the whole batch; every float
    modality x becomes lam * x + (1 - lam) * x[pair], and the (B, classes) soft `targets` likewise.
    Returns (mixed batch, mixed targets, lam)."""
    finite_float("alpha", alpha, low=0, low_open=True)
    if targets.dim() != 2 or not targets.is_floating_point():
        raise ValueError(f"targets must be float (B, classes) (e.g. one-hot), got {tuple(targets.shape)}")
    for name, x in batch.items():
        if not x.is_floating_point() or len(x) != len(targets):
            raise ValueError(f"modality {name!r} must be a float tensor with {len(targets)} rows (MixUp mixes "
                             f"values; mix word ids through their embeddings), got {x.dtype} {tuple(x.shape)}")
    seed = int(torch.randint(2**62, (1,), generator=generator))  # the Beta draw follows the torch generator
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    pair = torch.randperm(len(targets), generator=generator)
    mixed = {name: lam * x + (1 - lam) * x[pair] for name, x in batch.items()}
    return mixed, lam * targets + (1 - lam) * targets[pair], lam
