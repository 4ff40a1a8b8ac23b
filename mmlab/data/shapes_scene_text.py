"""Text of multi-object Shapes-World scenes: captions, referring expressions, relational questions, and a resolver.

Vocabulary and relations: objects are described by SIZES, COLORS and SHAPES (`shapes_text`); spatial relations
are those of `shapes_layout.RELATIONS`, read off the boxes. No two objects of a scene share all three
attributes, so every object has at least one attribute description that picks out only it.

- Captions describe every object and relate each to the next one from left to right:
  "a small red circle left of a large blue square, which is above a small green cross". The test split
  uses held-out templates (`SCENE_TEST_TEMPLATES`), held-out relation phrases (`TEST_RELATIONS`:
  "to the left of", ...) and the synonyms of `shapes_text.SYNONYMS` half the time.
- Referring expressions pick out exactly one object, of one of two types (EXPRESSION_TYPES):
  "attribute" ("the red circle", "the small shape": no other object has those attributes) or
  "relation" ("the shape left of the blue square": the anchor is unique by its attributes and the target is
  the only object in that relation to it). Test expressions use the held-out relation phrases and synonyms.
  `resolve` parses an expression back and returns every object it fits; generation checks that it returns
  exactly the target.
- Questions (SCENE_QUESTION_TYPES) have answers in SCENE_ANSWERS (ANSWERS plus number words):
  "how many shapes are there?", "is there a red circle?", "what colour is the small circle?",
  "what shape is the red one?", "what size is the blue square?", "what colour is the shape above the
  triangle?", "what shape is left of the red circle?". The same templates in every split.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from mmlab.data.shapes_layout import RELATIONS, box_centres, relations
from mmlab.data.shapes_text import _ARTICLE, ANSWERS, COLORS, N_CAPTIONS, SHAPES, SIZES, SYNONYMS, _pick

NUMBER_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
SCENE_ANSWERS: tuple[str, ...] = ANSWERS + NUMBER_WORDS
TEST_RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "over", "under")
EXPRESSION_TYPES: tuple[str, ...] = ("attribute", "relation")
SCENE_QUESTION_TYPES: tuple[str, ...] = (
    "count", "exists", "color", "shape", "size", "relation_color", "relation_shape"
)
# {chain}: every object, each related to the next from left to right; {list}: the objects from left to right;
# {count}: "two shapes".
SCENE_TRAIN_TEMPLATES: tuple[str, ...] = (
    "{chain}",
    "{list}",
    "a picture of {chain}",
    "{count}: {chain}",
    "{chain} on a dark background",
)
SCENE_TEST_TEMPLATES: tuple[str, ...] = (
    "an image with {chain}",
    "{list}",
    "you can see {chain}",
    "{count} in view: {chain}",
    "this shows {chain}",
)
# Attribute subsets that can describe an object, as indices (0 shape, 1 colour, 2 size), smallest first.
SUBSETS: tuple[tuple[int, ...], ...] = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))
_VOCAB = (SHAPES, COLORS, SIZES)
_REL_INDEX = 3  # relation word position in a (shape, colour, size, relation) choice of words


def _word(kind: int, value: int, u: float | None) -> str:
    word = _VOCAB[kind][value]
    return word if u is None else _pick(word, u)


def describe(subset: Sequence[int], obj: Sequence[int], noun: str = "shape", u: Sequence[float] | None = None) -> str:
    """Words for the attributes in `subset` of obj = (shape, colour, size), in the order size colour shape:
    (0, 1) -> "red circle", (2,) -> "small shape" (`noun` stands in for a missing shape word).
    `u` (3 uniforms) swaps words for synonyms half the time (held-out test phrasing)."""
    pick = [None if u is None else u[k] for k in range(3)]
    words = [_word(2, obj[2], pick[2])] if 2 in subset else []
    words += [_word(1, obj[1], pick[1])] if 1 in subset else []
    words.append(_word(0, obj[0], pick[0]) if 0 in subset else noun)
    return " ".join(words)


def unique_subsets(objects: Sequence[Sequence[int]], i: int) -> list[tuple[int, ...]]:
    """The attribute subsets that no other object of the scene shares with object i."""
    return [s for s in SUBSETS if not any(j != i and all(o[k] == objects[i][k] for k in s)
                                          for j, o in enumerate(objects))]


def relation_triples(rel: np.ndarray) -> list[tuple[int, int, int]]:
    """(target, relation, anchor) with target the only object in that relation to the anchor; rel (n, n, 4)."""
    n = rel.shape[0]
    counts = rel.sum(0)  # (n anchors, 4): how many objects are in relation r to anchor a
    return [(t, r, a) for a in range(n) for r in range(len(RELATIONS)) if counts[a, r] == 1
            for t in range(n) if rel[t, a, r]]


def unique_table(attributes: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Vectorised `unique_subsets`: attributes (B, K, 3) (shape, colour, size), active (B, K) ->
    (B, K, len(SUBSETS)) bool, True where no other present object shares that subset with object i."""
    k = attributes.shape[1]
    equal = attributes[:, :, None, :] == attributes[:, None, :, :]  # (B, K, K, 3)
    other = active[:, None, :] & ~np.eye(k, dtype=bool)[None]  # (B, K, K): j present and j != i
    return np.stack([~(equal[..., list(s)].all(-1) & other).any(-1) for s in SUBSETS], axis=-1)


