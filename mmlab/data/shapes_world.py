"""Shapes-World: procedural multimodal scenes, identical on every machine.

An item is a pure function of (seed, split, index): one coloured shape on a dark, lightly
noisy background, four paraphrased captions, a one-second sound whose timbre, pitch and
loudness follow the shape, colour and size, an optional short video of the object moving,
attribute labels and a VQA-lite question with its answer.

Splits are disjoint by construction: every random number is a hash of a key in which the
split and the index occupy separate bits (see `shapes_random.item_keys`), so no two items of
any splits share their randomness, and the test split's captions use held-out templates and
synonyms (see `shapes_text`). Val uses the train templates: it measures in-distribution
generalisation, test measures generalisation to new phrasings.

Videos: the object glides in one of DIRECTIONS across a wrap-around image (leaving on one
side, re-entering on the other) along a track centred on the middle frame, from a start
uniform over the image. So each frame alone is uniform over positions whatever the
direction, and reversing the direction plays the same frames backwards: the mean frame of
a left-moving object equals that of the same object moving right (and up equals down).
Only temporal order tells the sign of the motion; the mean frame still shows its axis.

Multi-object scenes (`max_objects` 2 to 4; `shapes_scenes`, `shapes_layout`, `shapes_scene_text`): 1 to
max_objects non-overlapping objects with their boxes, captions that name every object and how each relates
to the next, one referring expression that picks out exactly one object (checked by parsing it back), and one
relational question. Images default to 64x64 there (see `shapes_scenes` for why). Sound and video describe one
object, so they are single-object only: `with_audio=True` or `video_frames > 0` with `max_objects > 1` is a
ValueError. The default `max_objects=1` is the single-object dataset, byte for byte.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmlab.data import shapes_random as rnd
from mmlab.data.shapes_layout import RELATIONS
from mmlab.data.shapes_render import BASE_RGB, EXTENT, NOISE_OFFSETS, backgrounds, compose, coverage, track
from mmlab.data.shapes_scene_text import EXPRESSION_TYPES, SCENE_ANSWERS
from mmlab.data.shapes_scenes import OBJECT_KEYS, SCENE_IMAGE_SIZE, scene_batch, scene_params
from mmlab.data.shapes_sound import (
    ATTACK_S,
    DECAY_PER_S,
    DETUNE,
    envelope_index,
    max_period,
    render_audio,
    tone_index,
)
from mmlab.data.shapes_text import (
    ANSWERS,
    COLORS,
    DIRECTIONS,
    N_CAPTIONS,
    QUESTION_TYPES,
    SHAPES,
    SIZES,
    TEST_TEMPLATES,
    TRAIN_TEMPLATES,
    canonical_caption,
    make_captions,
    make_questions,
)
from mmlab.validation import int_in_range, item_index

__all__ = [
    "ANSWERS",
    "COLORS",
    "DIRECTIONS",
    "EXPRESSION_TYPES",
    "RELATIONS",
    "SCENE_ANSWERS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "ShapesWorld",
    "canonical_caption",
    "collate_shapes_world",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
LABELS: tuple[str, ...] = ("shape", "color", "size", "direction")
# Radius range as a fraction of the image size, per size (same order as SIZES).
RADIUS: tuple[tuple[float, float], ...] = ((0.14, 0.17), (0.26, 0.30))
# (dx, dy) of each direction (image y grows downwards), same order as DIRECTIONS.
MOTION = np.array([(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)])


class _S:  # stream numbers: one independent random stream per quantity
    SHAPE, COLOR, SIZE, DIRECTION, RADIUS, CX, CY, JITTER, BG, BG_NOISE = range(10)
    DETUNE, PHASE, GAIN, ATTACK, DECAY = range(10, 15)
    VX, VY, SPEED, TEMPLATES, SYNONYMS, QTYPE, TRUTH, OTHER, BG_TINT = range(15, 24)


class ShapesWorld(Dataset):
    """Procedural Shapes-World scenes; `ds[i]` is one item, `ds.batch(indices)` many at once.

    Item keys (max_objects=1, the default): "image" (3, H, W) float32 in [0, 1]; "captions" list of 4 str;
    "audio" (T,) float32 in (-1, 1) if with_audio; "video" (F, 3, H, W) if video_frames > 0; "shape",
    "color", "size", "direction" int; "question", "answer" str; "answer_id" int into
    ANSWERS; "position" (2,) float32 object centre (x, y) as a fraction of the image; "index".

    Item keys with max_objects = K in 2..4 (objects in slots 0..num_objects-1, padding after):
    "image" (3, H, W) float32, H = W = 64 unless image_size is given; "captions" list of 4 str;
    "num_objects" int in 1..K; "object_mask" (K,) bool, True for a present object; "boxes" (K, 4) float32
    (x0, y0, x1, y1) in pixels, zeros for padding; "shapes", "colors", "sizes" (K,) int64 indices into
    SHAPES, COLORS, SIZES, -1 for padding; "expression" str, a referring expression that fits exactly one
    object; "expression_type" str, one of EXPRESSION_TYPES ("attribute" or "relation"); "target" int, the
    slot of the object it picks out; "target_box" (4,) float32, that object's box; "question", "answer"
    str; "answer_id" int into SCENE_ANSWERS (ANSWERS + "one".."four"); "index". No "audio" or "video".

    max_objects: 1 gives one object per item (the original dataset); 2..4 gives scenes whose object count is
    uniform over 1..max_objects. image_size defaults to 32 (one object) or 64 (scenes); with_audio defaults
    to True (one object) or False (scenes, which have no sound).

    Fast loading: `DataLoader(ds, batch_size=256, collate_fn=collate_shapes_world)` generates
    each batch in one vectorised `batch` call (through `__getitems__`).
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 1000,
        seed: int = 0,
        image_size: int | None = None,
        sample_rate: int = 16000,
        audio_seconds: float = 1.0,
        video_frames: int = 0,
        with_audio: bool | None = None,
        max_objects: int = 1,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        int_in_range("size", size, 1, rnd.MAX_INDEX)
        int_in_range("seed", seed, 0, 2**63 - 1)
        int_in_range("max_objects", max_objects, 1, 4)
        multi = max_objects > 1
        if image_size is None:
            image_size = SCENE_IMAGE_SIZE if multi else 32
        int_in_range("image_size", image_size, 8, 4096)
        int_in_range("sample_rate", sample_rate, 2000, 384000)
        int_in_range("video_frames", video_frames, 0, 1024)
        if isinstance(audio_seconds, bool) or not isinstance(audio_seconds, (int, float)):
            raise TypeError(f"audio_seconds must be a number, got {type(audio_seconds).__name__} {audio_seconds!r}")
        if not (math.isfinite(audio_seconds) and 0 < audio_seconds <= 10):
            raise ValueError(f"audio_seconds must be finite and in (0, 10], got {audio_seconds!r}")
        if with_audio is None:
            with_audio = not multi
        if not isinstance(with_audio, bool):
            raise TypeError(f"with_audio must be a bool, got {type(with_audio).__name__} {with_audio!r}")
        if multi and with_audio:
            raise ValueError(f"with_audio=True is not supported with max_objects={max_objects}: the sound describes "
                             "one object; pass with_audio=False (the default for scenes)")
        if multi and video_frames > 0:
            raise ValueError(f"video_frames={video_frames} is not supported with max_objects={max_objects}: videos "
                             "move one object; pass video_frames=0")
        self.max_objects = int(max_objects)
        self.split, self.size, self.seed = split, int(size), int(seed)
        self.image_size, self.sample_rate = int(image_size), int(sample_rate)
        self.audio_seconds, self.video_frames, self.with_audio = float(audio_seconds), int(video_frames), with_audio
        self.n_samples = round(self.sample_rate * self.audio_seconds)
        if with_audio and self.n_samples < 1:
            raise ValueError(f"sample_rate * audio_seconds = {self.n_samples} samples; need at least 1")

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (
            f"ShapesWorld(split={self.split!r}, size={self.size}, seed={self.seed}, image_size={self.image_size}, "
            f"sample_rate={self.sample_rate}, audio_seconds={self.audio_seconds}, "
            f"video_frames={self.video_frames}, with_audio={self.with_audio}"
            + (f", max_objects={self.max_objects})" if self.max_objects > 1 else ")")
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _unbatch(self.batch([item_index(index, self.size)]))[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Used by torch's DataLoader for a whole batch at once: generation stays vectorised."""
        return _unbatch(self.batch(indices))

    def _indices(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        arr = np.asarray(indices)
        if arr.ndim != 1:
            raise ValueError(f"indices must be one-dimensional, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        bad = (arr < -self.size) | (arr >= self.size)
        if bad.any():
            raise IndexError(f"index {int(arr[bad][0])} is out of range for ShapesWorld of size {self.size}")
        return np.where(arr < 0, arr + self.size, arr)

    def params(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """Every random choice of the given items (labels, geometry, colours, sound, text)."""
        idx = self._indices(indices)
        keys = rnd.item_keys(self.seed, SPLITS.index(self.split), idx)
        if self.max_objects > 1:
            return {"index": idx, **scene_params(keys, self.image_size, self.max_objects, self.split == "test")}
        s, n = self.image_size, len(idx)
        p: dict[str, np.ndarray] = {"index": idx}
        p["shape"] = rnd.integers(keys, _S.SHAPE, len(SHAPES))
        p["color"] = rnd.integers(keys, _S.COLOR, len(COLORS))
        p["size"] = rnd.integers(keys, _S.SIZE, len(SIZES))
        p["direction"] = rnd.integers(keys, _S.DIRECTION, len(DIRECTIONS))
        lo, hi = np.array(RADIUS)[p["size"]].T
        p["radius"] = s * (lo + (hi - lo) * rnd.uniform(keys, _S.RADIUS))
        margin = EXTENT * p["radius"] + 1.0  # the whole object stays inside the image
        p["cx"] = margin + (s - 2 * margin) * rnd.uniform(keys, _S.CX)
        p["cy"] = margin + (s - 2 * margin) * rnd.uniform(keys, _S.CY)
        jitter = 0.08 * (rnd.uniform(keys, _S.JITTER, 3) - 0.5)  # (B, 3)
        p["rgb"] = np.clip(BASE_RGB[p["color"]] + jitter, 0.0, 1.0)
        tint = 0.04 * (rnd.uniform(keys, _S.BG_TINT, 3) - 0.5)  # (B, 3)
        p["background"] = 0.12 + 0.16 * rnd.uniform(keys, _S.BG)[:, None] + tint
        p["bg_noise"] = rnd.integers(keys, _S.BG_NOISE, NOISE_OFFSETS)
        p["tone"] = tone_index(p["shape"], p["color"], rnd.integers(keys, _S.DETUNE, len(DETUNE)))
        p["phase"] = rnd.integers(keys, _S.PHASE, max_period(self.sample_rate))
        p["envelope"] = envelope_index(
            p["size"],
            rnd.integers(keys, _S.GAIN, 3),
            rnd.integers(keys, _S.ATTACK, len(ATTACK_S)),
            rnd.integers(keys, _S.DECAY, len(DECAY_PER_S)),
        )
        p["video_x"] = s * rnd.uniform(keys, _S.VX)
        p["video_y"] = s * rnd.uniform(keys, _S.VY)
        p["speed"] = s * (0.05 + 0.03 * rnd.uniform(keys, _S.SPEED))  # pixels per frame
        n_templates = len(TEST_TEMPLATES if self.split == "test" else TRAIN_TEMPLATES)
        p["template_u"] = rnd.uniform(keys, _S.TEMPLATES, n_templates)
        p["synonym_u"] = rnd.uniform(keys, _S.SYNONYMS, N_CAPTIONS * 3).reshape(n, N_CAPTIONS, 3)
        p["qtype"] = rnd.integers(keys, _S.QTYPE, len(QUESTION_TYPES))
        p["truth_u"] = rnd.uniform(keys, _S.TRUTH)
        p["other_u"] = rnd.uniform(keys, _S.OTHER)
        return p

    def batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, Any]:
        """Many items at once (the fast path): tensors stacked on a leading batch dim B."""
        p = self.params(indices)
        s = self.image_size
        if self.max_objects > 1:
            return {**scene_batch(p, s, self.split == "test"), "index": torch.from_numpy(p["index"])}
        bg = backgrounds(p["background"], p["bg_noise"], s)  # (B, 3, H, W)
        alpha = coverage(p["shape"], p["radius"], p["cx"], p["cy"], s)  # (B, H, W)
        out: dict[str, Any] = {"image": compose(alpha, p["rgb"], bg)}
        region = np.clip(np.stack([p["cy"], p["cx"]], axis=1) * 3 // s, 0, 2).astype(np.int64)  # (B, 2)
        out["captions"] = make_captions(
            p["shape"], p["color"], p["size"], region, p["template_u"], p["synonym_u"], held_out=self.split == "test"
        )
        if self.with_audio:
            audio = render_audio(p["tone"], p["phase"], p["envelope"], self.sample_rate, self.n_samples)
            out["audio"] = torch.from_numpy(audio)  # (B, T)
        if self.video_frames > 0:
            out["video"] = self.render_video(p, bg)  # (B, F, 3, H, W)
        for k in LABELS:
            out[k] = torch.from_numpy(p[k])
        q, a, ids = make_questions(p["shape"], p["color"], p["size"], p["qtype"], p["truth_u"], p["other_u"])
        out["question"], out["answer"], out["answer_id"] = q, a, torch.from_numpy(ids)
        out["position"] = torch.from_numpy((np.stack([p["cx"], p["cy"]], axis=1) / s).astype(np.float32))
        out["index"] = torch.from_numpy(p["index"])
        return out

    def render_video(self, p: dict[str, np.ndarray], background: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, 3, H, W) videos for params `p` (from `params`, possibly edited, e.g. the direction)."""
        s, f, n = self.image_size, self.video_frames, len(p["shape"])
        if f <= 0:
            raise ValueError("this ShapesWorld has video_frames=0; pass video_frames > 0 to render videos")
        if background is None:
            background = backgrounds(p["background"], p["bg_noise"], s)
        motion = MOTION[p["direction"]]  # (B, 2)
        x = track(p["video_x"], motion[:, 0] * p["speed"], f, s)  # (B, F)
        y = track(p["video_y"], motion[:, 1] * p["speed"], f, s)
        shape, radius = np.repeat(p["shape"], f), np.repeat(p["radius"], f)  # (B*F,) one per frame
        alpha = coverage(shape, radius, x.reshape(-1), y.reshape(-1), s, wrap=True)  # (B*F, H, W)
        return compose(alpha.view(n, f, s, s), p["rgb"], background)


def _unbatch(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a `batch` dict into per-item dicts (labels as Python ints)."""
    items = []
    for i in range(len(batch["index"])):
        item = {k: (int(v[i]) if k in _INT_KEYS else v[i]) for k, v in batch.items()}
        items.append(item)
    return items


_INT_KEYS = frozenset((*LABELS, "answer_id", "index", "num_objects", "target"))


def collate_shapes_world(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of `ShapesWorld` items into the layout of `ShapesWorld.batch`.

    Per-object tensors of scenes ("boxes", "shapes", "colors", "sizes", "object_mask") are padded to the
    largest K among the items (zeros, -1 and False), so scenes of datasets with different max_objects mix."""
    if not items:
        raise ValueError("collate_shapes_world got an empty list of items")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TypeError(f"items must be dicts (ShapesWorld items), got {type(item).__name__} at position {i}")
        if item.keys() != items[0].keys():
            raise ValueError(f"item {i} has keys {sorted(item)}, item 0 has {sorted(items[0])}")
    out: dict[str, Any] = {}
    for key, first in items[0].items():
        values = [item[key] for item in items]
        if key in OBJECT_KEYS and isinstance(first, torch.Tensor):  # scenes of different max_objects: pad
            k = max(v.shape[0] for v in values)
            out[key] = torch.stack([torch.cat([v, v.new_full((k - v.shape[0], *v.shape[1:]), OBJECT_KEYS[key])])
                                    for v in values])
        elif isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, bool) or not isinstance(first, (int, np.integer)):
            out[key] = values  # captions, question, answer
        else:
            out[key] = torch.tensor(values, dtype=torch.int64)
    return out

