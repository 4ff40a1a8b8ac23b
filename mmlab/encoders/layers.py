"""Shared transformer blocks: self-attention, MLP, pre-norm block, stack, cross-attention.

Masks follow the tokenizer convention: `mask` is (B, N) with True/1 for real tokens and
False/0 for padding. Padding keys are ignored by every query, so the outputs at real
positions do not depend on what the padded positions hold.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_mask(mask: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor | None:
    """Validate a (B, N) keep-mask and return it as bool on `device` (None stays None)."""
    if mask is None:
        return None
    if mask.shape != (batch, length):
        raise ValueError(f"mask must have shape (B, N) = {(batch, length)}, got {tuple(mask.shape)}")
    mask = mask.to(device=device, dtype=torch.bool)
    if not mask.any(dim=1).all():
        empty = int((~mask.any(dim=1)).nonzero()[0, 0])
        raise ValueError(f"mask row {empty} has no real tokens; every sequence needs at least one")
    return mask


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

    def forward(self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False):
        """x (B, N, D), mask (B, N) keep-mask -> (B, N, D) [, attention (B, h, N, N)]."""
        b, n, _ = x.shape
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N): True = attend
        p = self.dropout if self.training else 0.0
        if return_attention:  # explicit softmax so the weights can be returned (for plots)
            scores = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5)  # (B, h, N, N)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            y = F.dropout(weights, p) @ v  # (B, h, N, d)
        else:
            weights = None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = self.out(y.transpose(1, 2).reshape(b, n, self.dim))  # (B, N, D)
        return (y, weights) if return_attention else y


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

    def forward(self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False):
        h = self.attn(self.norm1(x), mask, return_attention)
        h, weights = h if return_attention else (h, None)
        x = x + h
        x = x + self.mlp(self.norm2(x))  # (B, N, D)
        return (x, weights) if return_attention else x


class Transformer(nn.Module):
    """A stack of pre-norm blocks followed by a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, qkv_bias: bool = True,
                 eps: float = 1e-6, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_dim, qkv_bias, eps, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False):
        """x (B, N, D) -> (B, N, D) [, list of per-layer attention (B, h, N, N)]."""
        mask = check_mask(mask, x.shape[0], x.shape[1], x.device)
        maps = []
        for block in self.blocks:
            if return_attention:
                x, w = block(x, mask, True)
                maps.append(w)
            else:
                x = block(x, mask)
        x = self.norm(x)
        return (x, maps) if return_attention else x


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
        mask = check_mask(context_mask, b, context.shape[1], x.device)
        h = self.heads
        q = self.q(self.norm_q(x)).view(b, nq, h, d // h).transpose(1, 2)  # (B, h, Nq, d)
        k, v = self.kv(self.norm_c(context)).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 x (B, h, Nc, d)
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.out(y.transpose(1, 2).reshape(b, nq, d))
        return x + self.mlp(self.norm2(x))  # (B, Nq, D)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over tokens (B, N, D) -> (B, D), counting only positions where mask (B, N) is True."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype)[..., None]  # (B, N, 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
