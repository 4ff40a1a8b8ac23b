"""AV-Digits: scikit-learn's 8x8 handwritten digits paired with spoken digits.

The speech was rendered once with espeak-ng by `data/build_av_digits.py` (30 "speakers":
voice, variant, speed and pitch combinations) and is committed as `data/av_digits/`
with a manifest; SHA-256 checksums are verified on first use in each process.

Splits are disjoint in both modalities: speakers (20 train / 5 val / 5 test, listed in
the manifest) and images (a fixed 70/15/15 partition of the 1797 digits).

Each image is paired with a clip of the same digit from one of its split's speakers,
placed at a random offset in a window of AUDIO_SAMPLES; the pairing and offsets depend
only on `seed`. Noise knobs, also deterministic given `seed` (the noise pattern does not
depend on the level, so raising a level scales the same noise):

- image_noise: std of Gaussian noise added to the [0, 1] image, then clipped to [0, 1].
- image_occlusion: side of a random black square as a fraction of 8 pixels
  (0.5 -> a 4x4 square, 1.0 -> a blank image).
- audio_noise: std of white noise relative to the clip's RMS (1.0 is 0 dB SNR,
  0.1 is 20 dB); the waveform is not clipped, so it can leave [-1, 1].
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmlab.data.assets import check_file, data_root, require_files
from mmlab.validation import as_path, boolean, finite_float, int_in_range, item_index

SAMPLE_RATE = 16000
AUDIO_SAMPLES = 16000  # 1 s window; every clip is shorter (0.25-0.76 s)
IMAGE_SIZE = 8
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "val", "test")
ASSET_FILE = "av_digits.npz"
MANIFEST_FILE = "manifest.json"
# Pinned here as well as in the manifest, so a corrupted manifest cannot vouch for a corrupted asset.
EXPECTED_SHA256 = {
    ASSET_FILE: "cd1bc4056f4a73a08f08f38482dd2469107140bb5887d80c0c77e08630864788",
    MANIFEST_FILE: "d7453bb865826c839ac5d645bafe17cc2bd9cd47a085e089c13e9b9696a9572d",
}
_IMAGE_SPLIT_SEED = 20240601  # fixed: the image partition never depends on the user's seed
_IMAGE_FRACTIONS = (0.70, 0.15)  # train, val; test gets the rest
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


def default_root() -> Path:
    return data_root() / "av_digits"


def _root(root: str | os.PathLike | None) -> Path:
    """`root` as a Path, or the default AV-Digits folder for None."""
    return default_root() if root is None else as_path("root", root)


def verify_assets(root: str | Path | None = None, strict: bool = True) -> list[dict]:
    """Check the AV-Digits files' SHA-256s; return [{"file", "ok", "expected", "actual"}, ...].

    With strict=True (default) a missing or corrupted file raises AssetError naming the
    file and its expected checksum. Nothing is ever written.
    """
    boolean("strict", strict)
    root = _root(root)
    reports = [check_file(root / name, sha) for name, sha in EXPECTED_SHA256.items()]
    if strict:
        require_files(reports)
    return reports


@functools.lru_cache(maxsize=4)
def _load_speech(root: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(audio int16 (S,), start (speakers, 10), length (speakers, 10), manifest); stamp keys the cache."""
    manifest = json.loads((Path(root) / MANIFEST_FILE).read_text())
    with np.load(Path(root) / ASSET_FILE, allow_pickle=False) as z:
        return z["audio"], z["start"], z["length"], manifest


