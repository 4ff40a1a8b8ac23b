"""Image preprocessing for vision transformers: patchify/unpatchify, 2-D sin-cos positions, normalisation.

Contract: ``patchify(x, p) @ conv.weight.reshape(D, -1).T + conv.bias`` equals
``conv(x).flatten(2).transpose(1, 2)`` for ``conv = nn.Conv2d(C, D, p, stride=p)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmlab.validation import positive_int, require_tensor

# Per-channel statistics differ between model families; use the ones the checkpoint was trained with.
# ImageNet statistics: torchvision's pretrained models (torchvision docs, "Models and pre-trained weights").
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Google's ViT checkpoints map [0, 1] to [-1, 1] (transformers' ViTImageProcessor defaults: mean = std = 0.5).
VIT_MEAN = (0.5, 0.5, 0.5)
VIT_STD = (0.5, 0.5, 0.5)
# OpenAI CLIP's preprocessing (its released `clip` package, `_transform`).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        return positive_int("image_size", size), size
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"image_size must be an int or (H, W), got {type(size).__name__} {size!r}")
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or (H, W), got {size!r}")
    return positive_int("image_size[0]", size[0]), positive_int("image_size[1]", size[1])


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping patches: (B, C, H, W) -> (B, N, C*p*p).

    Patches are in row-major order (left to right, then top to bottom), each flattened
    in (C, p, p) order, so a linear layer on them equals a stride-p convolution.
    """
    positive_int("patch_size", patch_size)
    if require_tensor("images", images).dim() != 4:
        raise ValueError(f"patchify expects images of shape (B, C, H, W), got {tuple(images.shape)}")
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {p} "
                         f"(resize or crop to a multiple of {p}, e.g. {h // p * p}x{w // p * p})")
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(b, (h // p) * (w // p), c * p * p)  # (B, N, C*p*p)


def unpatchify(patches: torch.Tensor, patch_size: int, image_size: int | tuple[int, int]) -> torch.Tensor:
    """Inverse of `patchify`: (B, N, C*p*p) -> (B, C, H, W) for ``image_size`` H or (H, W)."""
    positive_int("patch_size", patch_size)
    h, w = _pair(image_size)
    p = patch_size
    if require_tensor("patches", patches).dim() != 3:
        raise ValueError(f"unpatchify expects patches of shape (B, N, C*p*p), got {tuple(patches.shape)}")
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {p}")
    b, n, d = patches.shape
    gh, gw = h // p, w // p
    if n != gh * gw:
        raise ValueError(f"got {n} patches but a {h}x{w} image with patch size {p} has {gh * gw}")
    if d % (p * p):
        raise ValueError(f"patch dimension {d} is not a multiple of p*p = {p * p}")
    c = d // (p * p)
    x = patches.reshape(b, gh, gw, c, p, p)  # (B, gh, gw, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, gh, p, gw, p)
    return x.reshape(b, c, h, w)  # (B, C, H, W)


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, dim): first half sin, second half cos, frequencies 1/10000^(2i/dim)."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000.0 ** omega  # (dim/2,)
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # (M, dim/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (M, dim)


def sincos_pos_embed_2d(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings: (grid_h*grid_w, dim), float32, row-major like `patchify`.

    The first half of the channels encodes the column (x), the second half the row (y), each
    with the 1-D transformer sinusoids (Vaswani et al., 2017: sin then cos, frequencies
    1/10000^(2i/d)), the layout of MAE (He et al., 2022, "Masked Autoencoders Are Scalable
    Vision Learners"). No CLS row: prepend zeros if you need one.
    """
    for name, value in (("grid_h", grid_h), ("grid_w", grid_w), ("dim", dim)):
        positive_int(name, value)
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for 2-D sin-cos embeddings, got {dim}")
    rows = torch.arange(grid_h).repeat_interleave(grid_w)  # (N,) row index of each patch
    cols = torch.arange(grid_w).repeat(grid_h)  # (N,) column index
    emb = torch.cat([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], dim=1)  # (N, dim)
    return emb.float()


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` on (..., C, H, W) images in [0, 1]."""
    if require_tensor("images", images).dim() < 3:
        raise ValueError(f"normalize expects (..., C, H, W) images, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"normalize expects float images in [0, 1], got dtype {images.dtype}")
    c = images.shape[-3]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries but images have {c} channels")
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(c, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(c, 1, 1)
    return (images - m) / s


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (bilinear, antialiased), then centre-crop.

    (..., C, H, W) -> (..., C, size, size)."""
    if require_tensor("images", images).dim() < 3:
        raise ValueError(f"resize_center_crop expects (..., C, H, W) images, got shape {tuple(images.shape)}")
    positive_int("size", size)
    lead = images.shape[:-3]
    c, h, w = images.shape[-3:]
    x = images.reshape(-1, c, h, w).float()  # (B, C, H, W)
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[:, :, top:top + size, left:left + size]  # (B, C, size, size)
    return x.reshape(*lead, c, size, size)
