"""An ALBEF-style vision-language model (Li et al., 2021) and its pretraining objectives, small enough for a CPU.

Towers: the course's `VisionTransformer` and `TextTransformer` under a `DualEncoder` (projections and learnable
temperature for ITC); a `FusionEncoder` whose text layers cross-attend to the image tokens; an ITM head on the
fused [CLS]; a BERT-style MLM head on the fused tokens; and a MAE decoder on the image tower (MIM). The loss is the
sum of the selected objectives, each with weight 1 (ALBEF sums ITC, ITM and MLM):

- ITC: symmetric InfoNCE over the batch, every caption that is true of an image counted as its positive;
- ITM: the B positives plus one negative text per image and one negative image per text, drawn from the ITC
  similarities (`hard_negatives`, ALBEF section 3.2) or uniformly (random negatives);
- MLM: 15% of the caption tokens corrupted 80/10/10 (`mask_tokens`), predicted from the fused tokens, so the image
  can help;
- MIM: MAE's loss on 75% masked images, through the same image tower.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmlab import validation
from mmlab.align.model import DualEncoder
from mmlab.encoders.config import TextConfig, ViTConfig
from mmlab.encoders.text import TextTransformer
from mmlab.encoders.vision import VisionTransformer
from mmlab.pretrain.config import FusionEncoderConfig, MAEConfig
from mmlab.pretrain.fusion_encoder import FusionEncoder
from mmlab.pretrain.itm import ITMHead, itm_loss, itm_pairs
from mmlab.pretrain.mae import MaskedAutoencoder
from mmlab.pretrain.masking import IGNORE_INDEX, mask_tokens


@dataclass
class VLPConfig:
    """Sizes of the small ALBEF-style model (defaults: the lesson's)."""

    vocab_size: int = 64
    dim: int = 64
    heads: int = 4
    mlp_ratio: float = 2.0
    vision_depth: int = 2
    text_depth: int = 1
    fusion_depth: int = 1
    embed_dim: int = 64
    image_size: int = 32
    patch_size: int = 8
    max_length: int = 20
    mae: MAEConfig | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "heads", "vision_depth", "text_depth", "fusion_depth", "embed_dim",
                     "image_size", "patch_size", "max_length"):
            validation.positive_int(f"VLPConfig.{name}", getattr(self, name))
        if self.mae is None:
            self.mae = MAEConfig()


@dataclass
class Objectives:
    """Which pretraining losses to sum, and their settings. `blind`: the fusion layers get zero image tokens (a
    control that can only use the text)."""

    itc: bool = True
    itm: bool = False
    mlm: bool = False
    mim: bool = False
    hard_negatives: bool = True
    mlm_prob: float = 0.15
    blind: bool = False

    def __post_init__(self) -> None:
        for name in ("itc", "itm", "mlm", "mim", "hard_negatives", "blind"):
            validation.boolean(f"Objectives.{name}", getattr(self, name))
        validation.finite_float("Objectives.mlm_prob", self.mlm_prob, 0.0, 1.0, low_open=True)
        if not (self.itc or self.itm or self.mlm or self.mim):
            raise ValueError("Objectives: select at least one of itc, itm, mlm, mim")

    def name(self) -> str:
        parts = [n.upper() for n in ("itc", "itm", "mlm", "mim") if getattr(self, n)]
        return "+".join(parts)


