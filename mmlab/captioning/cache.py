"""The key/value cache of a decoder: what each layer's self-attention has already computed, kept between steps.

Generating token t+1 needs the keys and values of tokens 1..t in every layer; without a cache the decoder
recomputes them for the whole sequence at every step (quadratic work), with one it computes them once for the
new token and appends them. Cross-attention keys and values over the image (`memory`) never change and are
computed once. `reorder(rows)` follows beam search when it re-selects hypotheses.
"""
from __future__ import annotations

from torch import Tensor


class KVCache:
    """Per layer: self-attention keys and values (B, heads, L, d) of every position so far, the cross-attention
    keys and values over the memory (or None), and the (B, L) keep-mask of those positions."""

    def __init__(self) -> None:
        self.self_kv: list[tuple[Tensor, Tensor]] = []
        self.memory_kv: list[tuple[Tensor, Tensor] | None] = []
        self.keep: Tensor | None = None  # (B, L) bool: True = a real position
        self.text_length = 0  # text tokens cached (the prefix, if any, is not counted)

    @property
    def length(self) -> int:
        """Positions cached (prefix and text)."""
        return 0 if self.keep is None else self.keep.shape[1]

    def __len__(self) -> int:
        return self.length

    def reorder(self, rows: Tensor) -> None:
        """Row i now continues row rows[i] (beam search's re-selection); rows may repeat and change B."""
        self.self_kv = [(k[rows], v[rows]) for k, v in self.self_kv]
        self.memory_kv = [None if kv is None else (kv[0][rows], kv[1][rows]) for kv in self.memory_kv]
        if self.keep is not None:
            self.keep = self.keep[rows]
