"""What every caption decoder shares: token and position embeddings, a stack of DecoderLayers, a tied output head,
teacher forcing, and the KV-cached step function that `mmlab.generate` decodes.

A decoder reads the image in one of two ways, which the subclasses choose in `context`: as `memory` that every
layer cross-attends to (BLIP, Flamingo), or as a `prefix` of embeddings in front of the text in one sequence
(ClipCap, the unified decoder), attended causally or, with `bidirectional_prefix`, both ways (a prefix-LM).
Text is right-padded: token t of each row sits at text position t.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from mmlab.captioning.attention import prefix_lm_mask
from mmlab.captioning.block import DecoderLayer
from mmlab.captioning.cache import KVCache
from mmlab.captioning.config import DecoderConfig
from mmlab.captioning.step import DecoderStep
from mmlab.captioning.teacher_forcing import teacher_forcing_loss
from mmlab.encoders.layers import position_embedding
from mmlab.validation import keep_mask, on_host, require_module, require_tensor


class DecoderContext(NamedTuple):
    """What a decoder reads besides the text, computed once per image (and prompt)."""

    prefix: Tensor | None  # (B, P, D) embeddings in front of the text
    prefix_keep: Tensor | None  # (B, P) bool, True = real
    memory: Tensor | None  # (B, N, Dm) tokens to cross-attend to

    def select(self, rows: Tensor) -> DecoderContext:
        """The context of rows `rows` (beam search's re-selection)."""
        return DecoderContext(*(None if t is None else t[rows] for t in self))

    @property
    def batch(self) -> int:
        return next(t for t in self if t is not None).shape[0]


def check_ids(name: str, ids: Tensor, vocab_size: int) -> Tensor:
    """A (B, T) integer tensor of ids in [0, vocab_size) (the range read only on the host)."""
    require_tensor(name, ids)
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32 token ids, got {ids.dtype}")
    if ids.ndim != 2 or 0 in ids.shape:
        raise ValueError(f"{name} must be a non-empty (B, T) tensor, got shape {tuple(ids.shape)}")
    if on_host(ids):
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{name} must be in [0, {vocab_size}), got range [{low}, {high}]")
    return ids


class CaptionDecoder(nn.Module):
    """images (B, C, H, W) + caption ids (B, T) -> next-token logits (B, T, V). Subclasses define `context`.

    `vision` is an image tower with the mmlab.encoders API (`forward(images) -> (B, N, Dv)` tokens, `pool`,
    `dim`); it is trained with the decoder. The output head is tied to the token embedding (as in GPT-2 and
    BLIP's BERT decoder)."""

    cross: str | None = None  # the DecoderLayer kind: None, "blip" or "flamingo"
    bidirectional_prefix = False

    def __init__(self, config: DecoderConfig, vision: nn.Module):
        super().__init__()
        if not isinstance(config, DecoderConfig):
            raise TypeError(f"config must be a DecoderConfig, got {type(config).__name__}")
        require_module("vision", vision)
        if not isinstance(getattr(vision, "dim", None), int):
            raise ValueError(f"vision must have an int width .dim (an mmlab.encoders tower), "
                             f"got {type(vision).__name__}")
        c = self.config = config
        self.vision, self.image_dim = vision, vision.dim
        self.token_embed = nn.Embedding(c.vocab_size, c.dim)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        self.pos_embed = position_embedding(c.max_length, c.dim)
        self.layers = nn.ModuleList(DecoderLayer(c.dim, c.heads, c.mlp_dim, self.cross, self.image_dim,
                                                 c.layer_norm_eps, c.dropout) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)

    # -- what subclasses define ------------------------------------------------------------------------------

    def context(self, images: Tensor, prompt_ids: Tensor | None = None,
                prompt_mask: Tensor | None = None) -> DecoderContext:
        raise NotImplementedError

    def _no_prompt(self, prompt_ids: Tensor | None) -> None:
        if prompt_ids is not None:
            raise ValueError(f"{type(self).__name__} reads no prompt; only UnifiedDecoder takes prompt_ids")

    # -- the decoder ------------------------------------------------------------------------------------------

    def logits(self, context: DecoderContext, input_ids: Tensor, attention_mask: Tensor | None = None,
               cache: KVCache | None = None) -> Tensor:
        """Logits (B, t, V) at the text positions of `input_ids` (B, t).

        Without a cache the ids are the whole text so far. With one they continue what it holds (an empty cache
        also takes the prefix), and their keys and values are appended to it."""
        c = self.config
        check_ids("input_ids", input_ids, c.vocab_size)
        b, t = input_ids.shape
        if context.batch != b:
            raise ValueError(f"batch mismatch: the context has {context.batch} rows, input_ids {b}")
        start = cache.text_length if cache is not None else 0
        if start + t > c.max_length:
            raise ValueError(f"{start + t} text tokens exceed max_length {c.max_length}")
        keep = keep_mask(attention_mask, b, t, input_ids.device, name="attention_mask")
        keep = torch.ones(b, t, dtype=torch.bool, device=input_ids.device) if keep is None else keep
        x = self.token_embed(input_ids) + self.pos_embed[:, start:start + t]  # (B, t, D)
        fresh = cache is None or cache.length == 0
        prefix_length = 0 if context.prefix is None else context.prefix.shape[1]
        if fresh and context.prefix is not None:
            x = torch.cat([context.prefix, x], dim=1)  # (B, P + t, D)
            keep = torch.cat([context.prefix_keep, keep], dim=1)
        if not fresh:
            keep = torch.cat([cache.keep, keep], dim=1)  # (B, L)
        query_start = 0 if fresh else cache.length
        allowed = prefix_lm_mask(keep, query_start, x.shape[1], prefix_length, self.bidirectional_prefix)
        for i, layer in enumerate(self.layers):
            reader = layer.reads_memory()
            if reader is None:
                memory_kv = None
            elif fresh:
                memory_kv = reader.memory_kv(context.memory)
            else:
                memory_kv = cache.memory_kv[i]
            past = None if fresh else cache.self_kv[i]
            x, kv = layer(x, allowed, past, memory_kv)
            if cache is not None:
                if fresh:
                    cache.self_kv.append(kv)
                    cache.memory_kv.append(memory_kv)
                else:
                    cache.self_kv[i] = kv
        if cache is not None:
            cache.keep, cache.text_length = keep, start + t
        return self.norm(x[:, -t:]) @ self.token_embed.weight.T  # (B, t, V), head tied to the embedding

    def forward(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None,
                prompt_ids: Tensor | None = None, prompt_mask: Tensor | None = None) -> Tensor:
        """images (B, C, H, W), input_ids (B, T) [+ attention_mask (B, T)] -> logits (B, T, V)."""
        return self.logits(self.context(images, prompt_ids, prompt_mask), input_ids, attention_mask)

    def loss(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None,
             prompt_ids: Tensor | None = None, prompt_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: mean next-token cross-entropy over the real (unpadded) target tokens."""
        logits = self(images, input_ids, attention_mask, prompt_ids, prompt_mask)
        return teacher_forcing_loss(logits, input_ids, attention_mask)

    def step(self, images: Tensor, prompt_ids: Tensor | None = None, prompt_mask: Tensor | None = None,
             use_cache: bool = True) -> DecoderStep:
        """A `logits_fn` for mmlab.generate over these images (a DecoderStep; see mmlab.captioning.step)."""
        return DecoderStep(self, images, prompt_ids, prompt_mask, use_cache)
