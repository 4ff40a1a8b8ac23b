"""mmlab.preprocess.text: from-scratch WordPiece == transformers' tokenizer on the bundled MiniLM vocab."""
from __future__ import annotations

import pytest
import torch

from mmlab.preprocess.text import SimpleVocab, WordPieceTokenizer, basic_split, minilm_path, normalize_text, wordpiece

HARD_STRINGS = [
    "Café déjà vu: naïve résumé at the Ångström façade!",
    "Hello, world!!! (really?) $3.50 + 20% off <tag> a_b ~x^y `q` |p| {k: v} [x] #1 @me",
    "supercalifragilisticexpialidocious xyzzyqwv antidisestablishmentarianism",
    "你好世界 東京タワー 한국어 Русский текст العربية",
    "I ❤️ emoji 😀🚀 👍🏽 family 👨‍👩‍👧",
    "x" * 100, "y" * 101, "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "a long caption " * 60,
    "tab\there\nnew\rline\x00null\x07bell\u200bzero-width\ufeffbom\ufffdreplacement",
    "", "   \t\n ", "\u2028\u3000",
    "ΟΔΟΣ Straße İstanbul ﬁne ligature",
    "a\u2028b\u00a0c\u3000d\u202fe",
    "e\u0301 combining vs \u00e9 precomposed",
    "don't it's U.S.A. 3.14 e-mail co-operate --- ...",
    "½ ² ™ © ° µ § ¶ • … « » ‘quotes’ “double”",
    "[CLS] [SEP] [PAD] [MASK] [UNK] literal brackets, a[CLS]b [[SEP]] [cls] [Mask]",
    "A RED CIRCLE in the TOP-LEFT corner.",
]


@pytest.fixture(scope="module")
def ours() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_minilm()


@pytest.fixture(scope="module")
def theirs():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


@pytest.fixture(scope="module")
def captions() -> list[str]:
    from mmlab.data import ShapesWorld

    texts: set[str] = set()
    for split in ("train", "val", "test"):
        batch = ShapesWorld(split, size=2000, with_audio=False).batch(range(2000))
        texts.update(c for caps in batch["captions"] for c in caps)
        texts.update(batch["question"])
    return sorted(texts)


def _assert_same(ours, theirs, texts, **kwargs):
    a = ours.encode(texts, **kwargs)
    b = theirs(texts, return_tensors="pt", **kwargs)
    assert a["input_ids"].dtype == torch.long and a["attention_mask"].dtype == torch.long
    for i, text in enumerate(texts):  # row by row, so a failure names the text
        assert a["input_ids"][i].tolist() == b["input_ids"][i].tolist(), repr(text)
    assert torch.equal(a["attention_mask"], b["attention_mask"])


def test_minilm_path_has_the_vocab():
    path = minilm_path()
    assert (path / "vocab.txt").is_file() and (path / "tokenizer_config.json").is_file()


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_hard_strings_match_transformers(ours, theirs, padding):
    _assert_same(ours, theirs, HARD_STRINGS, max_length=77, padding=padding, truncation=True)


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_tokens_match_transformers(ours, theirs, text):
    assert ours.tokenize(text) == theirs.tokenize(text)


def test_all_shapes_world_captions_match_transformers(ours, theirs, captions):
    assert len(captions) > 4000
    _assert_same(ours, theirs, captions, max_length=77, padding="longest", truncation=True)


def test_every_caption_word_is_in_the_vocab(ours, captions):
    pieces = {t for c in captions for t in ours.tokenize(c)}
    assert "[UNK]" not in pieces


def test_special_tokens_and_layout(ours):
    out = ours.encode(["a red circle", "a big blue square on the left"], max_length=12)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (2, 12)
    assert (ids[:, 0] == ours.cls_id).all() and ours.cls_id == 101 and ours.sep_id == 102 and ours.pad_id == 0
    n = mask.sum(1)
    assert n.tolist() == [5, 9]
    assert ids[0, 4] == ours.sep_id and (ids[0, 5:] == ours.pad_id).all() and (mask[0, 5:] == 0).all()
    assert ours.encode("a red circle", padding="longest")["input_ids"].shape == (1, 5)


