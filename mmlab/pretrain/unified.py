"""The unified paradigm: one multiway transformer (VLMo, Bao et al., 2022) run as an image encoder, a text encoder
and a fusion encoder, with the ITC, ITM and MLM objectives of `mmlab.pretrain.vlp`.

`UnifiedVLPModel` has the interface `vlp_loss` and the measurements of `mmlab.pretrain.recipes` use
(`image_tokens`, `text_tokens`, `image_embedding`, `text_embedding`, `fuse`, `itm_head`, `mlm_head`, `dual`), so the
same objectives and the same scoring run on both paradigms. What differs is where the work happens:

- "tokens" here are the *embedded inputs* (patch or word embeddings with positions and the modality type), not
  the outputs of separate towers: every mode runs the shared blocks itself;
- `image_embedding` / `text_embedding` run the blocks on one modality (VLMo's dual-encoder mode, used for ITC and
  retrieval), `fuse` runs them once over the concatenated image and text tokens, every token attending to every
  other (VLMo's fusion mode, used for ITM and MLM).

Embeddings are the mean of the output tokens (the image's after its CLS token; the text's real tokens), as in
`VLPModel`, so the two paradigms differ in their architecture, not in their pooling. There is no MIM here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmlab import validation
from mmlab.align.model import DualEncoder
from mmlab.encoders.layers import cls_or_mean, masked_mean
from mmlab.pretrain.config import MultiwayConfig
from mmlab.pretrain.itm import ITMHead
from mmlab.pretrain.multiway import MultiwayTransformer


@dataclass
class UnifiedConfig:
    """Sizes of the small VLMo-style model. `vl_layers`: top layers whose joint pass uses the vision-language
    expert."""

    vocab_size: int = 64
    dim: int = 64
    heads: int = 4
    mlp_ratio: float = 2.0
    depth: int = 3
    vl_layers: int = 1
    embed_dim: int = 64
    image_size: int = 32
    patch_size: int = 8
    max_length: int = 20

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "heads", "depth", "embed_dim", "image_size", "patch_size", "max_length"):
            validation.positive_int(f"UnifiedConfig.{name}", getattr(self, name))
        validation.int_in_range("UnifiedConfig.vl_layers", self.vl_layers, 0, self.depth)

    def multiway(self) -> MultiwayConfig:
        return MultiwayConfig(dim=self.dim, depth=self.depth, heads=self.heads, mlp_ratio=self.mlp_ratio,
                              image_size=self.image_size, patch_size=self.patch_size, vocab_size=self.vocab_size,
                              max_length=self.max_length, vl_layers=self.vl_layers)


class UnifiedVLPModel(nn.Module):
    """images (B, 3, H, W), captions (B, L) compact ids -> embeddings (dual mode), fused tokens (fusion mode)."""

    def __init__(self, config: UnifiedConfig):
        super().__init__()
        if not isinstance(config, UnifiedConfig):
            raise TypeError(f"config must be a UnifiedConfig, got {type(config).__name__}")
        c = self.config = config
        self.encoder = MultiwayTransformer(c.multiway())
        # the projections and the learnable temperature of ITC; the towers are the shared encoder's two modes
        self.dual = DualEncoder(nn.Identity(), nn.Identity(), embed_dim=c.embed_dim, image_dim=c.dim, text_dim=c.dim)
        self.itm_head = ITMHead(c.dim)
        self.mlm_head = nn.Sequential(nn.Linear(c.dim, c.dim), nn.GELU(), nn.LayerNorm(c.dim),
                                      nn.Linear(c.dim, c.vocab_size))

    def image_tokens(self, images: Tensor) -> Tensor:
        return self.encoder.embed_image(images)  # (B, 1 + P, D), embedded, before the blocks

    def text_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.encoder.embed_text(ids)  # (B, L, D), embedded, before the blocks

    def image_embedding(self, tokens: Tensor) -> Tensor:
        out = self.encoder.run_blocks(tokens, None, tokens.shape[1], joint=False)
        return F.normalize(self.dual.image_proj(cls_or_mean(out, "mean")), dim=-1)  # (B, E)

    def text_embedding(self, tokens: Tensor, mask: Tensor) -> Tensor:
        out = self.encoder.run_blocks(tokens, mask.bool(), 0, joint=False)
        return F.normalize(self.dual.text_proj(masked_mean(out, mask)), dim=-1)  # (B, E)

    def fuse(self, text_tokens: Tensor, mask: Tensor, image_tokens: Tensor) -> Tensor:
        """One pass over [image tokens, text tokens] -> the text positions (B, L, D); [:, 0] is the text's [CLS]."""
        if image_tokens.shape[0] != text_tokens.shape[0]:
            raise ValueError(f"batch mismatch: text {text_tokens.shape[0]} vs image {image_tokens.shape[0]}")
        n = image_tokens.shape[1]
        keep = torch.cat([torch.ones(mask.shape[0], n, dtype=torch.bool, device=mask.device), mask.bool()], 1)
        out = self.encoder.run_blocks(torch.cat([image_tokens, text_tokens], 1), keep, n, joint=True)
        return out[:, n:]

    def itm_logits(self, image_tokens: Tensor, text_tokens: Tensor, mask: Tensor) -> Tensor:
        return self.itm_head(self.fuse(text_tokens, mask, image_tokens)[:, 0])  # (B, 2)

    def mlm_logits(self, images: Tensor, ids: Tensor, mask: Tensor, blind: bool = False) -> Tensor:
        it = self.image_tokens(images)
        return self.mlm_head(self.fuse(self.text_tokens(ids, mask), mask, torch.zeros_like(it) if blind else it))


__all__ = ["UnifiedConfig", "UnifiedVLPModel"]
