"""The Shapes-World CLIP recipe the alignment and fine-tuning lessons share: a compact caption vocabulary,
seeded contrastive batches, the tiny towers, the loss with same-attribute positives, attribute-level retrieval.

    data = CaptionedImages.from_split(ShapesWorld("train", size=2000, with_audio=False), vocab)
    model = tiny_dual_encoder(vocab)
    fit(model, clip_loss, data.batches(size=128), TrainConfig(steps=250), callbacks=(clamp_logit_scale,))

Shapes-World has 48 (shape, colour, size) combinations and its captions name exactly those (some also the
position), so several images in a batch fit a caption equally well: `attribute_classes` numbers the 48
combinations, batches carry a `positive` mask of same-class pairs, and `attribute_recall` counts a retrieved
item as correct when it has the query's class.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmlab import validation
from mmlab.align.model import DualEncoder
from mmlab.encoders import AudioConfig, AudioTransformer, TextConfig, TextTransformer, VisionTransformer, ViTConfig
from mmlab.preprocess.text import WordPieceTokenizer

CAPTIONS_PER_IMAGE = 4


def attribute_classes(batch: dict[str, Any]) -> Tensor:
    """(N,) class in [0, 48) of each Shapes-World item: shape * 12 + colour * 2 + size."""
    return batch["shape"] * 12 + batch["color"] * 2 + batch["size"]


class CompactVocabulary:
    """The WordPiece ids that occur in `captions` (plus [PAD] and [UNK]), renumbered 0..size-1; any other
    word becomes [UNK]. A tower trained from scratch on these captions learns nothing useful for the rows
    of words it never sees, so its embedding table only needs the seen ones."""

    def __init__(self, captions: Sequence[str], max_length: int = 24, tokenizer: WordPieceTokenizer | None = None):
        captions = validation.str_list("captions", captions, single=False)
        self.max_length = validation.int_at_least("max_length", max_length, 3)
        self.tokenizer = tokenizer or WordPieceTokenizer.from_minilm()
        pad, unk = self.tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]"])
        ids = self.tokenizer.encode(captions, max_length=self.max_length, padding="longest")["input_ids"]
        self.wordpiece_ids = torch.unique(torch.cat([ids.flatten(), torch.tensor([pad, unk])]))  # sorted
        self.pad_id = int((self.wordpiece_ids == pad).nonzero())
        self.unk_id = int((self.wordpiece_ids == unk).nonzero())
        self._to_compact = torch.full((self.tokenizer.vocab_size,), self.unk_id)
        self._to_compact[self.wordpiece_ids] = torch.arange(len(self.wordpiece_ids))

    def __len__(self) -> int:
        return len(self.wordpiece_ids)

    def __call__(self, texts: Sequence[str], padding: str = "longest") -> dict[str, Tensor]:
        """{"input_ids": (N, T) compact ids, "attention_mask": (N, T)}; padding "longest" or "max_length"."""
        enc = self.tokenizer.encode(validation.str_list("texts", texts), max_length=self.max_length, padding=padding)
        return {"input_ids": self._to_compact[enc["input_ids"]], "attention_mask": enc["attention_mask"]}

    def unknown_share(self, texts: Sequence[str]) -> float:
        """Fraction of `texts` with at least one word outside the vocabulary."""
        return float((self(texts)["input_ids"] == self.unk_id).any(dim=1).float().mean())


@dataclass
class CaptionedImages:
    """A split held in memory: images (N, 3, H, W), caption ids (4N, T) with rows 4i..4i+3 describing image i,
    attribute classes (N,), and any per-image extras (e.g. {"audio": log-mels (N, ...)})."""
    images: Tensor
    captions: list[str]
    input_ids: Tensor
    attention_mask: Tensor
    classes: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def from_split(cls, batch: dict[str, Any], vocab: CompactVocabulary, **extras: Tensor) -> "CaptionedImages":
        """From a `ShapesWorld(...).batch(range(n))` dict; caption ids padded to vocab.max_length."""
        captions = [c for caps in batch["captions"] for c in caps]
        enc = vocab(captions, padding="max_length")
        return cls(batch["image"], captions, enc["input_ids"], enc["attention_mask"], attribute_classes(batch),
                   dict(extras))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def owner(self) -> Tensor:
        """(4N,) the image each caption describes."""
        return torch.arange(len(self)).repeat_interleave(CAPTIONS_PER_IMAGE)

    def batch(self, seed: int, size: int, trim: bool = True) -> dict[str, Any]:
        """`size` images drawn with replacement by a generator seeded with `seed`, one random caption each;
        "positive" (B, B) marks same-class pairs. `trim` cuts the caption ids to the batch's longest caption."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, len(self), (size,), generator=g)  # (B,)
        rows = idx * CAPTIONS_PER_IMAGE + torch.randint(0, CAPTIONS_PER_IMAGE, (size,), generator=g)  # (B,)
        length = int(self.attention_mask[rows].sum(1).max()) if trim else self.input_ids.shape[1]
        text = {"input_ids": self.input_ids[rows, :length], "attention_mask": self.attention_mask[rows, :length]}
        out = {"image": self.images[idx], "index": idx, "caption_rows": rows, "text": text,
               "positive": self.classes[idx][:, None] == self.classes[idx][None, :]}  # (B, B)
        out.update({name: value[idx] for name, value in self.extras.items()})
        return out

    def batches(self, size: int = 128, offset: int = 0, trim: bool = True) -> Callable[[int], dict[str, Any]]:
        """`step -> self.batch(offset + step, size)`, the batch source `mmlab.train.fit` takes."""
        validation.positive_int("size", size)
        validation.non_negative_int("offset", offset)
        return lambda step: self.batch(offset + step, size, trim)


