"""One decoder layer: causal self-attention, optional cross-attention into the image, feed-forward (pre-norm)."""
from __future__ import annotations

from torch import Tensor, nn

from mmlab.captioning.attention import CausalSelfAttention, GatedMemoryCrossAttention, MemoryCrossAttention
from mmlab.encoders.layers import MLP

CROSS = (None, "blip", "flamingo")


class DecoderLayer(nn.Module):
    """cross=None: x += SelfAttn(LN(x)); x += MLP(LN(x)) (a GPT layer; prefix and unified decoders).
    cross="blip": x += SelfAttn(LN(x)); x += XAttn(LN(x), image); x += MLP(LN(x)) (BLIP's decoder layer).
    cross="flamingo": a gated XATTN-DENSE layer (tanh gates at 0) before the GPT layer, as Flamingo inserts
    them before its frozen language-model layers."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, cross: str | None = None, memory_dim: int | None = None,
                 eps: float = 1e-6, dropout: float = 0.0):
        super().__init__()
        if cross not in CROSS:
            raise ValueError(f"cross must be one of {CROSS}, got {cross!r}")
        self.cross_kind = cross
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = CausalSelfAttention(dim, heads, dropout=dropout)
        self.gated = self.cross = None
        if cross == "blip":  # cross-attention, then this block's MLP
            self.cross = MemoryCrossAttention(dim, heads, mlp_dim, memory_dim, eps, dropout)
        else:
            self.norm2 = nn.LayerNorm(dim, eps=eps)
            self.mlp = MLP(dim, mlp_dim, dropout)
        if cross == "flamingo":
            self.gated = GatedMemoryCrossAttention(dim, heads, mlp_dim, memory_dim, eps, dropout)

    def reads_memory(self) -> MemoryCrossAttention | None:
        """The cross-attention module of this layer, or None."""
        return self.cross if self.cross is not None else self.gated

    def forward(self, x: Tensor, allowed: Tensor, past: tuple[Tensor, Tensor] | None = None,
                memory_kv: tuple[Tensor, Tensor] | None = None, memory_keep: Tensor | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, t, D) -> (B, t, D) and the self-attention keys/values of all positions (see CausalSelfAttention)."""
        if self.gated is not None:
            x = self.gated.attend(x, memory_kv, memory_keep)
        h, kv = self.attn(self.norm1(x), allowed, past)
        x = x + h
        if self.cross is not None:
            return self.cross.attend(x, memory_kv, memory_keep), kv  # cross-attention and MLP
        return x + self.mlp(self.norm2(x)), kv
