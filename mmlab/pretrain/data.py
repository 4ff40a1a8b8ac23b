"""Shapes-World prepared for vision-language pretraining: a compact WordPiece vocabulary with [MASK], tokenised
captions and questions, and what each caption says (so retrieval can be scored by truth, not by item identity).

Shapes-World has 48 (shape, colour, size) combinations and nine regions, so many items look alike and a caption of
one item is often just as true of another. Here a caption is *true of an image* when every attribute it names
matches the image: its shape and colour (always named), its size and its region (when named; some templates leave
them out). Retrieval, ITC positives and ITM negatives in this package use that definition.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mmlab import validation
from mmlab.data.shapes_text import COLORS, SHAPES, SIZES, WHERE
from mmlab.data.shapes_world import ShapesWorld
from mmlab.preprocess.text import WordPieceTokenizer

ATTRIBUTES = ("shape", "color", "size", "region")
NOT_NAMED = -1  # a caption that does not name an attribute
REGIONS = tuple(phrase for row in WHERE for phrase in row)  # region r = 3 * row + column


class CompactVocab:
    """The WordPiece ids that occur in the given texts, plus [PAD], [UNK], [CLS], [SEP], [MASK], renumbered 0..V-1
    ([PAD] = 0). Any other word becomes [UNK]: a tower trained from scratch knows no more than that anyway (the
    lesson-06 convention, with [MASK] added for MLM)."""

    SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

    def __init__(self, texts: Sequence[str], tokenizer: WordPieceTokenizer | None = None):
        texts = validation.str_list("texts", texts, single=False)
        self.tokenizer = WordPieceTokenizer.from_minilm() if tokenizer is None else tokenizer
        tok = self.tokenizer
        special = [tok.vocab[t] for t in self.SPECIAL]
        seen = {i for text in sorted(set(texts)) for i in tok.convert_tokens_to_ids(tok.tokenize(text))}
        self.wordpiece_ids = special + sorted(seen - set(special))  # compact id -> WordPiece id
        self._compact = {w: c for c, w in enumerate(self.wordpiece_ids)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(5)
        self.special_ids = (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id)

    def __len__(self) -> int:
        return len(self.wordpiece_ids)

    def encode(self, texts: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
        """texts -> (input_ids, attention_mask), (B, max_length) int64 each; distinct texts tokenised once."""
        texts = validation.str_list("texts", texts, single=False)
        unique = sorted(set(texts))
        enc = self.tokenizer.encode(unique, max_length=max_length, padding="max_length")
        table = torch.tensor([self._compact.get(w, self.unk_id) for w in range(self.tokenizer.vocab_size)])
        row = {t: i for i, t in enumerate(unique)}
        index = torch.tensor([row[t] for t in texts])
        return table[enc["input_ids"]][index], enc["attention_mask"][index]

    def word_id(self, word: str) -> int:
        """The compact id of a word that is a single WordPiece (e.g. "red"); ValueError otherwise."""
        pieces = self.tokenizer.tokenize(word)
        if len(pieces) != 1 or self.tokenizer.vocab.get(pieces[0]) not in self._compact:
            raise ValueError(f"{word!r} is not a single token of this vocabulary (pieces {pieces})")
        return self._compact[self.tokenizer.vocab[pieces[0]]]

    def decode(self, ids: Sequence[int] | Tensor) -> list[str]:
        """Compact ids -> WordPiece tokens (specials included)."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return [self.tokenizer.id_to_token[self.wordpiece_ids[i]] for i in ids]


def caption_facts(caption: str) -> tuple[int, int, int, int]:
    """(shape, colour, size, region) a caption names, as indices into SHAPES, COLORS, SIZES, REGIONS, -1 where the
    caption names none. Only the canonical words of the train/val templates are recognised."""
    words = f" {caption} ".replace(",", " ")

    def find(options: Sequence[str]) -> int:
        hits = [i for i, w in enumerate(options) if f" {w} " in words]
        return hits[0] if len(hits) == 1 else NOT_NAMED

    return find(SHAPES), find(COLORS), find(SIZES), find(REGIONS)


def names_wrong(image_facts: Tensor, caption_facts_: Tensor) -> Tensor:
    """Facts of images and of captions (..., 4), broadcast together -> bool (..., 4): the caption names that attribute
    (shape, colour, size, region) and it is not the image's."""
    return (caption_facts_ != NOT_NAMED) & (caption_facts_ != image_facts)


def true_of(image_facts: Tensor, caption_facts_: Tensor) -> Tensor:
    """(Ni, 4) image facts, (Nt, 4) caption facts -> (Ni, Nt) bool: every attribute the caption names matches."""
    return ~names_wrong(image_facts[:, None, :], caption_facts_[None, :, :]).any(dim=-1)


@dataclass
class VLData:
    """One split of Shapes-World, tokenised. N images, 4 captions each (caption k of image i at row 4i + k)."""

    images: Tensor  # (N, 3, H, W)
    captions: list[str]  # (4N,)
    ids: Tensor  # (4N, L) compact ids
    mask: Tensor  # (4N, L)
    owner: Tensor  # (4N,) image of each caption
    image_facts: Tensor  # (N, 4) shape, colour, size, region
    caption_facts: Tensor  # (4N, 4), -1 where not named
    question_ids: Tensor  # (N, Lq)
    question_mask: Tensor  # (N, Lq)
    answers: Tensor  # (N,) index into shapes_text.ANSWERS
    questions: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def truth(self, image_index: Tensor | None = None, caption_index: Tensor | None = None) -> Tensor:
        """(Ni, Nt) bool: caption true of image (all by default)."""
        img = self.image_facts if image_index is None else self.image_facts[image_index]
        cap = self.caption_facts if caption_index is None else self.caption_facts[caption_index]
        return true_of(img, cap)


def load_vl_data(split: str, size: int, vocab: CompactVocab | None = None, max_length: int = 20,
                 seed: int = 0) -> tuple[VLData, CompactVocab]:
    """Shapes-World `split` (items 0..size-1 of `seed`) tokenised with `vocab` (built from this split's captions and
    questions when None)."""
    batch = ShapesWorld(split, size=size, seed=seed, with_audio=False).batch(range(size))
    captions = [c for caps in batch["captions"] for c in caps]
    if vocab is None:
        vocab = CompactVocab(captions + list(batch["question"]))
    ids, mask = vocab.encode(captions, max_length)
    q_ids, q_mask = vocab.encode(batch["question"], max_length)
    region = (batch["position"].flip(1) * 3).floor().clamp(0, 2).long()  # (N, 2) row from y, column from x
    image_facts = torch.stack([batch["shape"], batch["color"], batch["size"], region[:, 0] * 3 + region[:, 1]], 1)
    known = {c: caption_facts(c) for c in set(captions)}
    facts = torch.tensor([known[c] for c in captions])
    return VLData(batch["image"], captions, ids, mask, torch.arange(size).repeat_interleave(4), image_facts, facts,
                  q_ids, q_mask, batch["answer_id"], list(batch["question"])), vocab
