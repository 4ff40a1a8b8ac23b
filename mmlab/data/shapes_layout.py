"""Geometry of multi-object Shapes-World scenes: object boxes, non-overlapping placement, spatial relations.

Boxes are (x0, y0, x1, y1) in pixels, x to the right and y downwards, the tight box of the shape's outline
(the region where its signed distance in `shapes_render` is <= 0); the anti-aliased edge reaches half a pixel
beyond it. Two objects of a scene are at least `GAP` pixels apart (box to box), so no pixel is touched by two
objects.

Spatial relations are read off the boxes: object i is "left of" object j when i's box ends before j's begins
(x1_i < x0_j), "right of" when x0_i > x1_j, "above" when y1_i < y0_j, "below" when y0_i > y1_j. Several can
hold at once (i above and left of j); because boxes never overlap, at least one holds for every pair.
"""
from __future__ import annotations

import numpy as np

from mmlab.data import shapes_random as rnd
from mmlab.data.shapes_render import EXTENT
from mmlab.data.shapes_text import SHAPES

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
# Box of each shape relative to its centre, in radii (same order as SHAPES): circle and cross reach r on
# every side, the square 0.85 r; the triangle (circumradius EXTENT r, pointing up) spans
# [-EXTENT r, EXTENT r / 2] vertically and +-(sqrt(3)/2) EXTENT r horizontally.
_HALF_BASE = 0.8660254 * EXTENT
BOX_EXTENT = np.array(
    [
        (-1.0, -1.0, 1.0, 1.0),
        (-0.85, -0.85, 0.85, 0.85),
        (-_HALF_BASE, -EXTENT, _HALF_BASE, 0.5 * EXTENT),
        (-1.0, -1.0, 1.0, 1.0),
    ]
)
assert len(BOX_EXTENT) == len(SHAPES)
GAP = 2.0  # pixels between the boxes of two objects
MARGIN = 1.0  # pixels between a box and the image border
CANDIDATES = 64  # positions tried per object before the scene stops adding objects


def place_objects(
    keys: np.ndarray, stream: int, shape: np.ndarray, radius: np.ndarray, count: np.ndarray, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping positions for up to K objects per scene -> (boxes (B, K, 4) float64, active (B, K) bool).

    shape, radius (B, K); count (B,) objects wanted. Object j takes the first of CANDIDATES uniform positions
    (inside the image by MARGIN) whose box keeps GAP pixels from the boxes of objects 0..j-1. If none does, the
    scene keeps its first j objects (`active` is a prefix of each row; measured in tests as rare). Every step is
    elementwise numpy on (B, CANDIDATES) arrays, a pure function of the keys.
    """
    b, k = shape.shape
    rel = BOX_EXTENT[shape] * radius[..., None]  # (B, K, 4) box offsets from the centre, pixels
    u = rnd.uniform(keys, stream, k * CANDIDATES * 2).reshape(b, k, CANDIDATES, 2)
    lo = MARGIN - rel[..., :2]  # (B, K, 2) lowest centre (x, y) that keeps the box inside
    hi = image_size - MARGIN - rel[..., 2:]
    centre = lo[:, :, None] + (hi - lo)[:, :, None] * u  # (B, K, C, 2)
    boxes = np.zeros((b, k, 4))
    active = np.zeros((b, k), dtype=bool)
    previous = np.ones(b, dtype=bool)
    rows = np.arange(b)
    for j in range(k):
        cand = np.concatenate([centre[:, j] + rel[:, j, None, :2], centre[:, j] + rel[:, j, None, 2:]], -1)  # (B, C, 4)
        ok = np.ones((b, CANDIDATES), dtype=bool)
        for i in range(j):
            p = boxes[:, i, None, :]  # (B, 1, 4)
            apart = (
                (cand[..., 0] >= p[..., 2] + GAP)
                | (p[..., 0] >= cand[..., 2] + GAP)
                | (cand[..., 1] >= p[..., 3] + GAP)
                | (p[..., 1] >= cand[..., 3] + GAP)
            )
            ok &= apart | ~active[:, i, None]
        act = previous & (j < count) & ok.any(1)
        boxes[:, j] = np.where(act[:, None], cand[rows, ok.argmax(1)], 0.0)
        active[:, j] = previous = act
    return boxes, active


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) xyxy -> (..., 2) centres (x, y)."""
    return 0.5 * (boxes[..., :2] + boxes[..., 2:])


def relations(boxes: np.ndarray) -> np.ndarray:
    """(..., K, 4) boxes -> (..., K, K, 4) bool: [..., i, j, r] is True when object i is RELATIONS[r] of object j."""
    a, b = boxes[..., :, None, :], boxes[..., None, :, :]  # (..., K, 1, 4), (..., 1, K, 4)
    return np.stack(
        [a[..., 2] < b[..., 0], a[..., 0] > b[..., 2], a[..., 3] < b[..., 1], a[..., 1] > b[..., 3]], axis=-1
    )
