"""Shared transformer blocks: self-attention, MLP, pre-norm block, stack, cross-attention; the CLS and
position embeddings, pooling and input checks every encoder uses.

Masks follow the tokenizer convention: `mask` is (B, N) with True/1 for real tokens and
False/0 for padding. Padding keys are ignored by every query, and their values are replaced
by zeros before any arithmetic, so the outputs at real positions do not depend on what the
padded positions hold, even NaN or inf.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmlab.encoders.config import TransformerConfig
from mmlab.validation import keep_mask, positive_int


class EncoderOutput(NamedTuple):
    """What `forward_with_attention` returns: the tokens and one attention map per layer."""

    tokens: Tensor  # (B, N, D)
    attentions: tuple[Tensor, ...]  # per layer (B, heads, N, N), rows sum to 1


def zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """x (B, N, D) with the positions where the bool `mask` (B, N) is False set to 0 (NaN and inf too)."""
    return x if mask is None else x.masked_fill(~mask[..., None], 0.0)


def position_embedding(length: int, dim: int) -> nn.Parameter:
    """Learned positions (1, length, D), initialised N(0, 0.02^2)."""
    return nn.Parameter(torch.randn(1, length, dim) * 0.02)


def cls_and_positions(num_tokens: int, dim: int) -> tuple[nn.Parameter, nn.Parameter]:
    """A CLS token (1, 1, D), initialised to zeros, and positions (1, 1 + num_tokens, D) for CLS + tokens.

    Assign both to attributes of the encoder (`self.cls_token, self.pos_embed = ...`) so its
    state_dict names stay those of ViT (and of transformers' ViTModel conversion)."""
    return nn.Parameter(torch.zeros(1, 1, dim)), position_embedding(1 + num_tokens, dim)


def add_cls_and_positions(x: Tensor, cls_token: Tensor, pos_embed: Tensor) -> Tensor:
    """(B, N, D) -> (B, 1 + N, D): the CLS token prepended, then positions added."""
    return torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos_embed


def cls_or_mean(tokens: Tensor, pool: str) -> Tensor:
    """(B, 1 + N, D) -> (B, D): the CLS token (pool="cls") or the mean of the N tokens after it (pool="mean")."""
    return tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(dim=1)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (the layout of HF ViT and BERT)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"width {dim} is not divisible by the number of heads {heads}")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dim // self.heads).transpose(1, 2)  # (B, h, N, d)

    def _qkv(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        kv = zero_padding(x, mask)  # padded keys and values hold zeros, so NaN cannot leak through 0 * NaN
        return self._split(self.q(x)), self._split(self.k(kv)), self._split(self.v(kv))

    def _merge(self, y: Tensor) -> Tensor:
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, self.dim))  # (B, h, N, d) -> (B, N, D)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) bool keep-mask -> (B, N, D), via F.scaled_dot_product_attention."""
        q, k, v = self._qkv(x, mask)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N): True = attend
        p = self.dropout if self.training else 0.0
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p))

    def forward_with_attention(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """As `forward`, with an explicit softmax so the weights can be returned: ((B, N, D), (B, h, N, N))."""
        q, k, v = self._qkv(x, mask)
        scores = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5)  # (B, h, N, N)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        p = self.dropout if self.training else 0.0
        return self._merge(F.dropout(weights, p) @ v), weights


