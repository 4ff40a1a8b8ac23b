"""A caption vocabulary: the WordPiece ids of the course tokenizer that occur in the training captions, renumbered.

A decoder trained from scratch can only ever emit tokens it has seen, and its output layer costs one row per
token, so it gets the compact vocabulary of its training texts (as the from-scratch text tower of lesson 06 does)
instead of BERT's 30,522 pieces. [CLS] starts every caption (the begin-of-sequence id), [SEP] ends it (the
end-of-sequence id that stops decoding), [PAD] (compact id 0) pads, [UNK] stands for any unseen piece.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmlab.preprocess.text import WordPieceTokenizer, basic_split, normalize_text
from mmlab.validation import int_at_least, str_list


def caption_words(text: str) -> str:
    """`text` lower-cased and split into words with punctuation apart, joined by spaces: the tokenised form BLEU
    and CIDEr compare (`mmlab.evaluate.bleu`), e.g. "Small box, coloured red" -> "small box , coloured red"."""
    return " ".join(basic_split(normalize_text(text)))


class CaptionVocabulary:
    """WordPiece ids <-> compact decoder ids 0..size-1, built from the training texts."""

    def __init__(self, tokenizer: WordPieceTokenizer, texts: Sequence[str]):
        if not isinstance(tokenizer, WordPieceTokenizer):
            raise TypeError(f"tokenizer must be a WordPieceTokenizer, got {type(tokenizer).__name__}")
        texts = str_list("texts", texts, single=False)
        self.tokenizer = tokenizer
        specials = [tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id]
        seen = {i for text in texts for i in tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))}
        self.wordpiece_ids = torch.tensor(sorted(seen | set(specials)))  # compact id -> WordPiece id
        self.to_compact = torch.full((tokenizer.vocab_size,), -1, dtype=torch.long)
        self.to_compact[self.wordpiece_ids] = torch.arange(len(self.wordpiece_ids))
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (int(self.to_compact[i]) for i in specials)
        self.to_compact[self.to_compact < 0] = self.unk_id

    @property
    def size(self) -> int:
        return len(self.wordpiece_ids)

    def __len__(self) -> int:
        return self.size

    def encode(self, texts: Sequence[str], max_length: int = 32) -> dict[str, Tensor]:
        """texts -> {"input_ids", "attention_mask"} (B, L) with L the longest row: [CLS] pieces [SEP] [PAD]...;
        pieces beyond max_length - 2 are cut (the row still ends with [SEP])."""
        texts = str_list("texts", texts, single=False)
        int_at_least("max_length", max_length, 2)
        e = self.tokenizer.encode(texts, max_length=max_length, padding="longest")
        return {"input_ids": self.to_compact[e["input_ids"]], "attention_mask": e["attention_mask"]}

    def bos(self, batch: int) -> Tensor:
        """The prompt of `batch` captions about to be generated: (batch, 1) of the begin-of-sequence id."""
        return torch.full((int_at_least("batch", batch, 1), 1), self.bos_id, dtype=torch.long)

    def decode(self, ids: Tensor) -> list[str]:
        """(B, T) compact ids -> B texts: what follows the first [CLS] up to the first [SEP] after it (or the end),
        pieces glued into words; [PAD] skipped, [UNK] kept visible."""
        if not isinstance(ids, Tensor) or ids.ndim != 2:
            raise ValueError(f"ids must be a (B, T) tensor, got {getattr(ids, 'shape', type(ids).__name__)}")
        out = []
        for row in ids.tolist():
            if row and row[0] == self.bos_id:
                row = row[1:]
            if self.eos_id in row:
                row = row[:row.index(self.eos_id)]
            if any(not 0 <= i < self.size for i in row):
                raise ValueError(f"ids must be in [0, {self.size}), got {row}")
            out.append(self.tokenizer.decode(self.wordpiece_ids[torch.tensor(row, dtype=torch.long)].tolist()))
        return out