def tiny_dual_encoder(vocab_size: int, max_length: int = 24, dim: int = 64, depth: int = 2, loss: str = "info_nce",
                      image_size: int = 32, patch_size: int = 8, audio: AudioConfig | None = None,
                      embed_dim: int = 64) -> DualEncoder:
    """The lessons' dual encoder: a ViT (8x8 patches of 32x32 images) and a text transformer, width `dim`,
    `depth` layers, 4 heads, MLP ratio 2, mean pooling, an `embed_dim`-d joint space; with `audio`, a third tower
    `AudioTransformer(audio)` (built after the other two, so their initial weights do not change)."""
    vit = VisionTransformer(ViTConfig(dim=dim, depth=depth, heads=4, mlp_ratio=2.0, image_size=image_size,
                                      patch_size=patch_size, pool="mean"))
    text = TextTransformer(TextConfig(vocab_size=vocab_size, max_length=max_length, dim=dim, depth=depth, heads=4,
                                      mlp_ratio=2.0, pool="mean"))
    if audio is not None and not isinstance(audio, AudioConfig):
        raise TypeError(f"audio must be an mmlab.encoders.AudioConfig or None, got {type(audio).__name__}")
    audio_tower = AudioTransformer(audio) if audio is not None else None
    return DualEncoder(vit, text, embed_dim=embed_dim, loss=loss, audio_encoder=audio_tower)


def clip_loss(model: DualEncoder, batch: dict[str, Any]) -> Tensor:
    """The model's contrastive loss on a batch, with its same-class pairs as positives (InfoNCE only: SigLIP's
    loss takes no mask, so for SigLIP the duplicates count as negatives)."""
    out = model(batch["image"], batch["text"])
    mask = batch["positive"] if model.loss_kind == "info_nce" else None
    return model.loss(out["image"], out["text"], positive_mask=mask)


def attribute_recall(image_features: Tensor, text_features: Tensor, image_classes: Tensor, text_classes: Tensor,
                     ks: Sequence[int] = (1,)) -> dict[str, float]:
    """Retrieval where any item of the query's class counts: image->text "i2t@K" = fraction of images with a
    caption of their class among the K nearest texts; text->image "t2i@K" likewise. Chance at K=1 is about
    1/48 for balanced classes."""
    img, txt = _same_width(image_features, text_features)
    image_classes = validation.class_indices("image_classes", image_classes, len(img))
    text_classes = validation.class_indices("text_classes", text_classes, len(txt))
    ks = [validation.positive_int("ks", k) for k in ks]
    sim = img @ txt.T  # (N_i, N_t)
    out = {}
    for k in ks:
        nearest_texts = sim.topk(min(k, len(txt)), dim=1).indices  # (N_i, k)
        nearest_images = sim.topk(min(k, len(img)), dim=0).indices  # (k, N_t)
        out[f"i2t@{k}"] = float((text_classes[nearest_texts] == image_classes[:, None]).any(1).float().mean())
        out[f"t2i@{k}"] = float((image_classes[nearest_images] == text_classes[None, :]).any(0).float().mean())
    return out


def modality_gap(image_features: Tensor, text_features: Tensor) -> float:
    """Euclidean distance between the centroids of the (normalised) image and text embeddings
    (Liang et al., 2022, "Mind the Gap")."""
    img, txt = _same_width(image_features, text_features)
    return float((img.mean(0) - txt.mean(0)).norm())


def mean_pairwise_cosine(features: Tensor, groups: Tensor | None = None) -> float:
    """Mean cosine similarity over pairs of distinct rows of `features` (N, D); with `groups` (N,) only over pairs
    from different groups (e.g. captions of different colours). Near 1: the rows have collapsed onto one
    direction; a space that keeps the groups apart scores lower."""
    x = torch.nn.functional.normalize(validation.features("features", features), dim=1)
    if len(x) < 2:
        raise ValueError(f"features needs at least 2 rows to form a pair, got {len(x)}")
    pairs = ~torch.eye(len(x), dtype=torch.bool)
    if groups is not None:
        groups = validation.class_indices("groups", groups, len(x))
        pairs &= groups[:, None] != groups[None, :]
        if not pairs.any():
            raise ValueError("groups puts every row in one group: there is no pair from different groups")
    return float((x @ x.T)[pairs].mean())


def _same_width(image_features: Tensor, text_features: Tensor) -> tuple[Tensor, Tensor]:
    img = validation.features("image_features", image_features)
    txt = validation.features("text_features", text_features)
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"width mismatch: image_features are {img.shape[1]} wide, text_features {txt.shape[1]}")
    return img, txt
