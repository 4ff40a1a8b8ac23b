"""Shapes-World vocabulary, paraphrased captions and VQA-lite questions.

Captions of the train and val splits use `TRAIN_TEMPLATES` and the canonical words; the
test split uses the held-out `TEST_TEMPLATES` and swaps words for `SYNONYMS` half the time,
so a text encoder is tested on phrasings it never saw.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from mmlab.validation import int_in_range

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple")
SIZES: tuple[str, ...] = ("small", "large")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
ANSWERS: tuple[str, ...] = SHAPES + COLORS + SIZES + ("yes", "no")

N_CAPTIONS = 4

TRAIN_TEMPLATES: tuple[str, ...] = (
    "a {size} {color} {shape}",
    "a {color} {shape}",
    "a {size} {shape} that is {color}",
    "a {color} {shape} {where}",
    "a picture of a {size} {color} {shape}",
    "the {shape} is {color} and {size}",
    "one {color} {shape} {where} on a dark background",
)
TEST_TEMPLATES: tuple[str, ...] = (
    "an image showing a {color} {shape} of {size} size",
    "{size} {shape}, coloured {color}",
    "you can see a {color} {shape} {where}",
    "a {shape} painted {color}, quite {size}",
    "this shows a {size} {color} {shape}",
)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("disk", "round dot"),
    "square": ("box", "block"),
    "triangle": ("three-sided shape", "wedge"),
    "cross": ("plus sign", "plus"),
    "red": ("crimson", "scarlet"),
    "orange": ("amber", "tangerine"),
    "yellow": ("golden", "lemon"),
    "green": ("emerald", "jade"),
    "blue": ("azure", "cobalt"),
    "purple": ("violet", "plum"),
    "small": ("tiny", "little"),
    "large": ("big", "huge"),
}
# Region of the image (row, column in thirds) -> phrase.
WHERE: tuple[tuple[str, ...], ...] = (
    ("in the top left corner", "at the top", "in the top right corner"),
    ("on the left", "in the middle", "on the right"),
    ("in the bottom left corner", "at the bottom", "in the bottom right corner"),
)
QUESTION_TYPES: tuple[str, ...] = ("color", "shape", "size", "is_size", "is_color")

_ARTICLE = re.compile(r"\ba (?=[aeiou])")


def canonical_caption(shape: int, color: int, size: int | None, region: int | None = None) -> str:
    """A caption in training-template words for indices into SHAPES, COLORS and SIZES: "a {size} {color} {shape}"
    (zero-shot prompts); without a size "a {color} {shape}"; with `region` (3 * row + column of the 3 x 3 grid,
    size None) "a {color} {shape} {where}". Each is one of TRAIN_TEMPLATES."""
    for name, value, words in (("shape", shape, SHAPES), ("color", color, COLORS)):
        int_in_range(name, value, 0, len(words) - 1)
    if size is not None and region is not None:
        raise ValueError("no training template names both a size and a region: give one of them, or neither")
    if size is not None:
        int_in_range("size", size, 0, len(SIZES) - 1)
        return _fill(TRAIN_TEMPLATES[0], SHAPES[shape], COLORS[color], SIZES[size], "")
    if region is not None:
        int_in_range("region", region, 0, 8)
        return _fill(TRAIN_TEMPLATES[3], SHAPES[shape], COLORS[color], "", WHERE[region // 3][region % 3])
    return _fill(TRAIN_TEMPLATES[1], SHAPES[shape], COLORS[color], "", "")


def make_captions(
    shape: np.ndarray,
    color: np.ndarray,
    size: np.ndarray,
    region: np.ndarray,
    template_u: np.ndarray,
    synonym_u: np.ndarray,
    held_out: bool,
) -> list[list[str]]:
    """N_CAPTIONS distinct paraphrases per item.

    template_u (B, K) uniforms rank the K templates; the first N_CAPTIONS are used.
    synonym_u (B, N_CAPTIONS, 3) uniforms pick shape/colour/size words (test split only).
    region (B, 2) int: row, column in thirds.
    """
    templates = TEST_TEMPLATES if held_out else TRAIN_TEMPLATES
    order = np.argsort(template_u, axis=1, kind="stable")[:, :N_CAPTIONS]  # (B, N_CAPTIONS)
    out = []
    for b in range(len(shape)):
        words = (SHAPES[shape[b]], COLORS[color[b]], SIZES[size[b]])
        where = WHERE[region[b, 0]][region[b, 1]]
        caps = []
        for c in range(N_CAPTIONS):
            w = [_pick(word, synonym_u[b, c, j]) for j, word in enumerate(words)] if held_out else words
            caps.append(_fill(templates[order[b, c]], w[0], w[1], w[2], where))
        out.append(caps)
    return out


@lru_cache(maxsize=1 << 16)
def _fill(template: str, shape: str, color: str, size: str, where: str) -> str:
    """Template with its slots filled, "a" turned into "an" before a vowel."""
    return _ARTICLE.sub("an ", template.format(shape=shape, color=color, size=size, where=where))


def _pick(word: str, u: float) -> str:
    """Canonical word with probability 1/2, else one of its synonyms."""
    options = SYNONYMS[word]
    k = int(u * 2 * len(options))  # 0 .. 2*len-1
    return word if k < len(options) else options[k - len(options)]


def make_questions(
    shape: np.ndarray,
    color: np.ndarray,
    size: np.ndarray,
    qtype: np.ndarray,
    truth_u: np.ndarray,
    other_u: np.ndarray,
) -> tuple[list[str], list[str], np.ndarray]:
    """One question per item -> (questions, answers, answer_ids into ANSWERS).

    qtype (B,) indexes QUESTION_TYPES; yes/no questions are true when truth_u < 0.5,
    otherwise they ask about a wrong value picked with other_u.
    """
    questions, answers = [], []
    for b in range(len(shape)):
        s, c, z, t = SHAPES[shape[b]], COLORS[color[b]], SIZES[size[b]], QUESTION_TYPES[qtype[b]]
        yes = bool(truth_u[b] < 0.5)
        if t == "color":
            q, a = "what colour is the shape?", c
        elif t == "shape":
            q, a = "what shape is it?", s
        elif t == "size":
            q, a = f"what size is the {s}?", z
        elif t == "is_size":
            asked = z if yes else SIZES[1 - size[b]]
            q, a = f"is it {asked}?", "yes" if yes else "no"
        else:  # is_color
            wrong = (color[b] + 1 + int(other_u[b] * (len(COLORS) - 1))) % len(COLORS)
            q, a = f"is the {s} {c if yes else COLORS[wrong]}?", "yes" if yes else "no"
        questions.append(q)
        answers.append(a)
    ids = np.array([ANSWERS.index(a) for a in answers], dtype=np.int64)
    return questions, answers, ids