def test_truncation_keeps_cls_and_sep(ours, theirs):
    text = "word " * 200
    out = ours.encode(text, max_length=77)
    assert out["input_ids"].shape == (1, 77) and out["attention_mask"].sum() == 77
    assert out["input_ids"][0, -1] == ours.sep_id and out["input_ids"][0, 0] == ours.cls_id
    _assert_same(ours, theirs, [text, "short"], max_length=77, padding="max_length", truncation=True)


def test_no_truncation_raises_on_long_text(ours):
    with pytest.raises(ValueError, match=r"text 1 has 202 tokens .* max_length=77"):
        ours.encode(["fine", "word " * 200], truncation=False)
    assert ours.encode("fits", truncation=False)["attention_mask"].sum() == 3


def test_special_tokens_typed_in_text(ours):
    assert ours.tokenize("a[CLS]b [mask]") == ["a", "[CLS]", "b", "[", "mask", "]"]
    plain = WordPieceTokenizer.from_vocab_file(minilm_path() / "vocab.txt", special_tokens_in_text=False)
    assert plain.tokenize("a[CLS]b") == ["a", "[", "cl", "##s", "]", "b"]


def test_bad_arguments(ours):
    with pytest.raises(ValueError, match="padding"):
        ours.encode("x", padding="left")
    with pytest.raises(ValueError, match="max_length"):
        ours.encode("x", max_length=1)
    with pytest.raises(TypeError, match="max_length"):
        ours.encode("x", max_length=8.0)
    with pytest.raises(ValueError, match="empty"):
        ours.encode([])
    with pytest.raises(TypeError, match="str"):
        ours.encode([3])
    with pytest.raises(ValueError, match="different lengths"):
        ours.encode(["a", "a b"], padding=False)
    with pytest.raises(FileNotFoundError, match="vocabulary file"):
        WordPieceTokenizer.from_vocab_file("/nonexistent/vocab.txt")


def test_wordpiece_greedy_longest_match():
    vocab = {"un": 0, "##aff": 1, "##able": 2, "##a": 3, "[UNK]": 4, "a": 5}
    assert wordpiece("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece("unx", vocab) == ["[UNK]"]  # one missing piece makes the whole word unknown
    assert wordpiece("a" * 101, vocab) == ["[UNK]"] and wordpiece("a", vocab) == ["a"]


def test_normalize_and_split():
    assert normalize_text("Héllo\tWÖRLD\x00") == "hello world"
    assert normalize_text("Héllo", lowercase=False) == "Héllo"
    assert basic_split(normalize_text("a 中文, b!")) == ["a", "中", "文", ",", "b", "!"]


def test_decode_round_trip(ours, theirs):
    for text in ["a small red circle in the top left corner.", "stop, it is fine!", "cafe deja vu", "don ' t"]:
        ids = ours.encode(text)["input_ids"][0]
        assert ours.decode(ids) == theirs.decode(ids.tolist(), skip_special_tokens=True) == text
    assert ours.decode(ours.encode("Zebra [UNK] x")["input_ids"][0]) == "zebra [UNK] x"
    padded = ours.encode("a", max_length=4)["input_ids"][0]
    assert ours.decode(padded, skip_special_tokens=False) == "[CLS] a [SEP] [PAD]"
    assert ours.batch_decode(ours.encode(["a b", "c"])["input_ids"]) == ["a b", "c"]


def test_simple_vocab(captions):
    vocab = SimpleVocab.build(captions[:200])
    assert vocab.itos[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    out = vocab.encode(["a red circle", "a red zebra"], padding="longest")
    assert out["input_ids"][1, 3] == vocab.unk_id and out["input_ids"][0, 3] != vocab.unk_id
    assert out["input_ids"][0, 0] == vocab.cls_id and out["attention_mask"].sum() == 10


def test_dataset_descriptions_corpus():
    from mmlab.preprocess.text import dataset_descriptions

    docs = dataset_descriptions()
    assert len(docs) == 14 and list(docs) == sorted(docs) and "iris" in docs
    assert "Iris" in docs["iris"] and sum(len(t.split()) for t in docs.values()) > 5000