class MLP(nn.Module):
    """Linear -> exact GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, qkv_bias: bool = True, eps: float = 1e-6,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadSelfAttention(dim, heads, qkv_bias, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim, dropout)

    def _feed_forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(self.norm2(x))  # (B, N, D)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) bool keep-mask -> (B, N, D)."""
        return self._feed_forward(x + self.attn(self.norm1(x), mask))

    def forward_with_attention(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """As `forward`, also returning the attention weights (B, h, N, N)."""
        h, weights = self.attn.forward_with_attention(self.norm1(x), mask)
        return self._feed_forward(x + h), weights


class Transformer(nn.Module):
    """A stack of pre-norm blocks followed by a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, qkv_bias: bool = True,
                 eps: float = 1e-6, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_dim, qkv_bias, eps, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)

    @classmethod
    def from_config(cls, c: TransformerConfig) -> Transformer:
        """The stack described by a TransformerConfig (or any encoder config deriving from it)."""
        return cls(c.dim, c.depth, c.heads, c.mlp_dim, c.qkv_bias, c.layer_norm_eps, c.dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) keep-mask (bool or 0/1) -> (B, N, D)."""
        mask = keep_mask(mask, x.shape[0], x.shape[1], x.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def forward_with_attention(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        """As `forward`, also returning each layer's attention weights (B, h, N, N)."""
        mask = keep_mask(mask, x.shape[0], x.shape[1], x.device)
        maps = []
        for block in self.blocks:
            x, weights = block.forward_with_attention(x, mask)
            maps.append(weights)
        return EncoderOutput(self.norm(x), tuple(maps))


class TokenEncoder(nn.Module):
    """What the vision, audio and video encoders share: `embed(inputs)` (B, N, D) -> their transformer stack.

    Subclasses define `embed` and keep the stack in `self.transformer` (or override `stack`); `pool` takes
    the first (CLS) token unless the config asks for the mean of the other tokens."""

    def stack(self) -> Transformer:
        return self.transformer

    def forward(self, inputs: Tensor) -> Tensor:
        """inputs -> tokens (B, N, D)."""
        return self.stack()(self.embed(inputs))

    def forward_with_attention(self, inputs: Tensor) -> EncoderOutput:
        """inputs -> tokens (B, N, D) and per-layer attention (B, heads, N, N)."""
        return self.stack().forward_with_attention(self.embed(inputs))

    def pool(self, tokens: Tensor) -> Tensor:
        """(B, N, D) -> (B, D): the CLS token, or the mean of the other tokens (config.pool == "mean")."""
        return cls_or_mean(tokens, getattr(self.config, "pool", "cls"))

    def pooled(self, inputs: Tensor) -> Tensor:
        """inputs -> (B, D)."""
        return self.pool(self(inputs))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries attend to a context sequence) then MLP, each residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, context_dim: int | None = None, eps: float = 1e-6,
                 dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"width {dim} is not divisible by the number of heads {heads}")
        context_dim = dim if context_dim is None else context_dim
        self.heads, self.dropout = heads, dropout
        self.norm_q = nn.LayerNorm(dim, eps=eps)
        self.norm_c = nn.LayerNorm(context_dim, eps=eps)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim, dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """x (B, Nq, D), context (B, Nc, Dc), context_mask (B, Nc) keep-mask -> (B, Nq, D)."""
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"batch mismatch: queries {x.shape[0]} vs context {context.shape[0]}")
        b, nq, d = x.shape
        mask = keep_mask(context_mask, b, context.shape[1], x.device, name="context_mask")
        h = self.heads
        q = self.q(self.norm_q(x)).view(b, nq, h, d // h).transpose(1, 2)  # (B, h, Nq, d)
        context = self.norm_c(zero_padding(context, mask))  # padded keys and values hold no NaN
        k, v = self.kv(context).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 x (B, h, Nc, d)
        attn_mask = None if mask is None else mask[:, None, None, :]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, h, Nq, d)
        x = x + self.out(y.transpose(1, 2).reshape(b, nq, d))
        return x + self.mlp(self.norm2(x))  # (B, Nq, D)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over tokens (B, N, D) -> (B, D), counting only positions where mask (B, N) is True/non-zero.

    Masked-out positions are selected away, not multiplied by 0, so NaN or inf there cannot leak."""
    if mask is None:
        return x.mean(dim=1)
    keep = mask.to(device=x.device, dtype=torch.bool)
    count = keep.sum(dim=1, keepdim=True).clamp_min(1).to(x.dtype)  # (B, 1)
    return zero_padding(x, keep).sum(dim=1) / count


class DividedSpaceTimeBlock(nn.Module):
    """TimeSformer's divided space-time block (Bertasius et al., 2021), pre-norm, three residual steps:

      1. temporal attention: each patch token attends to the tokens at the *same patch position* in every
         frame (F keys), x + AttnT(LN(x));
      2. spatial attention: each patch token attends to the patches of *its own frame* and the CLS token
         (1 + P keys), x + AttnS(LN(x));
      3. x + MLP(LN(x)).

    Tokens are (B, 1 + F*P, D): CLS first, then the patches frame-major (patch p of frame t at 1 + t*P + p).
    As in the reference implementation the CLS token takes no part in temporal attention, joins the spatial
    attention of every frame, and its F spatial outputs are averaged. (The reference also applies an extra
    linear layer, `temporal_fc`, after temporal attention; it is left out here.)
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, num_frames: int, qkv_bias: bool = True,
                 eps: float = 1e-6, dropout: float = 0.0):
        super().__init__()
        positive_int("num_frames", num_frames)
        self.num_frames = num_frames
        self.norm_t = nn.LayerNorm(dim, eps=eps)
        self.attn_t = MultiHeadSelfAttention(dim, heads, qkv_bias, dropout)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadSelfAttention(dim, heads, qkv_bias, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim, dropout)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1 + F*P, D) -> CLS (B, 1, D) and patches (B, F, P, D)."""
        if x.ndim != 3 or (x.shape[1] - 1) % self.num_frames or x.shape[1] < 1 + self.num_frames:
            raise ValueError(f"x must be (B, 1 + F*P, D) with F = {self.num_frames} frames, got {tuple(x.shape)}")
        b, n, d = x.shape
        return x[:, :1], x[:, 1:].reshape(b, self.num_frames, (n - 1) // self.num_frames, d)

    @staticmethod
    def _attend(attn: MultiHeadSelfAttention, x: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        return attn.forward_with_attention(x) if with_attention else (attn(x), None)

    def temporal(self, x: Tensor, with_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Step 1: (B, 1 + F*P, D) -> (same shape, weights (B*P, h, F, F) or None); CLS passes unchanged."""
        cls, patches = self._split(x)
        b, f, p, d = patches.shape
        seq = patches.transpose(1, 2).reshape(b * p, f, d)  # (B*P, F, D): one sequence per patch position
        h, weights = self._attend(self.attn_t, self.norm_t(seq), with_attention)
        patches = patches + h.view(b, p, f, d).transpose(1, 2)  # (B, F, P, D)
        return torch.cat([cls, patches.reshape(b, f * p, d)], dim=1), weights

    def spatial(self, x: Tensor, with_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Step 2: (B, 1 + F*P, D) -> (same shape, weights (B*F, h, 1 + P, 1 + P) or None)."""
        cls, patches = self._split(x)
        b, f, p, d = patches.shape
        seq = torch.cat([cls.expand(b, f, d).reshape(b * f, 1, d), patches.reshape(b * f, p, d)], dim=1)
        h, weights = self._attend(self.attn, self.norm1(seq), with_attention)  # (B*F, 1 + P, D)
        h = h.view(b, f, 1 + p, d)
        cls = cls + h[:, :, 0].mean(dim=1, keepdim=True)  # the CLS outputs of the F frames, averaged
        patches = patches + h[:, :, 1:]
        return torch.cat([cls, patches.reshape(b, f * p, d)], dim=1), weights

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 1 + F*P, D) -> (B, 1 + F*P, D)."""
        x = self.spatial(self.temporal(x)[0])[0]
        return x + self.mlp(self.norm2(x))

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """As `forward`, also returning (temporal (B*P, h, F, F), spatial (B*F, h, 1 + P, 1 + P)) weights."""
        x, w_t = self.temporal(x, with_attention=True)
        x, w_s = self.spatial(x, with_attention=True)
        return x + self.mlp(self.norm2(x)), (w_t, w_s)
