"""The decoder's attention: prefix-LM masks, causal self-attention with a KV cache, and cross-attention into image
tokens, plain (BLIP) or tanh-gated (Flamingo), whose keys and values over the image can be computed once.

The attention modules subclass `mmlab.encoders` blocks, so their parameters are laid out as the encoders' are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmlab.encoders.layers import CrossAttentionBlock, MultiHeadSelfAttention, zero_padding


def prefix_lm_mask(keep: Tensor, query_start: int, num_queries: int, prefix_length: int = 0,
                   bidirectional_prefix: bool = False) -> Tensor:
    """Which keys each query may attend to: (B, 1, num_queries, L) bool, True = attend.

    keep (B, L): real key positions. The queries are positions query_start .. query_start + num_queries - 1 of
    the same sequence. Causal: a query sees the kept keys at or before it. With `bidirectional_prefix` (the
    prefix-LM mask of UniLM and PaLI), every query also sees the whole prefix, positions < prefix_length, so the
    image and the question attend to each other both ways while the text stays causal."""
    b, length = keep.shape
    q = torch.arange(query_start, query_start + num_queries, device=keep.device)[:, None]  # (Tq, 1)
    k = torch.arange(length, device=keep.device)[None, :]  # (1, L)
    allowed = k <= q
    if bidirectional_prefix and prefix_length:
        allowed = allowed | (k < prefix_length)
    return allowed[None, None] & keep[:, None, None, :]  # (B, 1, Tq, L)


class CausalSelfAttention(MultiHeadSelfAttention):
    """MultiHeadSelfAttention (same q, k, v, out projections) under an explicit mask, with cached keys/values."""

    def forward(self, x: Tensor, allowed: Tensor, past: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, t, D) new positions; allowed (B, 1, t, L) with L = past length + t; past (k, v) (B, h, L - t, d).

        Returns the output (B, t, D) and the keys and values of all L positions, to cache."""
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))  # (B, h, t, d)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, h, L, d)
        p = self.dropout if self.training else 0.0
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)), (k, v)


class MemoryCrossAttention(CrossAttentionBlock):
    """CrossAttentionBlock (pre-norm cross-attention, then MLP, each residual), split in two so that the keys and
    values over the memory (the image tokens) are computed once per image: `memory_kv`, then `attend`.

    This is the cross-attention of BLIP's image-grounded text decoder (Li et al., 2022): after the causal
    self-attention of each layer, the text attends to the image tokens, then the feed-forward runs."""

    def memory_kv(self, memory: Tensor, memory_keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """memory (B, N, Dm) -> keys and values (B, h, N, d)."""
        b, n, _ = memory.shape
        d = self.q.out_features
        c = self.norm_c(zero_padding(memory, memory_keep))
        k, v = self.kv(c).view(b, n, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return k, v

    def cross(self, x: Tensor, kv: tuple[Tensor, Tensor], memory_keep: Tensor | None = None) -> Tensor:
        """The attention output alone (no residual): x (B, t, D) -> (B, t, D)."""
        b, t, d = x.shape
        q = self.q(self.norm_q(x)).view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, h, t, d)
        mask = None if memory_keep is None else memory_keep[:, None, None, :]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, t, d))

    def attend(self, x: Tensor, kv: tuple[Tensor, Tensor], memory_keep: Tensor | None = None) -> Tensor:
        """x + xattn(x), then + MLP: what CrossAttentionBlock.forward computes, from precomputed keys/values."""
        x = x + self.cross(x, kv, memory_keep)
        return x + self.mlp(self.norm2(x))


class GatedMemoryCrossAttention(MemoryCrossAttention):
    """Flamingo's GATED XATTN-DENSE layer (Alayrac et al., 2022, section 2.2 and figure 4):
    x += tanh(a) * xattn(x, image); x += tanh(b) * ffw(x), with the scalar gates a and b initialised at 0, so at
    initialisation the decoder ignores the image exactly and the image path opens as a and b are learned."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attn_gate = nn.Parameter(torch.zeros(()))
        self.ffw_gate = nn.Parameter(torch.zeros(()))

    def attend(self, x: Tensor, kv: tuple[Tensor, Tensor], memory_keep: Tensor | None = None) -> Tensor:
        x = x + torch.tanh(self.attn_gate) * self.cross(x, kv, memory_keep)
        return x + torch.tanh(self.ffw_gate) * self.mlp(self.norm2(x))
