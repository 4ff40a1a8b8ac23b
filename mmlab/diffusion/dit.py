"""A small Diffusion Transformer (DiT; Peebles & Xie, 2023) that predicts the flow velocity of noisy images.

Noisy image (B, C, H, W) -> patches (B, N, C*p*p) -> tokens (B, N, D) + fixed 2-D sin-cos positions; each block is
self-attention and an MLP whose layer norms are modulated by the conditioning vector c = MLP(time) + MLP(caption)
("adaLN-Zero": shift, scale and a gate per sub-layer regressed from c, the gates initialised at zero so every block
starts as the identity); a last modulated norm and a zero-initialised linear layer give the velocity per patch.

Classifier-free guidance (Ho & Salimans, 2022) needs the same network unconditioned: rows whose `drop` flag is set
use a learned "no caption" embedding in place of the caption's.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmlab.diffusion.config import DiTConfig
from mmlab.encoders.layers import MLP, MultiHeadSelfAttention
from mmlab.preprocess.image import patchify, sincos_pos_embed_2d, unpatchify


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """t (B,) in [0, 1] -> (B, dim) sinusoidal features of 1000 t (the frequencies of the Transformer / DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (B, N, D), shift/scale (B, D) -> x * (1 + scale) + shift, per row."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    """x + gate1 * Attn(modulate(LN(x))), then x + gate2 * MLP(modulate(LN(x))); six (B, D) vectors from c."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, mlp_dim)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # each (B, D)
        x = x + gate1[:, None, :] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None, :] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """velocity = DiT(x_t (B, C, H, W), t (B,), caption (B, cond_dim), drop (B,) bool or None) -> (B, C, H, W)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        if not isinstance(config, DiTConfig):
            raise TypeError(f"config must be a DiTConfig, got {type(config).__name__}")
        self.config = c = config
        grid = c.image_size // c.patch_size
        self.patch_embed = nn.Linear(c.patch_dim, c.dim)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(grid, grid, c.dim)[None], persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(c.dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.caption_mlp = nn.Sequential(nn.Linear(c.cond_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.null_caption = nn.Parameter(torch.zeros(c.cond_dim))
        self.blocks = nn.ModuleList(DiTBlock(c.dim, c.heads, c.mlp_ratio * c.dim) for _ in range(c.depth))
        self.final_norm = nn.LayerNorm(c.dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 2 * c.dim))
        self.head = nn.Linear(c.dim, c.patch_dim)
        for layer in (self.final_ada[1], self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def condition(self, t: Tensor, caption: Tensor, drop: Tensor | None = None) -> Tensor:
        """(B,) times and (B, cond_dim) captions -> (B, D); rows with drop=True get the learned null caption."""
        if drop is not None:
            caption = torch.where(drop[:, None], self.null_caption.to(caption.dtype), caption)
        return self.time_mlp(timestep_embedding(t, self.config.dim)) + self.caption_mlp(caption)

    def forward(self, x: Tensor, t: Tensor, caption: Tensor, drop: Tensor | None = None) -> Tensor:
        c = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.channels, c.image_size, c.image_size):
            raise ValueError(f"x must be (B, {c.channels}, {c.image_size}, {c.image_size}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],) or caption.shape != (x.shape[0], c.cond_dim):
            raise ValueError(f"t must be ({x.shape[0]},) and caption ({x.shape[0]}, {c.cond_dim}); got "
                             f"{tuple(t.shape)} and {tuple(caption.shape)}")
        cond = self.condition(t, caption, drop)  # (B, D)
        h = self.patch_embed(patchify(x, c.patch_size)) + self.pos_embed  # (B, N, D)
        for block in self.blocks:
            h = block(h, cond)
        shift, scale = self.final_ada(cond).chunk(2, dim=1)
        patches = self.head(modulate(self.final_norm(h), shift, scale))  # (B, N, C*p*p)
        return unpatchify(patches, c.patch_size, c.image_size)