class VLPModel(nn.Module):
    """images (B, 3, H, W), captions (B, L) compact ids -> embeddings, fused tokens, ITM and MLM logits."""

    def __init__(self, config: VLPConfig):
        super().__init__()
        if not isinstance(config, VLPConfig):
            raise TypeError(f"config must be a VLPConfig, got {type(config).__name__}")
        c = self.config = config
        shared = dict(dim=c.dim, heads=c.heads, mlp_ratio=c.mlp_ratio)
        vit = VisionTransformer(ViTConfig(depth=c.vision_depth, image_size=c.image_size, patch_size=c.patch_size,
                                          pool="mean", **shared))
        text = TextTransformer(TextConfig(depth=c.text_depth, vocab_size=c.vocab_size, max_length=c.max_length,
                                          pool="mean", **shared))
        self.dual = DualEncoder(vit, text, embed_dim=c.embed_dim)
        self.fusion = FusionEncoder(FusionEncoderConfig(depth=c.fusion_depth, **shared))
        self.itm_head = ITMHead(c.dim)
        self.mlm_head = nn.Sequential(nn.Linear(c.dim, c.dim), nn.GELU(), nn.LayerNorm(c.dim),
                                      nn.Linear(c.dim, c.vocab_size))  # BERT's prediction head
        self.mae = MaskedAutoencoder(vit, c.mae)

    @property
    def image_encoder(self) -> VisionTransformer:
        return self.dual.image_encoder

    @property
    def text_encoder(self) -> TextTransformer:
        return self.dual.text_encoder

    def image_tokens(self, images: Tensor) -> Tensor:
        return self.image_encoder(images)  # (B, 1 + N, D)

    def text_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.text_encoder(ids, mask)  # (B, L, D)

    def image_embedding(self, tokens: Tensor) -> Tensor:
        return F.normalize(self.dual.image_proj(self.image_encoder.pool(tokens)), dim=-1)  # (B, E)

    def text_embedding(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return F.normalize(self.dual.text_proj(self.text_encoder.pool(tokens, mask)), dim=-1)  # (B, E)

    def fuse(self, text_tokens: Tensor, mask: Tensor, image_tokens: Tensor) -> Tensor:
        return self.fusion(text_tokens, mask, image_tokens)  # (B, L, D)

    def itm_logits(self, image_tokens: Tensor, text_tokens: Tensor, mask: Tensor) -> Tensor:
        return self.itm_head(self.fuse(text_tokens, mask, image_tokens)[:, 0])  # (B, 2)

    def mlm_logits(self, images: Tensor, ids: Tensor, mask: Tensor, blind: bool = False) -> Tensor:
        """(B, L, V) logits of every caption position given the image (`blind`: zero image tokens instead)."""
        it = self.image_tokens(images)
        fused = self.fuse(self.text_tokens(ids, mask), mask, torch.zeros_like(it) if blind else it)
        return self.mlm_head(fused)


def vlp_loss(model: VLPModel, batch: dict, objectives: Objectives) -> dict[str, Tensor]:
    """The summed objectives and each part. batch: "images" (B, 3, H, W), "ids"/"mask" (B, L), "truth" (B, B) bool
    (caption j true of image i; the diagonal true), "seed" (int: the masking and negative-sampling generator),
    "vocab" ((vocab_size, mask_id, special_ids)). -> {"loss", "itc", "itm", "mlm", "mim" (those selected)}.

    A tower whose outputs are in the batch ("image_tokens" and "image_emb", or "text_tokens" and "text_emb": cached
    outputs of a frozen tower, see `train_fusion` in `mmlab.pretrain.recipes`) is not run."""
    if objectives.mim and not hasattr(model, "mae"):
        raise ValueError(f"{type(model).__name__} has no masked autoencoder: MIM needs a VLPModel")
    images, ids, mask, truth = batch["images"], batch["ids"], batch["mask"], batch["truth"]
    g = torch.Generator().manual_seed(int(batch["seed"]))
    parts: dict[str, Tensor] = {}
    it = batch["image_tokens"] if "image_tokens" in batch else model.image_tokens(images)
    tt = batch["text_tokens"] if "text_tokens" in batch else model.text_tokens(ids, mask)
    if objectives.itc or objectives.itm:
        zi = batch["image_emb"] if "image_emb" in batch else model.image_embedding(it)
        zt = batch["text_emb"] if "text_emb" in batch else model.text_embedding(tt, mask)
    if objectives.blind:
        it = torch.zeros_like(it)  # the fusion layers get no information about the image
    if objectives.itc:
        parts["itc"] = model.dual.loss(zi, zt, positive_mask=truth)
    if objectives.itm:
        with torch.no_grad():
            sim = model.dual.similarity(zi, zt)  # (B, B) scaled cosine
        img_idx, txt_idx, labels = itm_pairs(truth, sim, sim.T, hard=objectives.hard_negatives, generator=g)
        logits = model.itm_logits(it[img_idx], tt[txt_idx], mask[txt_idx])  # (3B, 2)
        parts["itm"] = itm_loss(logits, labels)  # a drawn negative is never true of its image (truth excluded)
    if objectives.mlm:
        vocab_size, mask_id, special = batch["vocab"]
        masked, labels = mask_tokens(ids, mask, vocab_size=vocab_size, mask_token_id=mask_id,
                                     special_token_ids=special, prob=objectives.mlm_prob, generator=g)
        chosen = labels != IGNORE_INDEX
        if chosen.any():
            fused = model.fuse(model.text_tokens(masked, mask), mask, it)  # (B, L, D)
            parts["mlm"] = F.cross_entropy(model.mlm_head(fused[chosen]), labels[chosen])
    if objectives.mim:
        parts["mim"] = model.mae(images, g)["loss"]
    parts["loss"] = sum(parts.values())
    return parts
