"""Multi-object Shapes-World scenes (`ShapesWorld(max_objects=2..4)`): random choices and the assembled batch.

A scene holds between 1 and max_objects objects (the count uniform over 1..max_objects; see
`shapes_layout.place_objects` for the rare scene that keeps fewer), no two of them with the same
(shape, colour, size), none touching another (boxes GAP pixels apart). Every random number comes from
`shapes_random` streams of the item's key, disjoint from the single-object streams, so an item is a pure
function of (seed, split, index) and independent of the batch it comes in.

Object sizes are in fractions of the image: small radius 0.07-0.085, large 0.12-0.14. At the default
64x64 image a small object (radius 4.5-5.4 px) has the pixel size of a small object in the 32x32
single-object scenes, where shapes are still told apart, and four large ones (boxes up to 18 px) fit with room
to move. At 32x32 a small object would have a radius of 2.2-2.7 px and a cross's arms under 2 px wide (0.68 r).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmlab.data import shapes_random as rnd
from mmlab.data.shapes_layout import BOX_EXTENT, place_objects
from mmlab.data.shapes_render import BASE_RGB, NOISE_OFFSETS, backgrounds, coverage
from mmlab.data.shapes_scene_text import SCENE_ANSWERS, SCENE_TEST_TEMPLATES, SCENE_TRAIN_TEMPLATES, scene_texts
from mmlab.data.shapes_text import COLORS, N_CAPTIONS, SHAPES, SIZES

SCENE_IMAGE_SIZE = 64
SCENE_RADIUS: tuple[tuple[float, float], ...] = ((0.07, 0.085), (0.12, 0.14))  # per size, fraction of image size
N_COMBOS = len(SHAPES) * len(COLORS) * len(SIZES)
# Per-object keys of a batch and their padding value for absent objects.
OBJECT_KEYS: dict[str, Any] = {"boxes": 0.0, "shapes": -1, "colors": -1, "sizes": -1, "object_mask": False}


class _S:  # streams of multi-object scenes, disjoint from the single-object ones (0..23)
    COUNT, COMBO, RADIUS, PLACE, JITTER, BG, BG_NOISE, BG_TINT = range(100, 108)
    TEMPLATES, SYNONYMS, EXPRESSION, QUESTION = range(108, 112)


def scene_params(keys: np.ndarray, image_size: int, max_objects: int, held_out: bool) -> dict[str, np.ndarray]:
    """Every random choice of B scenes with up to K = max_objects objects: (B, K) per object, (B,) per scene."""
    b, k, s = len(keys), max_objects, image_size
    p: dict[str, np.ndarray] = {}
    count = 1 + rnd.integers(keys, _S.COUNT, k)
    combo = np.argsort(rnd.uniform(keys, _S.COMBO, N_COMBOS), axis=1, kind="stable")[:, :k]  # (B, K) distinct
    p["shapes"] = combo // (len(COLORS) * len(SIZES))
    p["colors"] = combo // len(SIZES) % len(COLORS)
    p["sizes"] = combo % len(SIZES)
    lo, hi = np.moveaxis(np.array(SCENE_RADIUS)[p["sizes"]], -1, 0)  # (B, K) each
    p["radius"] = s * (lo + (hi - lo) * rnd.uniform(keys, _S.RADIUS, k))
    p["boxes"], p["object_mask"] = place_objects(keys, _S.PLACE, p["shapes"], p["radius"], count, s)
    # the centre of the shape's own frame (the triangle's centroid is not its box centre)
    p["cx"] = p["boxes"][..., 0] - BOX_EXTENT[p["shapes"], 0] * p["radius"]
    p["cy"] = p["boxes"][..., 1] - BOX_EXTENT[p["shapes"], 1] * p["radius"]
    jitter = 0.08 * (rnd.uniform(keys, _S.JITTER, 3 * k).reshape(b, k, 3) - 0.5)
    p["rgb"] = np.clip(BASE_RGB[p["colors"]] + jitter, 0.0, 1.0)  # (B, K, 3)
    tint = 0.04 * (rnd.uniform(keys, _S.BG_TINT, 3) - 0.5)  # (B, 3)
    p["background"] = 0.12 + 0.16 * rnd.uniform(keys, _S.BG)[:, None] + tint
    p["bg_noise"] = rnd.integers(keys, _S.BG_NOISE, NOISE_OFFSETS)
    n_templates = len(SCENE_TEST_TEMPLATES if held_out else SCENE_TRAIN_TEMPLATES)
    p["template_u"] = rnd.uniform(keys, _S.TEMPLATES, n_templates)
    p["synonym_u"] = rnd.uniform(keys, _S.SYNONYMS, N_CAPTIONS * k * 3).reshape(b, N_CAPTIONS, k, 3)
    p["expression_u"] = rnd.uniform(keys, _S.EXPRESSION, 9)
    p["question_u"] = rnd.uniform(keys, _S.QUESTION, 4)
    return p


def render_scenes(p: dict[str, np.ndarray], image_size: int) -> torch.Tensor:
    """(B, 3, H, W) images: each present object painted over the background.

    Each object's coverage is computed on a square crop around its box only (its anti-aliased edge stays
    inside the crop), then alpha * (colour - background) is added to its image. Objects never share a pixel
    (boxes are GAP apart), so this equals painting them one after the other.
    """
    s = image_size
    image = backgrounds(p["background"], p["bg_noise"], s)  # (B, 3, H, W)
    mask = p["object_mask"]
    flat = np.flatnonzero(mask)  # present objects, row-major over (B, K)
    # the largest box plus 2 pixels on each side (a triangle's anti-aliased corners reach 1 pixel past its box)
    crop = min(s, int(np.ceil(2 * SCENE_RADIUS[-1][1] * s)) + 5)
    boxes = p["boxes"].reshape(-1, 4)[flat]
    origin = np.clip(np.floor(boxes[:, :2]).astype(np.int64) - 2, 0, s - crop)  # (N, 2) crop corner (x, y)
    cx, cy = p["cx"].reshape(-1)[flat] - origin[:, 0], p["cy"].reshape(-1)[flat] - origin[:, 1]
    alpha = coverage(p["shapes"].reshape(-1)[flat], p["radius"].reshape(-1)[flat], cx, cy, crop)  # (N, c, c)
    rgb = torch.from_numpy(p["rgb"].reshape(-1, 3)[flat].astype(np.float32))[:, :, None, None]  # (N, 3, 1, 1)
    step, org = torch.arange(crop), torch.from_numpy(origin)
    owner = torch.from_numpy(flat // mask.shape[1])[:, None, None, None]  # (N, 1, 1, 1)
    rows = (org[:, 1, None] + step)[:, None, :, None]  # (N, 1, c, 1)
    cols = (org[:, 0, None] + step)[:, None, None, :]  # (N, 1, 1, c)
    where = (owner, torch.arange(3)[None, :, None, None], rows, cols)
    paint = alpha[:, None] * (rgb - image[where])  # (N, 3, c, c), read from the bare background
    image.index_put_(where, paint, accumulate=True)  # where crops overlap, all but one object add zeros
    return image.clamp_(0.0, 1.0)


def scene_batch(p: dict[str, np.ndarray], image_size: int, held_out: bool) -> dict[str, Any]:
    """The batch of multi-object scenes for params `p` (see `ShapesWorld` for the keys)."""
    mask = p["object_mask"]
    out: dict[str, Any] = {"image": render_scenes(p, image_size)}
    text = scene_texts(p["shapes"], p["colors"], p["sizes"], p["boxes"], mask, p["template_u"], p["synonym_u"],
                       p["expression_u"], p["question_u"], held_out)
    out["captions"] = text["captions"]
    out["num_objects"] = torch.from_numpy(mask.sum(1).astype(np.int64))
    out["object_mask"] = torch.from_numpy(mask.copy())
    out["boxes"] = torch.from_numpy(np.where(mask[..., None], p["boxes"], 0.0).astype(np.float32))  # (B, K, 4)
    for key in ("shapes", "colors", "sizes"):
        out[key] = torch.from_numpy(np.where(mask, p[key], -1).astype(np.int64))  # (B, K), -1 = no object
    out["expression"], out["expression_type"] = text["expression"], text["expression_type"]
    target = np.array(text["target"], dtype=np.int64)
    out["target"] = torch.from_numpy(target)
    out["target_box"] = out["boxes"][torch.arange(len(target)), out["target"]]  # (B, 4)
    out["question"], out["answer"] = text["question"], text["answer"]
    out["answer_id"] = torch.tensor([SCENE_ANSWERS.index(a) for a in text["answer"]], dtype=torch.int64)
    return out
