"""A stand-in vision tower for image tokens computed beforehand by a frozen tower, so that decoders can be trained
on them without running (or updating) the tower at every step, as ClipCap and Flamingo keep theirs frozen."""
from __future__ import annotations

from torch import Tensor, nn

from mmlab.encoders.layers import cls_or_mean
from mmlab.validation import floating_batch, one_of, positive_int


class PrecomputedTokens(nn.Module):
    """tokens (B, N, dim) -> the same tokens. No parameters. `pool`: the first (CLS) token (pool="cls") or the
    mean of the tokens after it (pool="mean"), as `mmlab.encoders` towers pool."""

    def __init__(self, dim: int, pool: str = "cls"):
        super().__init__()
        self.dim = positive_int("dim", dim)
        self.pool_kind = one_of("pool", pool, ("cls", "mean"))

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 3:
            raise ValueError(f"tokens must be (B, N, {self.dim}) precomputed image tokens, got {tuple(tokens.shape)}")
        return floating_batch("tokens", tokens, (tokens.shape[1], self.dim))

    def pool(self, tokens: Tensor) -> Tensor:
        """(B, N, D) -> (B, D)."""
        return cls_or_mean(tokens, self.pool_kind)