def triple_table(boxes: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Vectorised `relation_triples`: (B, K, K, 4) bool, [b, t, a, r] True when t is the only present object in
    relation r to the present anchor a."""
    pair = active[:, :, None] & active[:, None, :]  # (B, K, K)
    rel = relations(boxes) & pair[..., None]  # (B, K, K, 4)
    return rel & (rel.sum(1, keepdims=True) == 1)


# ----------------------------------------------------------------------------- resolver

def _alternation(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _lookup(vocab: Sequence[str]) -> dict[str, int]:
    table = {w: i for i, w in enumerate(vocab)}
    table.update({syn: i for i, w in enumerate(vocab) for syn in SYNONYMS.get(w, ())})
    return table


_LOOKUPS = (_lookup(SHAPES), _lookup(COLORS), _lookup(SIZES))
_RELATION_LOOKUP = {**{w: i for i, w in enumerate(RELATIONS)}, **{w: i for i, w in enumerate(TEST_RELATIONS)}}
_DESC = r"(?:(?P<{p}size>{size}) )?(?:(?P<{p}color>{color}) )?(?P<{p}shape>{shape}|shape)"


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern:
    parts = {k: _alternation(list(t)) for k, t in zip(("shape", "color", "size"), _LOOKUPS)}
    target, anchor = _DESC.format(p="t", **parts), _DESC.format(p="a", **parts)
    rel = _alternation(list(_RELATION_LOOKUP))
    return re.compile(rf"the {target}(?: (?P<rel>{rel}) the {anchor})?")


def _matching(m: re.Match, prefix: str, objects: Sequence[Sequence[int]]) -> list[int]:
    want = [m.group(prefix + "shape"), m.group(prefix + "color"), m.group(prefix + "size")]
    values = [None if w is None or w == "shape" else _LOOKUPS[k][w] for k, w in enumerate(want)]
    return [i for i, o in enumerate(objects) if all(v is None or o[k] == v for k, v in enumerate(values))]


def resolve(expression: str, objects: Sequence[Sequence[int]], boxes: np.ndarray) -> list[int]:
    """Every object an expression fits, in order. objects: (shape, colour, size) per object; boxes (n, 4) xyxy.

    Accepts "the [size] [colour] (shape word | shape)" optionally followed by "<relation> the <description>",
    with canonical words, synonyms and either relation phrasing. An expression of another form, or a relation
    whose anchor is not exactly one object, is a ValueError.
    """
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, got {type(expression).__name__} {expression!r}")
    m = _pattern().fullmatch(expression)
    if m is None:
        raise ValueError(f"expression {expression!r} is not of the form 'the [size] [colour] <shape|shape>"
                         f"[ <relation> the <description>]'")
    targets = _matching(m, "t", objects)
    if m.group("rel") is None:
        return targets
    anchors = _matching(m, "a", objects)
    if len(anchors) != 1:
        raise ValueError(f"expression {expression!r}: its anchor fits {len(anchors)} objects of the scene, not one")
    a, r = anchors[0], _RELATION_LOOKUP[m.group("rel")]
    rel = relations(np.asarray(boxes, dtype=np.float64))
    return [t for t in targets if t != a and rel[t, a, r]]


def referent(expression: str, objects: Sequence[Sequence[int]], boxes: np.ndarray) -> int:
    """The index of the one object an expression picks out; a ValueError if it fits none or several."""
    found = resolve(expression, objects, boxes)
    if len(found) != 1:
        raise ValueError(f"expression {expression!r} is not unique in the scene: it fits {len(found)} objects "
                         f"({found}); a referring expression must pick out exactly one")
    return found[0]


# ----------------------------------------------------------------------------- generation

@lru_cache(maxsize=None)
def _phrase(obj: tuple[int, int, int]) -> str:
    return "a " + describe((0, 1, 2), obj)


def _captions(objects, boxes, rel, template_u, synonym_u, held_out) -> list[str]:
    n = len(objects)
    order = np.argsort(box_centres(boxes)[:, 0], kind="stable")  # left to right
    templates = SCENE_TEST_TEMPLATES if held_out else SCENE_TRAIN_TEMPLATES
    rel_words = TEST_RELATIONS if held_out else RELATIONS
    links = []
    for a, b in zip(order[:-1], order[1:]):  # left of, else above, else below (boxes never overlap)
        links.append(next(r for r in (0, 2, 3) if rel[a, b, r]))
    count = NUMBER_WORDS[n - 1] + (" shape" if n == 1 else " shapes")
    caps = []
    for c, t in enumerate(np.argsort(template_u, kind="stable")[:N_CAPTIONS]):
        phrases = [("a " + describe((0, 1, 2), objects[o], u=synonym_u[c, o])) if held_out else _phrase(objects[o])
                   for o in order]
        chain = phrases[0] + "".join(
            f"{' ' if i == 0 else ', which is '}{rel_words[links[i]]} {phrases[i + 1]}" for i in range(n - 1)
        )
        if n == 1:
            listed = ("nothing but " if held_out else "only ") + phrases[0]
        else:
            listed = ", ".join(phrases[:-1]) + " and " + phrases[-1]
            listed += ", ordered left to right" if held_out else " from left to right"
        caps.append(_ARTICLE.sub("an ", templates[t].format(chain=chain, list=listed, count=count)))
    return caps


def _expression(objects, uniq, triples, u, held_out) -> tuple[str, str, int]:
    """One referring expression -> (text, type, target). u: 9 uniforms (type, choice, anchor words, synonyms)."""
    attribute = [(i, s) for i in range(len(objects)) for s in uniq[i]]
    syn = (lambda k: u[3 + 3 * k: 6 + 3 * k]) if held_out else (lambda k: None)
    if triples and u[0] < 0.5:
        t, r, a = triples[int(u[1] * len(triples))]
        subsets = uniq[a]
        anchor = describe(subsets[int(u[2] * len(subsets))], objects[a], u=syn(1))
        text = f"the shape {(TEST_RELATIONS if held_out else RELATIONS)[r]} the {anchor}"
        kind = "relation"
    else:
        t, s = attribute[int(u[1] * len(attribute))]
        text, kind = "the " + describe(s, objects[t], u=syn(0)), "attribute"
    return _ARTICLE.sub("an ", text), kind, t


def _question(objects, uniq, triples, u) -> tuple[str, str]:
    """One question and its answer. u: 4 uniforms (type, choice, anchor words, yes/no)."""
    n = len(objects)
    asks = {"color": (0, 2), "shape": (1, 2), "size": (0, 1)}  # attributes that may describe the object asked
    choices: dict[str, list] = {"count": [None], "exists": [None]}
    for qtype, allowed in asks.items():
        choices[qtype] = [(i, s) for i in range(n) for s in uniq[i] if set(s) <= set(allowed)]
    choices["relation_color"] = choices["relation_shape"] = triples
    available = [t for t in SCENE_QUESTION_TYPES if choices[t]]
    qtype = available[int(u[0] * len(available))]
    pick = choices[qtype][int(u[1] * len(choices[qtype]))]
    if qtype == "count":
        return "how many shapes are there?", NUMBER_WORDS[n - 1]
    if qtype == "exists":
        present = sorted({(o[1], o[0]) for o in objects})
        absent = [(c, s) for c in range(len(COLORS)) for s in range(len(SHAPES)) if (c, s) not in present]
        pool = present if u[3] < 0.5 else absent
        c, s = pool[int(u[1] * len(pool))]
        return f"is there a {COLORS[c]} {SHAPES[s]}?", "yes" if (c, s) in present else "no"
    if qtype in asks:
        i, s = pick
        noun = "one" if qtype == "shape" else "shape"
        kind = ("shape", "color", "size").index(qtype)
        word = ("colour" if qtype == "color" else qtype)
        return f"what {word} is the {describe(s, objects[i], noun=noun)}?", _VOCAB[kind][objects[i][kind]]
    t, r, a = pick
    subsets = uniq[a]
    anchor = describe(subsets[int(u[2] * len(subsets))], objects[a])
    if qtype == "relation_color":
        return f"what colour is the shape {RELATIONS[r]} the {anchor}?", COLORS[objects[t][1]]
    return f"what shape is {RELATIONS[r]} the {anchor}?", SHAPES[objects[t][0]]


def scene_texts(
    shape: np.ndarray,
    color: np.ndarray,
    size: np.ndarray,
    boxes: np.ndarray,
    active: np.ndarray,
    template_u: np.ndarray,
    synonym_u: np.ndarray,
    expression_u: np.ndarray,
    question_u: np.ndarray,
    held_out: bool,
) -> dict[str, list]:
    """Captions, one referring expression and one question per scene.

    shape, color, size (B, K) int; boxes (B, K, 4); active (B, K) bool, a prefix per row. Uniforms:
    template_u (B, n_templates), synonym_u (B, N_CAPTIONS, K, 3), expression_u (B, 9), question_u (B, 4).
    Returns lists of length B: "captions" (N_CAPTIONS str each), "expression", "expression_type", "target"
    (slot index), "question", "answer".
    """
    out: dict[str, list] = {k: [] for k in ("captions", "expression", "expression_type", "target", "question",
                                            "answer")}
    uniq_all = unique_table(np.stack([shape, color, size], -1), active)  # (B, K, 7)
    triples_all = triple_table(boxes, active)  # (B, K, K, 4)
    for b in range(len(shape)):
        n = int(active[b].sum())
        objects = [(int(shape[b, i]), int(color[b, i]), int(size[b, i])) for i in range(n)]
        uniq = [[SUBSETS[j] for j in np.flatnonzero(uniq_all[b, i])] for i in range(n)]
        triples = [(int(t), int(r), int(a)) for t, a, r in np.argwhere(triples_all[b])]
        rel = relations(boxes[b, :n])  # (n, n, 4)
        out["captions"].append(_captions(objects, boxes[b, :n], rel, template_u[b], synonym_u[b], held_out))
        text, kind, target = _expression(objects, uniq, triples, expression_u[b], held_out)
        if referent(text, objects, boxes[b, :n]) != target:  # the resolver reads it back independently
            raise AssertionError(f"generated expression {text!r} does not pick out object {target}")
        out["expression"].append(text)
        out["expression_type"].append(kind)
        out["target"].append(target)
        q, a = _question(objects, uniq, triples, question_u[b])
        out["question"].append(q)
        out["answer"].append(a)
    return out
