"""mmlab.evaluate.bleu and cider equal pycocoevalcap's Bleu(4) and Cider (pure Python) on the same input."""
import random

import pytest

from mmlab.evaluate import bleu, cider

pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402


def coco(candidates, references):
    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    b4 = Bleu(4).compute_score(gts, res, verbose=0)[0][3]
    return b4, Cider().compute_score(gts, res)[0]


def random_corpus(seed, items=30, vocab=8, max_len=12):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    sentence = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(0, max_len)))  # noqa: E731
    refs = [[sentence() for _ in range(rng.randint(1, 5))] for _ in range(items)]
    cands = [rng.choice(r) if rng.random() < 0.2 else sentence() for r in refs]  # some exact matches
    return cands, refs


CASES = {
    "captions": (["a small red circle left of a blue square", "a large green cross", "a purple triangle"],
                 [["a small red circle left of a blue square", "a red circle and a blue square"],
                  ["a large green cross", "the cross is green and large", "a green plus"],
                  ["a small purple triangle at the top"]]),
    "repeated words are clipped": (["the the the the the the", "a cat on a mat"],
                                   [["the cat is on the mat", "there is a cat on the mat"],
                                    ["a cat sits on a mat"]]),
    "no overlap": (["x y z w v", "q r s"], [["a b c d e"], ["t u v w"]]),
    "empty and one-word candidates": (["", "red", "a red circle"],
                                      [["a red circle"], ["red"], ["a red circle", "a circle"]]),
    "an empty reference": (["a blue box", "a green disk"], [["", "a blue box"], ["a green disk", "green"]]),
    "candidates longer than references": (["a large red circle in the middle of a dark picture"] * 2,
                                          [["a red circle"], ["a large circle"]]),
    "equal distance to two reference lengths": (["a b c d"], [["a b", "a b c d e f"]]),
    "one item": (["a red circle"], [["a red circle", "a circle that is red"]]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_equal_to_pycocoevalcap_on_edge_cases(name):
    candidates, references = CASES[name]
    b4, c = coco(candidates, references)
    assert bleu(candidates, references) == b4  # bit for bit
    assert cider(candidates, references) == c


@pytest.mark.parametrize("seed", range(6))
def test_equal_to_pycocoevalcap_on_random_corpora(seed):
    candidates, references = random_corpus(seed, vocab=4 + seed)
    b4, c = coco(candidates, references)
    assert 0 < b4 < 1 and c > 0  # a corpus where both metrics are informative
    assert bleu(candidates, references) == b4
    assert cider(candidates, references) == c


def test_known_values():
    refs = [["a small red circle"], ["a large blue square"]]
    assert bleu(["a small red circle", "a large blue square"], refs) == pytest.approx(1.0)  # identical -> 1
    # three words have no 4-gram: BLEU-4 is (1e-15 / 1e-9) ** (1/4) = 0.03, i.e. about 0
    assert bleu(["a red circle"], [["a red circle"]]) == pytest.approx(1e-6 ** 0.25)
    refs = [["a red circle"], ["a blue square"]]
    # one item: every idf is 0, so CIDEr-D is 0 even for a perfect caption (pycocoevalcap agrees above)
    assert cider(["a red circle"], [["a red circle"]]) == 0.0
    # identical captions whose n-grams are not in every item's references: 10 per item (the cosines are 1)
    assert cider(["a red circle", "a blue square"], refs) == pytest.approx(10.0 * 3 / 4)  # 4-grams: none
    # a candidate half as long as its reference: brevity penalty exp(1 - 2) on precision 1
    assert bleu(["a b c d"], [["a b c d a b c d"]]) == pytest.approx(0.36787944117, rel=1e-9)


def test_bad_input():
    with pytest.raises(ValueError, match="2 candidates but 1 lists"):
        bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="candidates is empty"):
        cider([], [])
    with pytest.raises(TypeError, match="candidates must be a list, got str"):
        bleu("a red circle", [["a red circle"]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        cider(["a"], [[]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        cider(["a"], ["a red circle"])
    with pytest.raises(TypeError, match=r"candidates\[1\] must be a str"):
        bleu(["a", 3], [["a"], ["b"]])
    with pytest.raises(TypeError, match=r"references\[0\] must hold str only"):
        bleu(["a"], [["a", None]])
