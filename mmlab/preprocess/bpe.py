"""Byte-pair encoding from scratch: the merge loop of Sennrich et al. (2016) and GPT-2's byte-level variant.

Training (`train_bpe`): start from the characters of every word (weighted by the word's frequency), count
adjacent symbol pairs, merge the most frequent pair into a new symbol, repeat until the vocabulary is full.
Encoding (`BPE.tokenize_word`): split a word into characters and apply the learned merges by rank (the
earliest-learned merge present first, leftmost occurrence first).

Ties are broken as the `tokenizers` library's `BpeTrainer` does, so both learn the *same* merges
(tests/test_bpe.py): among pairs of equal count the pair with the smaller ``(id(left), id(right))`` wins, where
ids are assigned special tokens first, then the alphabet sorted by code point, then each merged symbol in the
order it was created.

Byte-level BPE (GPT-2 and CLIP; Radford et al., 2019): the alphabet is the 256 byte values, each shown as a
printable character (`bytes_to_unicode`), so every string can be encoded and decoded exactly without ``[UNK]``.
"""
from __future__ import annotations

import heapq
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mmlab.preprocess.text import WordPieceTokenizer, basic_split, normalize_text


@dataclass
class BPE:
    """A trained BPE model: ``vocab`` (token -> id) and ``merges`` (pairs, in the order they were learned).

    ``tied[r]`` (filled by `train_bpe`) is True when merge ``r`` was chosen by the tie-break among several pairs
    of the same, highest count.
    """

    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    unk_token: str | None = "[UNK]"
    tied: list[bool] = field(default_factory=list)
    ranks: dict[tuple[str, str], int] = field(init=False, repr=False)

    def __post_init__(self):
        self.ranks = {pair: r for r, pair in enumerate(self.merges)}

    def tokenize_word(self, word: str) -> list[str]:
        """Characters of ``word``, merged by rank; a character outside the vocabulary becomes ``unk_token``."""
        symbols = list(word)
        while len(symbols) > 1:
            ranked = [(self.ranks.get((a, b), len(self.ranks)), i)
                      for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            rank, i = min(ranked)  # the earliest-learned merge present, its leftmost occurrence
            if rank == len(self.ranks):
                break
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        if self.unk_token is None:
            return symbols
        return [s if s in self.vocab else self.unk_token for s in symbols]


def _pairs(symbols: Sequence[int]) -> Counter:
    return Counter(zip(symbols, symbols[1:]))


def train_bpe(word_counts: dict[str, int], vocab_size: int, special_tokens: Sequence[str] = (),
              initial_alphabet: Iterable[str] = (), unk_token: str | None = "[UNK]",
              tie_break: str = "smaller", continuing_prefix: str = "") -> BPE:
    """Learn BPE merges from ``word_counts`` (pre-tokenised word -> frequency) until ``len(vocab) >= vocab_size``.

    The vocabulary is ``special_tokens``, then every character of the words and of ``initial_alphabet`` sorted by
    code point, then one symbol per merge. Training stops early when no pair occurs any more.
    ``tie_break="smaller"`` (the `tokenizers` rule) merges, among the most frequent pairs, the one with the smaller
    ``(id(left), id(right))``; ``"larger"`` the one with the larger, to show how much the rule decides.
    ``continuing_prefix="##"`` writes every character after a word's first with the prefix (WordPiece's training,
    as `tokenizers`' WordPieceTrainer does); the prefixed symbols get their ids after the plain alphabet, sorted.
    """
    if tie_break not in ("smaller", "larger"):
        raise ValueError(f"tie_break must be 'smaller' or 'larger', got {tie_break!r}")
    sign = 1 if tie_break == "smaller" else -1
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if not word_counts:
        raise ValueError("train_bpe got no words to learn from")
    id_to_token: list[str] = []
    vocab: dict[str, int] = {}

    def add(token: str) -> int:
        if token not in vocab:
            vocab[token] = len(id_to_token)
            id_to_token.append(token)
        return vocab[token]

    for tok in special_tokens:
        add(tok)
    for ch in sorted({c for w in word_counts for c in w} | set(initial_alphabet)):
        add(ch)
    prefix = continuing_prefix
    split = [[w[0], *(prefix + c for c in w[1:])] if prefix else list(w) for w in word_counts]
    for sym in sorted({s for w in split for s in w[1:]}) if prefix else ():
        add(sym)

    words = [[vocab[c] for c in w] for w in split]                # each word as a list of symbol ids
    freqs = list(word_counts.values())
    pair_counts: Counter = Counter()
    where: dict[tuple[int, int], set[int]] = {}                   # pair -> indices of the words containing it
    for k, symbols in enumerate(words):
        for pair, n in _pairs(symbols).items():
            pair_counts[pair] += n * freqs[k]
            where.setdefault(pair, set()).add(k)
    def entry(pair: tuple[int, int]) -> tuple:                   # max count first, then the tie-break
        return -pair_counts[pair], sign * pair[0], sign * pair[1], pair

    heap = [entry(pair) for pair in pair_counts]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    tied: list[bool] = []
    while len(vocab) < vocab_size and heap:
        neg, _, _, pair = heapq.heappop(heap)
        if -neg != pair_counts[pair]:                             # stale entry: put it back with today's count
            if pair_counts[pair] > 0:
                heapq.heappush(heap, entry(pair))
            continue
        if pair_counts[pair] < 1:
            break
        while heap and -heap[0][0] != pair_counts[heap[0][3]]:   # clean stale entries to see the runner-up
            p = heapq.heappop(heap)[3]
            if pair_counts[p] > 0:
                heapq.heappush(heap, entry(p))
        tied.append(bool(heap) and -heap[0][0] == pair_counts[pair])
        a, b = pair
        right = id_to_token[b][len(prefix):] if prefix and id_to_token[b].startswith(prefix) else id_to_token[b]
        new = add(id_to_token[a] + right)
        merges.append((id_to_token[a], id_to_token[b]))
        grown: set[tuple[int, int]] = set()
        for k in sorted(where.pop(pair, ())):
            old = words[k]
            merged, i = [], 0
            while i < len(old):                                   # merge left to right, non-overlapping
                if i + 1 < len(old) and old[i] == a and old[i + 1] == b:
                    merged.append(new)
                    i += 2
                else:
                    merged.append(old[i])
                    i += 1
            before, after = _pairs(old), _pairs(merged)
            for p in before.keys() | after.keys():
                change = after[p] - before[p]
                if change:
                    pair_counts[p] += change * freqs[k]
                    if change > 0:
                        grown.add(p)
                if after[p]:
                    where.setdefault(p, set()).add(k)
                elif p != pair and p in where:
                    where[p].discard(k)
            words[k] = merged
        for p in grown:
            heapq.heappush(heap, entry(p))
    return BPE(vocab, merges, unk_token, tied)


def word_counts(texts: Iterable[str], pre_tokenize) -> dict[str, int]:
    """Frequency of every pre-tokenised word over ``texts``, in first-seen order."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(pre_tokenize(text))
    return dict(counts)


def bert_pre_tokenize(text: str) -> list[str]:
    """The uncased BERT normaliser and word split of `mmlab.preprocess.text` (BertNormalizer + BertPreTokenizer)."""
    return basic_split(normalize_text(text))


class CharBPETokenizer:
    """Character-level BPE on BERT-normalised words: characters never seen in training become ``[UNK]``."""

    def __init__(self, model: BPE):
        self.model = model

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int,
              special_tokens: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]"),
              tie_break: str = "smaller") -> "CharBPETokenizer":
        return cls(train_bpe(word_counts(texts, bert_pre_tokenize), vocab_size, special_tokens, unk_token="[UNK]",
                             tie_break=tie_break))

    @property
    def vocab_size(self) -> int:
        return len(self.model.vocab)

    def tokenize(self, text: str) -> list[str]:
        return [t for w in bert_pre_tokenize(text) for t in self.model.tokenize_word(w)]


def train_wordpiece(texts: Iterable[str], vocab_size: int,
                    special_tokens: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")) -> WordPieceTokenizer:
    """A WordPiece vocabulary learned as `tokenizers`' WordPieceTrainer does (BPE merges on words written
    ``a ##b ##c``), used by greedy longest-match `WordPieceTokenizer` on BERT-normalised words.

    Unlike the library, whose ``##`` pieces are numbered in hash-map order (so its vocabulary changes from run
    to run through the tie-break), this is deterministic.
    """
    model = train_bpe(word_counts(texts, bert_pre_tokenize), vocab_size, special_tokens, continuing_prefix="##")
    return WordPieceTokenizer(model.vocab, special_tokens_in_text=False)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table byte -> printable character: printable Latin-1 bytes map to themselves, the other 68
    (control characters, space, ...) to U+0100 onwards (the space 0x20 becomes "Ġ", U+0120)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


def _kind(ch: str) -> str:
    """'s' whitespace, 'L' letter (\\p{L}), 'N' number (\\p{N}), 'O' anything else."""
    if ch.isspace():
        return "s"
    return {"L": "L", "N": "N"}.get(unicodedata.category(ch)[0], "O")


def gpt2_split(text: str) -> list[str]:
    """GPT-2's pre-tokenisation written as a scanner, the regex
    ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``:
    a word keeps the single space before it (" cat"), runs of spaces stay apart."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "'":
            c = next((c for c in _CONTRACTIONS if text.startswith(c, i + 1)), None)
            if c is not None:
                out.append("'" + c)
                i += 1 + len(c)
                continue
        start = i
        if text[i] == " " and i + 1 < n and _kind(text[i + 1]) != "s":
            i += 1                                                # the optional space before a word
        kind = _kind(text[i])
        if kind != "s":
            j = i + 1
            while j < n and _kind(text[j]) == kind:
                j += 1
            out.append(text[start:j])
            i = j
            continue
        j = i
        while j < n and text[j].isspace():
            j += 1
        if j < n and j - i > 1:                                   # \s+(?!\S): leave the last space to the next word
            j -= 1
        out.append(text[i:j])
        i = j
    return out