def load_speech(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Verify, then load the speech bank: (audio int16, start, length, manifest)."""
    root = _root(root)
    verify_assets(root)
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (root / ASSET_FILE, root / MANIFEST_FILE))
    return _load_speech(str(root.resolve()), stamp)


def speaker_info(root: str | Path | None = None) -> list[dict]:
    """The manifest's speakers: [{"id", "voice", "variant", "speed_wpm", "pitch", "split"}, ...]."""
    return [dict(s) for s in load_speech(root)[3]["speakers"]]


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images float32 (1797, 8, 8) in [0, 1], labels int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def image_split_indices(split: str) -> np.ndarray:
    """Sorted indices into load_digits() for a split (fixed, disjoint, covering all 1797)."""
    _check_split(split)
    n = len(_digits()[1])
    perm = np.random.default_rng(_IMAGE_SPLIT_SEED).permutation(n)
    n_train, n_val = int(n * _IMAGE_FRACTIONS[0]), int(n * _IMAGE_FRACTIONS[1])
    parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    return np.sort(parts[split])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


class AVDigits(Dataset):
    """Paired (8x8 digit image, spoken digit) items; see the module docstring for the knobs.

    `ds[i]` -> {"image": float32 (1, 8, 8) in [0, 1], "audio": float32 (AUDIO_SAMPLES,),
    "label": int 0-9, "speaker": str}. `ds.tensors()` stacks every item.
    """

    def __init__(self, split: str = "train", image_noise: float = 0.0, audio_noise: float = 0.0,
                 seed: int = 0, image_occlusion: float = 0.0, size: int | None = None,
                 root: str | Path | None = None) -> None:
        _check_split(split)
        self.split, self.seed = split, int_in_range("seed", seed, 0, 2**63 - 1)
        self.image_noise = finite_float("image_noise", image_noise, low=0)
        self.image_occlusion = finite_float("image_occlusion", image_occlusion, low=0, high=1)
        self.audio_noise = finite_float("audio_noise", audio_noise, low=0)
        index = image_split_indices(split)
        if size is not None:
            index = index[:int_in_range("size", size, 1, len(index))]

        self._bank, self._start, self._length, manifest = load_speech(root)
        ids = [s["id"] for s in manifest["speakers"]]
        self.speakers: list[str] = list(manifest["splits"][split])  # this split's speaker ids
        self._speaker_rows = np.array([ids.index(s) for s in self.speakers])

        images, labels = _digits()
        self.digit_indices = index  # rows of sklearn's load_digits()
        self._images = images[index]  # (N, 8, 8)
        self.labels = torch.from_numpy(labels[index].copy())  # (N,) int64

        rng = np.random.default_rng([self.seed, _SPLIT_CODE[split], 0])
        self._speaker_of = rng.integers(len(self.speakers), size=len(index))  # index into self.speakers
        lengths = self._length[self._speaker_rows[self._speaker_of], labels[index]]
        self._offset = (rng.random(len(index)) * (AUDIO_SAMPLES - lengths + 1)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.digit_indices)

    def _rng(self, i: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLIT_CODE[self.split], 1 + stream, i])

    def _image(self, i: int) -> np.ndarray:
        image = self._images[i].copy()  # (8, 8)
        if self.image_noise > 0:
            noise = self._rng(i, 0).standard_normal((IMAGE_SIZE, IMAGE_SIZE))
            image = np.clip(image + self.image_noise * noise, 0.0, 1.0).astype(np.float32)
        side = round(IMAGE_SIZE * self.image_occlusion)
        if side > 0:
            top, left = self._rng(i, 1).integers(IMAGE_SIZE - side + 1, size=2)
            image[top:top + side, left:left + side] = 0.0
        return image

    def _audio(self, i: int, out: np.ndarray) -> None:
        row = self._speaker_rows[self._speaker_of[i]]
        label = int(self.labels[i])
        start, length = self._start[row, label], self._length[row, label]
        clip = self._bank[start:start + length].astype(np.float32) / 32767.0
        out[:] = 0.0
        out[self._offset[i]:self._offset[i] + length] = clip
        if self.audio_noise > 0:
            rms = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2)))
            out += (self.audio_noise * rms) * self._rng(i, 2).standard_normal(AUDIO_SAMPLES, dtype=np.float32)

    def __getitem__(self, i: int) -> dict:
        i = item_index(i, len(self))
        audio = np.empty(AUDIO_SAMPLES, np.float32)
        self._audio(i, audio)
        return {"image": torch.from_numpy(self._image(i)).unsqueeze(0),  # (1, 8, 8)
                "audio": torch.from_numpy(audio),  # (T,)
                "label": int(self.labels[i]),
                "speaker": self.speakers[self._speaker_of[i]]}

    def speaker_of(self, i: int) -> str:
        return self.speakers[self._speaker_of[item_index(i, len(self))]]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every item stacked: image (N, 1, 8, 8), audio (N, AUDIO_SAMPLES), label (N,) int64."""
        n = len(self)
        images = np.stack([self._image(i) for i in range(n)])[:, None]  # (N, 1, 8, 8)
        audio = np.empty((n, AUDIO_SAMPLES), np.float32)  # (N, T)
        for i in range(n):
            self._audio(i, audio[i])
        return {"image": torch.from_numpy(images), "audio": torch.from_numpy(audio), "label": self.labels.clone()}

    def __repr__(self) -> str:
        return (f"AVDigits(split={self.split!r}, n={len(self)}, speakers={len(self.speakers)}, "
                f"image_noise={self.image_noise}, image_occlusion={self.image_occlusion}, "
                f"audio_noise={self.audio_noise}, seed={self.seed})")
