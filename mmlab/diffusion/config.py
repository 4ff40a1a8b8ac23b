"""Configs of the text-to-image model and its training run (dataclasses, kept apart from the modules)."""
from __future__ import annotations

from dataclasses import dataclass

from mmlab import validation


@dataclass
class DiTConfig:
    """A small DiT (Peebles & Xie, 2023) over `patch_size` patches of `image_size` RGB images, conditioned by
    adaptive layer norm (adaLN-Zero) on a pooled caption embedding of width `cond_dim` and the flow time."""

    image_size: int = 32
    channels: int = 3
    patch_size: int = 4
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    cond_dim: int = 384  # all-MiniLM-L6-v2's sentence embedding

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "patch_size", "dim", "depth", "heads", "mlp_ratio", "cond_dim"):
            validation.positive_int(f"DiTConfig.{name}", getattr(self, name))
        if self.image_size % self.patch_size:
            raise ValueError(f"DiTConfig.image_size ({self.image_size}) must be divisible by patch_size "
                             f"({self.patch_size})")
        if self.dim % self.heads:
            raise ValueError(f"DiTConfig.dim ({self.dim}) must be divisible by heads ({self.heads})")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        return self.channels * self.patch_size ** 2