class ByteLevelBPETokenizer:
    """GPT-2-style byte-level BPE: no normalisation, GPT-2 split, bytes as characters, lossless `decode`."""

    def __init__(self, model: BPE):
        self.model = model
        self.byte_to_char = bytes_to_unicode()
        self.char_to_byte = {c: b for b, c in self.byte_to_char.items()}

    def pre_tokenize(self, text: str) -> list[str]:
        """GPT-2 split, then each word's UTF-8 bytes written with `bytes_to_unicode` characters."""
        return ["".join(self.byte_to_char[b] for b in w.encode("utf-8")) for w in gpt2_split(text)]

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int,
              special_tokens: Sequence[str] = ()) -> "ByteLevelBPETokenizer":
        alphabet = bytes_to_unicode().values()
        if vocab_size < len(special_tokens) + 256:
            raise ValueError(f"vocab_size={vocab_size} is smaller than the 256 bytes plus the special tokens")
        tok = cls(BPE({}, []))
        model = train_bpe(word_counts(texts, tok.pre_tokenize), vocab_size, special_tokens, alphabet, unk_token=None)
        return cls(model)

    @property
    def vocab_size(self) -> int:
        return len(self.model.vocab)

    def tokenize(self, text: str) -> list[str]:
        return [t for w in self.pre_tokenize(text) for t in self.model.tokenize_word(w)]

    def encode(self, text: str) -> list[int]:
        return [self.model.vocab[t] for t in self.tokenize(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> the exact original text (tokens -> characters -> bytes -> UTF-8)."""
        id_to_token = {i: t for t, i in self.model.vocab.items()}
        for i in ids:
            if i not in id_to_token:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
        data = bytes(self.char_to_byte[c] for i in ids for c in id_to_token[i])
        return data.decode("utf-8", errors="replace")
