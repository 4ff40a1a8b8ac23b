"""mmlab.preprocess.bpe: from-scratch BPE == the tokenizers library's BpeTrainer, merge for merge."""
from __future__ import annotations

import json

import pytest

from mmlab.preprocess.bpe import (
    BPE,
    ByteLevelBPETokenizer,
    CharBPETokenizer,
    bytes_to_unicode,
    gpt2_split,
    train_bpe,
    train_wordpiece,
)
from mmlab.preprocess.text import dataset_descriptions, minilm_path

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
HARD = ["Café déjà vu 😀🚀 naïve 東京タワー don't it's we'll I'M\n\n  x ½ ² ³ — “quotes” \t tab  ",
        "   leading spaces and trailing   ", "a\u2028b\u00a0c\u3000d", "e\u0301 vs \u00e9", "", " ", "'s'''t''"]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [line for text in dataset_descriptions().values() for line in text.splitlines() if line.strip()]


def _merges(tok) -> list[tuple[str, str]]:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def _hf_char_bpe(texts, vocab_size):
    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                                       show_progress=False))
    return tok


def _hf_byte_bpe(texts, vocab_size):
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                                       show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def test_sennrich_toy_example():
    # Sennrich et al. (2016), Fig. 1 corpus (without the end-of-word symbol): low x5, lower x2, newest x6, widest x3
    model = train_bpe({"low": 5, "lower": 2, "newest": 6, "widest": 3}, vocab_size=14)
    # e s and s t both occur 9 times: (e, s) wins on smaller ids; then es t (9, alone);
    # then l o and o w (7 each): (l, o) wins ('l' < 'o'); then lo w (7, alone)
    assert model.merges[:4] == [("e", "s"), ("es", "t"), ("l", "o"), ("lo", "w")]
    assert model.tied[:4] == [True, False, True, False]
    theirs = tokenizers.Tokenizer(models.BPE())
    theirs.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    theirs.train_from_iterator(["low"] * 5 + ["lower"] * 2 + ["newest"] * 6 + ["widest"] * 3,
                               trainers.BpeTrainer(vocab_size=14, show_progress=False))
    assert _merges(theirs) == model.merges
    assert model.tokenize_word("lowest") == ["low", "est"]
    assert model.tokenize_word("lowq") == ["low", "[UNK]"]
    assert len(model.vocab) == 14


def test_tie_break_rule_decides_ties_only():
    larger = train_bpe({"low": 5, "lower": 2, "newest": 6, "widest": 3}, vocab_size=14, tie_break="larger")
    assert larger.merges[:4] == [("s", "t"), ("e", "st"), ("o", "w"), ("l", "ow")]
    assert larger.tied[:4] == [True, False, True, False]
    untied = {"abc": 3, "ab": 2, "de": 1}  # (a, b) 5 > (b, c) 3 > (d, e) 1, then (ab, c) 3 > (d, e) 1: no ties
    assert train_bpe(untied, 20).merges == train_bpe(untied, 20, tie_break="larger").merges == [
        ("a", "b"), ("ab", "c"), ("d", "e")]
    assert not any(train_bpe(untied, 20).tied)


def test_training_stops_when_no_pair_is_left():
    model = train_bpe({"ab": 1}, vocab_size=100)
    assert model.merges == [("a", "b")] and len(model.vocab) == 3


def test_encode_applies_merges_by_rank():
    model = BPE({c: i for i, c in enumerate(["a", "b", "c", "bc", "ab"])}, merges=[("b", "c"), ("a", "b")])
    assert model.tokenize_word("abc") == ["a", "bc"]   # rank 0 (b c) wins although (a b) comes first
    assert model.tokenize_word("abab") == ["ab", "ab"]
    assert model.tokenize_word("aaa") == ["a", "a", "a"]


@pytest.mark.parametrize("vocab_size", [120, 400, 1000])
def test_char_bpe_equals_tokenizers(corpus, vocab_size):
    ours = CharBPETokenizer.train(corpus, vocab_size)
    theirs = _hf_char_bpe(corpus, vocab_size)
    assert ours.model.merges == _merges(theirs)
    assert ours.model.vocab == theirs.get_vocab()
    assert ours.vocab_size == vocab_size
    assert any(ours.model.tied)  # the comparison exercises the tie-break
    held = (minilm_path() / "README.md").read_text(encoding="utf-8")
    for text in [held, *HARD]:
        assert ours.tokenize(text) == theirs.encode(text).tokens, repr(text[:40])


@pytest.mark.parametrize("vocab_size", [300, 1000])
def test_byte_bpe_equals_tokenizers_and_round_trips(corpus, vocab_size):
    ours = ByteLevelBPETokenizer.train(corpus, vocab_size, SPECIALS)
    theirs = _hf_byte_bpe(corpus, vocab_size)
    assert ours.model.merges == _merges(theirs)
    assert ours.model.vocab == theirs.get_vocab()
    held = (minilm_path() / "README.md").read_text(encoding="utf-8")
    for text in [held, *HARD]:
        ids = ours.encode(text)
        assert ids == theirs.encode(text).ids, repr(text[:40])
        assert ours.decode(ids) == text == theirs.decode(ids)


@pytest.mark.parametrize("text", HARD)
def test_gpt2_split_equals_tokenizers(text):
    byte_to_char = bytes_to_unicode()
    ours = ["".join(byte_to_char[b] for b in w.encode("utf-8")) for w in gpt2_split(text)]
    theirs = [w for w, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)]
    assert ours == theirs
    assert "".join(gpt2_split(text)) == text


def test_wordpiece_training_is_deterministic_and_matches_the_library_alphabet(corpus):
    ours = train_wordpiece(corpus, 1000)
    assert ours.vocab == train_wordpiece(corpus, 1000).vocab and ours.vocab_size == 1000
    theirs = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    theirs.normalizer = normalizers.BertNormalizer(lowercase=True)
    theirs.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    theirs.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=SPECIALS,
                                                                 show_progress=False))
    def base(vocab):
        return {t for t in vocab if len(t) == 1 or (t.startswith("##") and len(t) == 3)}
    assert base(ours.vocab) == base(theirs.get_vocab()) and theirs.get_vocab_size() == 1000
    assert ours.tokenize("tokenization") == ["to", "##ke", "##n", "##iz", "##ation"]
    assert ours.tokenize("a | b") == ["a", "[UNK]", "b"]


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256 and table[ord(" ")] == "Ġ" and table[ord("a")] == "a"
    assert sorted(table.values()) == sorted(pre_tokenizers.ByteLevel.alphabet())


def test_char_bpe_needs_unk_byte_bpe_does_not(corpus):
    text = "I ❤ naïve emoji 😀"
    assert "[UNK]" in CharBPETokenizer.train(corpus, 300).tokenize(text)
    byte = ByteLevelBPETokenizer.train(corpus, 300)
    assert byte.decode(byte.encode(text)) == text


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe({"a": 1}, vocab_size=0)
    with pytest.raises(ValueError, match="tie_break"):
        train_bpe({"ab": 1}, vocab_size=10, tie_break="random")
    with pytest.raises(ValueError, match="no words"):
        train_bpe({}, vocab_size=10)
    with pytest.raises(ValueError, match="256 bytes"):
        ByteLevelBPETokenizer.train(["x"], vocab_size=100)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ByteLevelBPETokenizer.train(["ab ab"], vocab_size=260).decode([10_000])
