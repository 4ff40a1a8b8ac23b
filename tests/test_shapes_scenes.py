"""Multi-object Shapes-World (max_objects > 1): determinism, layout, boxes, captions, referring expressions,
relational questions, collation and errors. Every fact is recomputed here from the labels and boxes."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmlab.data import ShapesWorld, collate_shapes_world
from mmlab.data.shapes_layout import GAP, MARGIN, RELATIONS
from mmlab.data.shapes_render import BASE_RGB, backgrounds, coverage
from mmlab.data.shapes_scene_text import (
    NUMBER_WORDS,
    SCENE_ANSWERS,
    SCENE_TEST_TEMPLATES,
    SCENE_TRAIN_TEMPLATES,
    TEST_RELATIONS,
    referent,
    relation_triples,
    resolve,
    triple_table,
    unique_subsets,
    unique_table,
)
from mmlab.data.shapes_scenes import render_scenes
from mmlab.data.shapes_text import COLORS, SHAPES, SIZES, SYNONYMS

DIGEST_CODE = (
    "import hashlib, json, torch\n"
    "from mmlab.data import ShapesWorld\n"
    "b = ShapesWorld('{split}', size=300, seed=5, max_objects=4).batch(range(0, 300, 7))\n"
    "h = hashlib.sha256()\n"
    "for k in sorted(b):\n"
    "    v = b[k]; h.update(k.encode())\n"
    "    if isinstance(v, torch.Tensor):\n"
    "        h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())\n"
    "        h.update(v.contiguous().numpy().tobytes())\n"
    "    else:\n"
    "        h.update(json.dumps(v).encode())\n"
    "print(h.hexdigest())\n"
)
# Recorded on an AMD EPYC (2 cores), 2026-12-02. Only IEEE-exact operations touch the pixels (as for the
# single-object scenes, whose digest is checked on several CPUs in test_shapes_world.py).
GOLDEN = {
    "val": "056556726c8c02abd28e9795bf89cf44dbf13d178332ca3274a968881a156a47",
    "test": "afe1205530e21b2c4aa258f6175d39e28f7db8c4858c279e778261f1114009f5",
}

N = 600


def digest(batch: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(batch):
        value = batch[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            h.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
            h.update(value.contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(value).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scenes():
    return ShapesWorld("train", size=N, seed=1, max_objects=4).batch(range(N))


@pytest.fixture(scope="module")
def test_scenes():
    return ShapesWorld("test", size=N, seed=1, max_objects=4).batch(range(N))


def objects_of(batch, b):
    n = int(batch["num_objects"][b])
    objs = [(int(batch["shapes"][b, i]), int(batch["colors"][b, i]), int(batch["sizes"][b, i])) for i in range(n)]
    return objs, batch["boxes"][b, :n].double().numpy()


def holds(boxes, i, j, r):
    """Relation r of object i to object j, recomputed from the boxes (independent of shapes_layout)."""
    a, b = boxes[i], boxes[j]
    return [a[2] < b[0], a[0] > b[2], a[3] < b[1], a[1] > b[3]][r]


@pytest.mark.parametrize("split", ["val", "test"])
def test_same_bytes_in_a_new_process_and_the_recorded_digest(split):
    here = ShapesWorld(split, size=300, seed=5, max_objects=4).batch(range(0, 300, 7))
    code = DIGEST_CODE.replace("{split}", split)
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == digest(here)
    assert digest(here) == GOLDEN[split]


def test_items_do_not_depend_on_the_batch_and_collate_like_batch():
    ds = ShapesWorld("val", size=40, seed=2, max_objects=3)
    whole = ds.batch(range(40))
    for i in (0, 17, 39):
        item = ds[i]
        for key, value in whole.items():
            got = item[key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(torch.as_tensor(got), value[i]), key
            else:
                assert got == value[i], key
    picked = ds.batch([5, 1, 30])
    collated = collate_shapes_world([ds[i] for i in (5, 1, 30)])
    loaded = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_shapes_world)))  # via __getitems__
    first = ds.batch(range(3))
    for want, got in ((picked, collated), (first, loaded)):
        assert want.keys() == got.keys()
        for key, value in want.items():
            assert torch.equal(got[key], value) if isinstance(value, torch.Tensor) else got[key] == value, key
    assert not torch.equal(ds.batch([0])["image"], ShapesWorld("val", size=40, seed=3, max_objects=3)[0]["image"][None])


def test_keys_shapes_and_the_object_count(scenes):
    b = scenes
    assert b["image"].shape == (N, 3, 64, 64) and b["image"].dtype == torch.float32
    assert 0 <= b["image"].min() and b["image"].max() <= 1
    assert b["boxes"].shape == (N, 4, 4) and b["boxes"].dtype == torch.float32
    assert b["object_mask"].dtype == torch.bool and b["target_box"].shape == (N, 4)
    for key in ("shapes", "colors", "sizes"):
        assert b[key].shape == (N, 4) and b[key].dtype == torch.int64
        assert ((b[key] == -1) == ~b["object_mask"]).all()
    assert "audio" not in b and "video" not in b and "shape" not in b
    mask = b["object_mask"]
    assert torch.equal(mask.sum(1), b["num_objects"])
    assert torch.equal(mask, torch.arange(4)[None] < b["num_objects"][:, None])  # objects first, then padding
    assert (b["boxes"][~mask] == 0).all()
    counts = Counter(b["num_objects"].tolist())
    assert set(counts) == {1, 2, 3, 4} and min(counts.values()) > N / 4 * 0.75  # about uniform over 1..4
    assert torch.equal(b["target_box"], b["boxes"][torch.arange(N), b["target"]])
    assert mask[torch.arange(N), b["target"]].all()
    assert all(len(set(c)) == 4 for c in b["captions"])
    two = ShapesWorld("train", size=200, max_objects=2).batch(range(200))
    assert two["boxes"].shape == (200, 2, 4) and set(two["num_objects"].tolist()) == {1, 2}
    assert ShapesWorld("train", size=3, max_objects=2, image_size=96)[0]["image"].shape == (3, 96, 96)


def test_boxes_inside_apart_and_objects_distinct(scenes):
    b = scenes
    for i in range(N):
        objs, boxes = objects_of(b, i)
        assert len(set(objs)) == len(objs)  # no two objects share shape, colour and size
        assert (boxes[:, :2] >= MARGIN - 1e-6).all() and (boxes[:, 2:] <= 64 - MARGIN + 1e-6).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        for j in range(len(objs)):
            for k in range(j):
                p, q = boxes[j], boxes[k]
                apart = max(q[0] - p[2], p[0] - q[2], q[1] - p[3], p[1] - q[3])
                assert apart >= GAP - 1e-4, (i, j, k)


def test_image_shows_each_object_in_its_box_and_nothing_else(scenes):
    b = scenes
    image = b["image"]
    p = ShapesWorld("train", size=N, seed=1, max_objects=4).params(range(N))
    bare = backgrounds(p["background"], p["bg_noise"], 64)
    changed = (image - bare).abs().amax(1) > 1e-6  # (B, H, W) pixels an object touched
    centres = torch.arange(64) + 0.5
    for i in range(0, N, 5):
        objs, boxes = objects_of(b, i)
        inside = torch.zeros(64, 64, dtype=torch.bool)
        for k, (shape, color, size) in enumerate(objs):
            x0, y0, x1, y1 = boxes[k]
            near = ((centres[None, :] > x0 - 1.01) & (centres[None, :] < x1 + 1.01)
                    & (centres[:, None] > y0 - 1.01) & (centres[:, None] < y1 + 1.01))
            inside |= near
            # the box is tight: the pixels the object touches reach within a pixel of each of its four sides
            ys, xs = (changed[i] & near).nonzero().T.double() + 0.5
            assert abs(xs.min() - x0) < 1 and abs(xs.max() - x1) < 1, (i, k, SHAPES[shape])
            assert abs(ys.min() - y0) < 1 and abs(ys.max() - y1) < 1, (i, k, SHAPES[shape])
            # and the object has its colour: the pixel nearest its colour is within the jitter of it
            distance = (image[i][:, near].T - torch.from_numpy(BASE_RGB[color]).float()).abs().amax(1)
            assert distance.min() < 0.045, (i, k)
        assert not (changed[i] & ~inside).any(), i


def test_crop_rendering_equals_painting_on_the_whole_image(scenes):
    p = ShapesWorld("train", size=N, seed=1, max_objects=4).params(range(0, N, 3))
    fast = render_scenes(p, 64)
    slow = backgrounds(p["background"], p["bg_noise"], 64)
    for k in range(4):
        alpha = coverage(p["shapes"][:, k], p["radius"][:, k], p["cx"][:, k], p["cy"][:, k], 64)
        alpha = alpha * torch.from_numpy(p["object_mask"][:, k]).float()[:, None, None]
        rgb = torch.from_numpy(p["rgb"][:, k].astype(np.float32))[:, :, None, None]
        slow = slow + alpha[:, None] * (rgb - slow)
    torch.testing.assert_close(fast, slow.clamp(0, 1), atol=1e-5, rtol=0)  # offsets rounded differently


def _objects_in(caption: str, vocab_extra: bool) -> list[tuple[str, str, str]]:
    size = "|".join(SIZES + (sum((SYNONYMS[w] for w in SIZES), ()) if vocab_extra else ()))
    color = "|".join(COLORS + (sum((SYNONYMS[w] for w in COLORS), ()) if vocab_extra else ()))
    shape_words = SHAPES + (sum((SYNONYMS[w] for w in SHAPES), ()) if vocab_extra else ())
    shape = "|".join(sorted(map(re.escape, shape_words), key=len, reverse=True))
    return re.findall(rf"\ban? ({size}) ({color}) ({shape})\b", caption)


def _canon(words):
    table = {w: w for w in SHAPES + COLORS + SIZES} | {s: w for w, syn in SYNONYMS.items() for s in syn}
    return tuple(table[w] for w in words)


def test_captions_name_every_object_and_true_relations(scenes):
    b = scenes
    chain_re = re.compile(r", which is | (?=(?:left of|right of|above|below) )")
    for i in range(N):
        objs, boxes = objects_of(b, i)
        named = sorted((SIZES[z], COLORS[c], SHAPES[s]) for s, c, z in objs)
        order = np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")
        for cap in b["captions"][i]:
            assert sorted(_objects_in(cap, False)) == named, cap
            assert any(re.fullmatch(t.replace("{chain}", ".+").replace("{list}", ".+").replace("{count}", ".+"), cap)
                       for t in SCENE_TRAIN_TEMPLATES)
            if " from left to right" in cap or cap.startswith("only "):
                continue
            parts = [p for p in chain_re.split(cap) if p]
            rels = [next(r for r in RELATIONS if p.startswith(r + " ")) for p in parts[1:]]
            assert len(rels) == len(objs) - 1, cap
            for k, r in enumerate(rels):  # consecutive objects from left to right, the stated relation holds
                assert holds(boxes, order[k], order[k + 1], RELATIONS.index(r)), (cap, boxes)
        for listed in (c for c in b["captions"][i] if c.endswith(" from left to right")):  # 4 of 5 templates
            assert _objects_in(listed, False) == [(SIZES[objs[o][2]], COLORS[objs[o][1]], SHAPES[objs[o][0]])
                                                  for o in order]
    counts = [c for caps in b["captions"] for c in caps if re.match(r"(one|two|three|four) shapes?: ", c)]
    assert counts and all(len(_objects_in(c, False)) == NUMBER_WORDS.index(c.split()[0]) + 1 for c in counts)


def test_test_split_uses_held_out_phrasing(scenes, test_scenes):
    train = {c for caps in scenes["captions"] for c in caps}
    test = {c for caps in test_scenes["captions"] for c in caps}
    assert not train & test
    val = ShapesWorld("val", size=200, seed=1, max_objects=4).batch(range(200))
    for cap in (c for caps in val["captions"] for c in caps):  # val is phrased like train
        assert any(re.fullmatch(t.replace("{chain}", ".+").replace("{list}", ".+").replace("{count}", ".+"), cap)
                   for t in SCENE_TRAIN_TEMPLATES) and not _objects_in(cap, False) == [], cap
    for i in range(N):
        objs, _ = objects_of(test_scenes, i)
        named = sorted((SIZES[z], COLORS[c], SHAPES[s]) for s, c, z in objs)
        for cap in test_scenes["captions"][i]:
            assert sorted(_canon(o) for o in _objects_in(cap, True)) == named, cap
            assert any(re.fullmatch(t.replace("{chain}", ".+").replace("{list}", ".+").replace("{count}", ".+"),
                                    cap) for t in SCENE_TEST_TEMPLATES), cap
            assert not re.search(r"\b(left of|right of|above|below)\b", cap.replace("to the left of", "")
                                 .replace("to the right of", ""))
    used = {w for syn in SYNONYMS.values() for w in syn if any(w in c for c in test)}
    assert len(used) > 15
    assert any(r in c for c in test for r in TEST_RELATIONS[2:])
    rel_expr = [e for e, t in zip(test_scenes["expression"], test_scenes["expression_type"]) if t == "relation"]
    assert rel_expr and all(any(f" {r} " in e for r in TEST_RELATIONS) for e in rel_expr)


def _attribute_filter(words: str, objs) -> list[int]:
    """Objects fitting 'size? colour? shape-or-"shape"' (canonical or synonym words), recomputed here."""
    table = _canon
    found = []
    tokens = words
    for i, (s, c, z) in enumerate(objs):
        ok = True
        for w, pos in ((SIZES, 2), (COLORS, 1)):
            for word in w:
                forms = (word,) + SYNONYMS[word]
                if any(re.search(rf"\b{re.escape(f)}\b", tokens) for f in forms) and (s, c, z)[pos] != w.index(word):
                    ok = False
        shape_forms = {SHAPES.index(table((f,))[0]) for f in SHAPES + sum((SYNONYMS[x] for x in SHAPES), ())
                       if re.search(rf"\b{re.escape(f)}$", tokens)}
        if shape_forms and s not in shape_forms:
            ok = False
        if ok:
            found.append(i)
    return found


@pytest.mark.parametrize("split", ["train", "test"])
def test_referring_expressions_pick_out_exactly_their_target(split, scenes, test_scenes):
    b = scenes if split == "train" else test_scenes
    kinds = Counter(b["expression_type"])
    assert set(kinds) == {"attribute", "relation"} and min(kinds.values()) > N / 5
    for i in range(N):
        objs, boxes = objects_of(b, i)
        expr, kind, target = b["expression"][i], b["expression_type"][i], int(b["target"][i])
        assert referent(expr, objs, boxes) == target
        if kind == "attribute":
            assert _attribute_filter(expr[len("the "):], objs) == [target], expr
        else:
            m = re.fullmatch(r"the shape (left of|right of|above|below|to the left of|to the right of|over|under) "
                             r"the (.+)", expr)
            assert m, expr
            r = (RELATIONS + TEST_RELATIONS).index(m.group(1)) % 4
            anchors = _attribute_filter(m.group(2), objs)
            assert len(anchors) == 1, expr
            fits = [o for o in range(len(objs)) if o != anchors[0] and holds(boxes, o, anchors[0], r)]
            assert fits == [target], (expr, boxes)


def test_questions_have_the_right_answers(scenes):
    b = scenes
    kinds = Counter()
    for i in range(N):
        objs, boxes = objects_of(b, i)
        q, a = b["question"][i], b["answer"][i]
        assert SCENE_ANSWERS[b["answer_id"][i]] == a
        if q == "how many shapes are there?":
            kinds["count"] += 1
            assert a == NUMBER_WORDS[len(objs) - 1]
        elif m := re.fullmatch(r"is there an? (\w+) (\w+)\?", q):
            kinds["exists"] += 1
            present = any(COLORS[c] == m.group(1) and SHAPES[s] == m.group(2) for s, c, _ in objs)
            assert a == ("yes" if present else "no")
        elif m := re.fullmatch(r"what colour is the shape (left of|right of|above|below) the (.+)\?", q):
            kinds["relation_color"] += 1
            (anchor,) = _attribute_filter(m.group(2), objs)
            fits = [o for o in range(len(objs)) if o != anchor and holds(boxes, o, anchor, RELATIONS.index(m.group(1)))]
            assert len(fits) == 1 and a == COLORS[objs[fits[0]][1]], q
        elif m := re.fullmatch(r"what shape is (left of|right of|above|below) the (.+)\?", q):
            kinds["relation_shape"] += 1
            (anchor,) = _attribute_filter(m.group(2), objs)
            fits = [o for o in range(len(objs)) if o != anchor and holds(boxes, o, anchor, RELATIONS.index(m.group(1)))]
            assert len(fits) == 1 and a == SHAPES[objs[fits[0]][0]], q
        elif m := re.fullmatch(r"what (colour|shape|size) is the (.+)\?", q):
            kinds[m.group(1)] += 1
            (o,) = _attribute_filter(m.group(2).replace(" one", " shape"), objs)
            pos = ("shape", "colour", "size").index(m.group(1))
            assert a == (SHAPES, COLORS, SIZES)[pos][objs[o][pos]], q
            assert not re.search(rf"\b{a}\b", m.group(2)), q  # the answer is not in the question
        else:
            raise AssertionError(q)
    assert set(kinds) == {"count", "exists", "colour", "shape", "size", "relation_color", "relation_shape"}, kinds
    assert Counter(b["answer"])["yes"] > 10 and Counter(b["answer"])["no"] > 10


def test_vectorised_tables_equal_their_per_scene_definitions(scenes):
    b = scenes
    attrs = torch.stack([b["shapes"], b["colors"], b["sizes"]], -1).numpy()
    uniq = unique_table(attrs, b["object_mask"].numpy())
    triples = triple_table(b["boxes"].double().numpy(), b["object_mask"].numpy())
    from mmlab.data.shapes_layout import relations
    from mmlab.data.shapes_scene_text import SUBSETS
    for i in range(N):
        objs, boxes = objects_of(b, i)
        for o in range(len(objs)):
            assert [SUBSETS[j] for j in np.flatnonzero(uniq[i, o])] == unique_subsets(objs, o)
        want = sorted(relation_triples(relations(boxes)))
        assert sorted((int(t), int(r), int(a)) for t, a, r in np.argwhere(triples[i])) == want


def test_resolver_and_its_errors():
    objs = [(0, 0, 0), (0, 4, 1), (1, 4, 0)]  # small red circle, large blue circle, small blue square
    boxes = np.array([[2, 2, 10, 10], [20, 2, 36, 18], [40, 30, 50, 40]], dtype=float)
    assert resolve("the circle", objs, boxes) == [0, 1]
    assert referent("the red shape", objs, boxes) == 0
    assert referent("the big disk", objs, boxes) == 1
    assert resolve("the shape right of the red circle", objs, boxes) == [1, 2]
    assert referent("the shape below the large circle", objs, boxes) == 2
    assert referent("the square under the azure circle", objs, boxes) == 2
    with pytest.raises(ValueError, match="not unique.*fits 2"):
        referent("the circle", objs, boxes)
    with pytest.raises(ValueError, match="not unique.*fits 0"):
        referent("the green shape", objs, boxes)
    with pytest.raises(ValueError, match="anchor fits 2"):
        referent("the shape left of the blue shape", objs, boxes)
    with pytest.raises(ValueError, match="not of the form"):
        referent("a red circle", objs, boxes)
    with pytest.raises(TypeError, match="expression"):
        referent(3, objs, boxes)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"max_objects": 5}, ValueError, "max_objects"),
        ({"max_objects": 0}, ValueError, "max_objects"),
        ({"max_objects": 2.0}, TypeError, "max_objects"),
        ({"max_objects": True}, TypeError, "max_objects"),
        ({"max_objects": 3, "with_audio": True}, ValueError, "with_audio=True is not supported with max_objects=3"),
        ({"max_objects": 2, "video_frames": 4}, ValueError, "video_frames=4 is not supported"),
        ({"max_objects": 2, "image_size": 4}, ValueError, "image_size"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        ShapesWorld(**kwargs)


def test_defaults_and_repr():
    one, many = ShapesWorld(), ShapesWorld(max_objects=2)
    assert (one.image_size, one.with_audio, many.image_size, many.with_audio) == (32, True, 64, False)
    assert "max_objects" not in repr(one) and repr(many).endswith("with_audio=False, max_objects=2)")


def test_collate_pads_scenes_of_different_max_objects():
    a, b = ShapesWorld("val", size=5, max_objects=2)[1], ShapesWorld("val", size=5, max_objects=4)[3]
    out = collate_shapes_world([a, b])
    assert out["boxes"].shape == (2, 4, 4) and out["object_mask"].shape == (2, 4)
    assert torch.equal(out["boxes"][0, :2], a["boxes"]) and (out["boxes"][0, 2:] == 0).all()
    assert (out["shapes"][0, 2:] == -1).all() and not out["object_mask"][0, 2:].any()
    assert torch.equal(out["object_mask"][1], b["object_mask"])
