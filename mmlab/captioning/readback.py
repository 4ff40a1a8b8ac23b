"""Facts read back from a generated Shapes-World caption and checked against the scene.

The captions are procedural, so a generated caption can be graded exactly: every "{size} {colour} {shape}"
phrase names an object, and a relation phrase between two of them ("left of", "above", ...) states a spatial
relation that the boxes either satisfy or not. Only the canonical words of the train and val captions are read
(the test split's synonyms are not).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from torch import Tensor

from mmlab.data.shapes_layout import RELATIONS, box_centres, relations
from mmlab.data.shapes_text import COLORS, SHAPES, SIZES


@lru_cache(maxsize=1)
def _phrase() -> re.Pattern:
    alt = lambda words: "|".join(map(re.escape, words))  # noqa: E731
    return re.compile(rf"\b({alt(SIZES)}) ({alt(COLORS)}) ({alt(SHAPES)})\b")


def read_objects(caption: str) -> list[tuple[tuple[int, int, int], str]]:
    """Each object phrase of `caption` in order: ((shape, colour, size) indices, the text after it up to the next
    phrase, where a relation to the next object would be stated)."""
    matches = list(_phrase().finditer(caption))
    out = []
    for i, m in enumerate(matches):
        after = caption[m.end():matches[i + 1].start()] if i + 1 < len(matches) else ""
        out.append(((SHAPES.index(m[3]), COLORS.index(m[2]), SIZES.index(m[1])), after))
    return out


def stated_relation(text: str) -> int | None:
    """The index into RELATIONS of the relation phrase in `text`, or None."""
    found = [r for r, words in enumerate(RELATIONS) if re.search(rf"\b{words}\b", text)]
    return found[0] if len(found) == 1 else None


def caption_accuracy(captions: Sequence[str], shapes: Tensor, colors: Tensor, sizes: Tensor, boxes: Tensor,
                     object_mask: Tensor) -> dict[str, float]:
    """Grade captions of multi-object scenes (the `ShapesWorld(max_objects=K)` keys, (B, K) and (B, K, 4)).

    - "shape", "color", "size": over all objects, the share whose attribute is right in the phrase at the same
      place, objects taken left to right as the captions list them (a missing phrase is wrong);
    - "count": the share of captions that name as many objects as the scene holds;
    - "exact": the share that name exactly the scene's objects, left to right;
    - "relation": among the relations stated between consecutive phrases, the share that hold between the
      objects at those places from the left (whatever attributes the phrases got); "relations" counts them.
    """
    if len(captions) != len(shapes):
        raise ValueError(f"{len(captions)} captions for {len(shapes)} scenes")
    hits = {"shape": 0, "color": 0, "size": 0}
    n_objects = count_ok = exact = stated = held = 0
    for b, caption in enumerate(captions):
        present = object_mask[b].numpy().astype(bool)
        objs = [(int(s), int(c), int(z)) for s, c, z in zip(shapes[b][present], colors[b][present], sizes[b][present])]
        box = boxes[b][present].numpy().astype(np.float64)
        order = np.argsort(box_centres(box)[:, 0], kind="stable")  # left to right
        truth = [objs[i] for i in order]
        named = read_objects(caption)
        n_objects += len(truth)
        for i, obj in enumerate(truth):
            if i < len(named):
                for k, key in enumerate(("shape", "color", "size")):
                    hits[key] += named[i][0][k] == obj[k]
        count_ok += len(named) == len(truth)
        exact += [n[0] for n in named] == truth
        rel = relations(box)  # (n, n, 4)
        for i in range(min(len(named), len(truth)) - 1):
            r = stated_relation(named[i][1])
            if r is not None:  # phrase i and i + 1 stand for the i-th and (i+1)-th objects from the left
                stated += 1
                held += bool(rel[order[i], order[i + 1], r])
    out = {k: v / n_objects for k, v in hits.items()}
    out.update(count=count_ok / len(captions), exact=exact / len(captions),
               relation=held / stated if stated else float("nan"), relations=float(stated))
    return out
