"""Vectorised rendering of Shapes-World images and videos with signed distances.

Each shape is a signed distance d(x, y) in pixels (negative inside); the pixel coverage is
clamp(0.5 - d, 0, 1), a one-pixel anti-aliased edge. Only IEEE-exact operations (add, mul,
abs, max, min, sqrt, clamp) touch pixels, so the bytes are the same on every CPU.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from mmlab.data.shapes_random import noise_bank
from mmlab.data.shapes_text import COLORS, SHAPES

# Base RGB of each colour (same order as COLORS); items jitter them slightly.
RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "orange": (0.98, 0.55, 0.05),
    "yellow": (0.95, 0.88, 0.12),
    "green": (0.12, 0.68, 0.18),
    "blue": (0.12, 0.30, 0.92),
    "purple": (0.58, 0.18, 0.80),
}
BASE_RGB = np.array([RGB[c] for c in COLORS], dtype=np.float64)  # (n_colors, 3)
# Highest point of a shape above its centre, in radii (the triangle reaches furthest).
EXTENT = 1.15
_NOISE_STREAM = 0x1A6E
_NOISE_AMPLITUDE = 0.04
NOISE_OFFSETS = 1 << 16


def _circle(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    # Not torch.sqrt: on a CPU it runs MKL's vector math, which is not correctly rounded and gives other
    # bits on AMD than on Intel processors. numpy's sqrt is the IEEE one, the same everywhere.
    return torch.from_numpy(np.sqrt((dx * dx + dy * dy).numpy())) - r


def _square(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.maximum(dx.abs(), dy.abs()) - 0.85 * r  # half side 0.85 r: area close to the circle's


def _triangle(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    # Equilateral, pointing up (image y grows downwards), circumradius EXTENT * r; each edge
    # is a half-plane at distance EXTENT * r / 2 from the centre.
    half = (0.5 * EXTENT) * r
    slanted = 0.8660254 * dx.abs() - 0.5 * dy - half
    return torch.maximum(slanted, dy - half)


def _cross(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    ax, ay, w = dx.abs(), dy.abs(), 0.34 * r
    return torch.minimum(torch.maximum(ax - r, ay - w), torch.maximum(ax - w, ay - r))


_SDF = {"circle": _circle, "square": _square, "triangle": _triangle, "cross": _cross}
assert tuple(_SDF) == SHAPES


def coverage(
    shape: np.ndarray, radius: np.ndarray, cx: np.ndarray, cy: np.ndarray, image_size: int, wrap: bool = False
) -> torch.Tensor:
    """(N, H, W) float32 coverage in [0, 1] of N objects centred at (cx, cy) pixels.

    shape (N,) int indexes SHAPES; radius, cx, cy (N,) in pixels. With wrap=True the image
    is a torus: an object leaving one side re-enters on the other (used by videos).
    """
    n, s = len(shape), image_size
    grid = torch.arange(s, dtype=torch.float32) + 0.5  # pixel centres
    dx = grid[None, :] - torch.from_numpy(cx.astype(np.float32))[:, None]  # (N, W)
    dy = grid[None, :] - torch.from_numpy(cy.astype(np.float32))[:, None]  # (N, H)
    if wrap:  # cx, cy in [0, s): dx in (-s, s); take the nearest copy of the object
        dx, dy = _wrap(dx, s), _wrap(dy, s)
    r = torch.from_numpy(radius.astype(np.float32))
    out = torch.empty(n, s, s, dtype=torch.float32)
    shape_t = torch.from_numpy(np.asarray(shape))
    for k, name in enumerate(SHAPES):
        idx = (shape_t == k).nonzero().squeeze(1)
        if idx.numel():
            d = _SDF[name](dx[idx, None, :], dy[idx, :, None], r[idx, None, None])  # (n_k, H, W)
            out[idx] = (0.5 - d).clamp_(0.0, 1.0)
    return out


def _wrap(d: torch.Tensor, s: int) -> torch.Tensor:
    half = 0.5 * s
    d = torch.where(d > half, d - s, d)
    return torch.where(d < -half, d + s, d)


@lru_cache(maxsize=8)
def _noise_windows(image_size: int) -> torch.Tensor:
    """(NOISE_OFFSETS, 3*H*W) overlapping windows onto one fixed noise table (a view, no copy)."""
    n = 3 * image_size * image_size
    bank = torch.from_numpy(noise_bank(_NOISE_STREAM, NOISE_OFFSETS + n - 1, _NOISE_AMPLITUDE))
    return bank.unfold(0, n, 1)


def backgrounds(level: np.ndarray, noise_offset: np.ndarray, image_size: int) -> torch.Tensor:
    """(B, 3, H, W) dark, slightly tinted backgrounds with light noise.

    level (B, 3) base RGB; noise_offset (B,) int in [0, NOISE_OFFSETS) picks a noise window.
    """
    s = image_size
    noise = _noise_windows(s)[torch.from_numpy(noise_offset)].view(-1, 3, s, s)  # (B, 3, H, W) copy
    return noise.add_(torch.from_numpy(level.astype(np.float32))[:, :, None, None])


def compose(alpha: torch.Tensor, rgb: np.ndarray, background: torch.Tensor) -> torch.Tensor:
    """Paint colour rgb (B, 3) with coverage alpha over background (B, 3, H, W).

    alpha (B, H, W) -> image (B, 3, H, W); alpha (B, F, H, W) -> video (B, F, 3, H, W).
    """
    col = torch.from_numpy(rgb.astype(np.float32))[:, :, None, None]  # (B, 3, 1, 1)
    diff = col - background  # (B, 3, H, W)
    if alpha.dim() == 4:  # video: the same background behind every frame
        diff, background, alpha = diff[:, None], background[:, None], alpha[:, :, None]
    else:
        alpha = alpha[:, None]
    out = alpha * diff  # (B, [F,] 3, H, W)
    out += background
    return out.clamp_(0.0, 1.0)


def track(start: np.ndarray, step: np.ndarray, frames: int, image_size: int) -> np.ndarray:
    """(B, F) positions start + step * (t - (F-1)/2), wrapped into [0, image_size).

    The track is centred on the middle frame, so reversing the direction (negating step)
    visits exactly the same positions in reverse order.
    """
    t = np.arange(frames, dtype=np.float64) - 0.5 * (frames - 1)  # (F,)
    return np.mod(start[:, None] + step[:, None] * t[None, :], float(image_size))
