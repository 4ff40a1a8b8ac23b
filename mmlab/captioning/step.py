"""A decoder as a `logits_fn` for mmlab.generate: tokens (B, T) -> next-token logits (B, V), with a KV cache."""
from __future__ import annotations

import torch
from torch import Tensor

from mmlab.captioning.cache import KVCache
from mmlab.validation import boolean


class DecoderStep:
    """Next-token logits of `decoder` for fixed images (and prompts), in eval mode and without gradients.

    The image (and prompt) context is computed once. With `use_cache` each call runs the decoder on the tokens
    the cache has not seen (all of them on the first call, then one per step) and appends their keys and values;
    without it every call runs the whole sequence again, as a plain `lambda t: model(images, t)[:, -1]` would.
    `reorder(rows)` follows beam search's re-selection of rows (context and cache alike)."""

    def __init__(self, decoder, images: Tensor, prompt_ids: Tensor | None = None,
                 prompt_mask: Tensor | None = None, use_cache: bool = True):
        self.decoder, self.use_cache = decoder, boolean("use_cache", use_cache)
        decoder.eval()
        with torch.no_grad():
            self.context = decoder.context(images, prompt_ids, prompt_mask)
        self.cache = KVCache() if use_cache else None
        self.seen: Tensor | None = None  # the tokens the cache holds

    @torch.no_grad()
    def __call__(self, tokens: Tensor) -> Tensor:
        if not self.use_cache:
            return self.decoder.logits(self.context, tokens)[:, -1]
        new = tokens
        if self.seen is not None:
            n = self.seen.shape[1]
            if tokens.ndim != 2 or tokens.shape[1] <= n or not torch.equal(tokens[:, :n], self.seen):
                raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not continue the {n} cached tokens per "
                                 "row: a cached step only appends; call reorder(rows) when rows are re-selected, "
                                 "or start a new step")
            new = tokens[:, n:]
        logits = self.decoder.logits(self.context, new, cache=self.cache)[:, -1]  # (B, V)
        self.seen = tokens
        return logits

    def reorder(self, rows: Tensor) -> None:
        """Row i continues row rows[i] from now on."""
        self.context = self.context.select(rows)
        if self.cache is not None:
            self.cache.reorder(rows)
        if self.seen is not None:
            self.seen = self.seen[rows]
