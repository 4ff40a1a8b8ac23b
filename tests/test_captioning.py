"""mmlab.captioning: the KV cache equals recomputation, masks, teacher forcing with padding, Flamingo's closed
gates, the parts reused from mmlab.encoders, the caption vocabulary, training through fit, and bad inputs."""
import pytest
import torch

from mmlab.captioning import (
    DECODERS,
    CaptionVocabulary,
    CausalSelfAttention,
    DecoderConfig,
    FlamingoDecoder,
    MemoryCrossAttention,
    PrecomputedTokens,
    UnifiedDecoder,
    prefix_lm_mask,
    teacher_forcing_loss,
)
from mmlab.captioning.readback import caption_accuracy, read_objects, stated_relation
from mmlab.captioning.tagging import (
    TAGGED_ATTRIBUTES,
    patch_boxes,
    patch_labels,
    scene_patch_labels,
    tagging_accuracy,
    tagging_heads,
    tagging_loss,
)
from mmlab.captioning.vocabulary import caption_words
from mmlab.encoders import CrossAttentionBlock, MultiHeadSelfAttention, VisionTransformer, ViTConfig
from mmlab.generate import beam_search, greedy, sample
from mmlab.preprocess.text import WordPieceTokenizer
from mmlab.train import TrainConfig, fit

V = 23


def build(name, seed=0, depth=2):
    torch.manual_seed(seed)
    vit = VisionTransformer(ViTConfig(dim=32, depth=1, heads=4, mlp_ratio=2.0, image_size=16, patch_size=4))
    config = DecoderConfig(vocab_size=V, max_length=12, dim=32, depth=depth, heads=4, mlp_ratio=2.0,
                           prefix_length=3, max_prompt_length=5)
    return DECODERS[name](config, vit)


def images(n=3, seed=1):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def random_ids(b=3, t=8, seed=2):
    return torch.randint(1, V, (b, t), generator=torch.Generator().manual_seed(seed))


def prompt(name, b=3):
    """A padded prompt (question) for the unified decoder, nothing for the others."""
    if name != "unified":
        return {}
    ids = torch.randint(1, V, (b, 4), generator=torch.Generator().manual_seed(5))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]][:b])
    return {"prompt_ids": ids * mask, "prompt_mask": mask}


@pytest.mark.parametrize("name", list(DECODERS))
def test_kv_cache_logits_equal_recomputation(name):
    model = build(name).eval()
    img, ids, p = images(), random_ids(), prompt(name)
    with torch.no_grad():
        full = model(img, ids, **p)  # (B, T, V), one pass over the whole sequence
    cached = model.step(img, **p)
    for t in range(1, ids.shape[1] + 1):
        torch.testing.assert_close(cached(ids[:, :t]), full[:, t - 1], atol=2e-5, rtol=1e-5)
    assert cached.cache.text_length == ids.shape[1]
    plain = model.step(img, use_cache=False, **p)
    torch.testing.assert_close(plain(ids), full[:, -1], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(DECODERS))
def test_decoding_with_and_without_the_cache_gives_the_same_tokens(name):
    model = build(name, seed=3).eval()
    img, p = images(), prompt(name)
    bos = torch.ones(3, 1, dtype=torch.long)
    a = greedy(model.step(img, **p), bos, 10, eos_id=2)
    assert torch.equal(a, greedy(model.step(img, use_cache=False, **p), bos, 10, eos_id=2))
    b = beam_search(model.step(img, **p), bos, 8, beam_size=3, eos_id=2, length_penalty=1.0)
    c = beam_search(model.step(img, use_cache=False, **p), bos, 8, beam_size=3, eos_id=2, length_penalty=1.0)
    assert torch.equal(b[0], c[0])
    torch.testing.assert_close(b[1], c[1], atol=1e-5, rtol=1e-5)
    s = sample(model.step(img, **p), bos, 8, top_k=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, sample(model.step(img, use_cache=False, **p), bos, 8, top_k=5,
                                 generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", list(DECODERS))
def test_text_is_causal(name):
    model = build(name).eval()
    img, ids, p = images(), random_ids(), prompt(name)
    later = ids.clone()
    later[:, 5:] = (later[:, 5:] + 1) % V
    with torch.no_grad():
        a, b = model(img, ids, **p), model(img, later, **p)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_prefix_lm_mask_by_hand():
    keep = torch.tensor([[1, 1, 0, 1, 1, 1]], dtype=torch.bool)  # prefix of 3 (one padded), then 3 text tokens
    got = prefix_lm_mask(keep, 0, 6, prefix_length=3, bidirectional_prefix=True)[0, 0].int()
    want = torch.tensor([[1, 1, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0, 0],
                         [1, 1, 0, 1, 0, 0],
                         [1, 1, 0, 1, 1, 0],
                         [1, 1, 0, 1, 1, 1]])
    assert torch.equal(got, want)
    causal = prefix_lm_mask(keep, 0, 6, prefix_length=3)[0, 0].int()
    assert torch.equal(causal, torch.tril(torch.ones(6, 6, dtype=torch.int)) * keep.int())
    assert torch.equal(prefix_lm_mask(keep, 4, 2, 3, True)[0, 0].int(), want[4:])  # queries 4, 5 (a cached step)


def test_unified_prefix_is_bidirectional_and_ignores_the_text():
    model = build("unified").eval()
    img, p = images(), prompt("unified")
    changed = dict(p, prompt_ids=p["prompt_ids"].clone())
    changed["prompt_ids"][0, 3] = (changed["prompt_ids"][0, 3] + 1) % V
    with torch.no_grad():
        a, keep = model.encode_prefix(img, **p)
        b, _ = model.encode_prefix(img, **changed)
        n_image = a.shape[1] - 4
        assert not torch.allclose(a[0, :n_image], b[0, :n_image])  # the image reads the last prompt token
        # the prefix states of a full run are those of the prefix alone (the prefix never sees the text)
        full = model.context(img, **p)
        assert full.prefix.shape[1] == a.shape[1] and keep.shape == (3, a.shape[1])
    # the padded prompt positions do not change the real ones
    padded = dict(p, prompt_ids=p["prompt_ids"].clone())
    padded["prompt_ids"][1, 2:] = 7
    with torch.no_grad():
        c, _ = model.encode_prefix(img, **padded)
    keep1 = keep[1]
    torch.testing.assert_close(a[1][keep1], c[1][keep1])


def test_teacher_forcing_leaves_padding_out():
    model = build("cross_attention").eval()
    img = images()
    lengths = [8, 5, 3]
    ids = random_ids()
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids * mask
    with torch.no_grad():
        loss = model.loss(img, ids, mask)
        junk = ids + (1 - mask) * 7  # other tokens in the padded positions
        assert float(model.loss(img, junk, mask)) == pytest.approx(float(loss), abs=1e-6)
        # = the token-weighted mean of each caption's loss computed alone, without padding
        per_row = [float(model.loss(img[i:i + 1], ids[i:i + 1, :n])) * (n - 1) for i, n in enumerate(lengths)]
        assert float(loss) == pytest.approx(sum(per_row) / sum(n - 1 for n in lengths), abs=1e-5)
        # by hand: cross-entropy of the scored positions
        logits = model(img, ids, mask)
    scored = mask[:, 1:].bool()
    want = torch.nn.functional.cross_entropy(logits[:, :-1][scored], ids[:, 1:][scored])
    torch.testing.assert_close(teacher_forcing_loss(logits, ids, mask), want)


def test_flamingo_gates_start_closed_then_open():
    model = build("flamingo")
    assert model.gates() == [(0.0, 0.0), (0.0, 0.0)]
    ids = random_ids()
    with torch.no_grad():
        a, b = model(images(seed=1), ids), model(images(seed=9), ids)
    assert torch.equal(a, b)  # closed gates: the image is ignored exactly
    loss = model.loss(images(), ids)
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.vision.parameters())  # no gradient to the tower
    assert all(float(layer.gated.attn_gate.grad.abs()) > 0 for layer in model.layers)  # but the gates learn
    fit(model, lambda m, batch: m.loss(*batch), lambda i: (images(), ids), TrainConfig(steps=2, progress=False))
    assert all(abs(g) > 0 for pair in model.gates() for g in pair)
    with torch.no_grad():
        assert not torch.allclose(model(images(seed=1), ids), model(images(seed=9), ids))


def test_reused_encoder_blocks_compute_what_the_encoders_do():
    torch.manual_seed(0)
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 7, 16)
    block = MemoryCrossAttention(32, 4, 64, context_dim=16)
    torch.testing.assert_close(block.attend(x, block.memory_kv(memory)), CrossAttentionBlock.forward(block, x, memory))
    attn = CausalSelfAttention(32, 4)
    everything = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    torch.testing.assert_close(attn(x, everything)[0], MultiHeadSelfAttention.forward(attn, x))


@pytest.mark.parametrize("name", list(DECODERS))
def test_every_decoder_learns_its_captions_through_fit(name):
    """Eight images, each with its own caption: teacher forcing through mmlab.train.fit brings the loss far down."""
    model = build(name, depth=1)
    img = images(8, seed=4)
    ids = torch.randint(3, V, (8, 6), generator=torch.Generator().manual_seed(6))
    ids[:, 0], ids[:, -1] = 1, 2
    p = prompt(name, 3)
    p = {k: v.repeat(3, 1)[:8] for k, v in p.items()}
    with torch.no_grad():
        before = float(model.loss(img, ids, **p))
    fit(model, lambda m, b: m.loss(*b, **p), lambda i: (img, ids), TrainConfig(steps=60, lr=3e-3, progress=False))
    with torch.no_grad():
        after = float(model.loss(img, ids, **p))
    assert after < 0.25 * before


def test_caption_vocabulary():
    tok = WordPieceTokenizer.from_minilm()
    vocab = CaptionVocabulary(tok, ["a small red circle", "a large blue square left of a red circle"])
    assert vocab.pad_id == 0 and vocab.size == 4 + len({"a", "small", "red", "circle", "large", "blue", "square",
                                                        "left", "of"})
    enc = vocab.encode(["a red square", "a small blue circle left of a square"])
    assert enc["input_ids"].shape == enc["attention_mask"].shape == (2, 10)
    assert int(enc["input_ids"][0, 0]) == vocab.bos_id and int(enc["input_ids"][0, 4]) == vocab.eos_id
    assert vocab.decode(enc["input_ids"]) == ["a red square", "a small blue circle left of a square"]
    assert vocab.decode(vocab.encode(["a green square"])["input_ids"]) == ["a [UNK] square"]  # unseen word
    assert vocab.decode(torch.tensor([[vocab.bos_id, 5, vocab.eos_id, 6, 7]]))[0] == vocab.decode(
        torch.tensor([[5]]))[0]  # stops at the end-of-sequence id
    assert vocab.bos(3).tolist() == [[vocab.bos_id]] * 3
    assert caption_words("Small box, coloured RED") == "small box , coloured red"


def test_bad_input():
    model = build("cross_attention")
    img, ids = images(), random_ids()
    with pytest.raises(ValueError, match="reads no prompt"):
        model(img, ids, prompt_ids=ids)
    with pytest.raises(ValueError, match="exceed max_length 12"):
        model(img, random_ids(t=13))
    with pytest.raises(TypeError, match="input_ids must be int64 or int32"):
        model(img, ids.float())
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 23\)"):
        model(img, ids + V)
    with pytest.raises(ValueError, match="batch mismatch"):
        model(img[:2], ids)
    with pytest.raises(ValueError, match="input_ids must be a non-empty"):
        model(img, ids[:, :0])
    step = model.step(img)
    step(ids[:, :2])
    with pytest.raises(ValueError, match="do not continue the 2 cached tokens"):
        step(ids[:, 1:4])
    with pytest.raises(ValueError, match="pad_id 30 must be < vocab_size"):
        DecoderConfig(vocab_size=30, pad_id=30)
    with pytest.raises(TypeError, match="config must be a DecoderConfig"):
        FlamingoDecoder({"dim": 32}, model.vision)
    unified = build("unified")
    with pytest.raises(ValueError, match="exceeds max_prompt_length 5"):
        unified(img, ids, prompt_ids=random_ids(t=6))
    with pytest.raises(ValueError, match="prompt_mask row 0 has no real tokens"):
        unified(img, ids, prompt_ids=ids[:, :2], prompt_mask=torch.zeros(3, 2, dtype=torch.long))
    assert isinstance(unified, UnifiedDecoder)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        teacher_forcing_loss(torch.zeros(3, 1, V), ids[:, :1])


def test_caption_read_back_grades_the_data_own_captions_perfectly_and_catches_errors():
    from mmlab.data import ShapesWorld

    d = ShapesWorld("val", size=60, max_objects=3, image_size=32).batch(range(60))
    keys = (d["shapes"], d["colors"], d["sizes"], d["boxes"], d["object_mask"])
    for c in range(4):
        acc = caption_accuracy([caps[c] for caps in d["captions"]], *keys)
        assert {k: acc[k] for k in ("shape", "color", "size", "count", "exact")} == dict.fromkeys(
            ("shape", "color", "size", "count", "exact"), 1.0)
        assert acc["relation"] == 1.0 or acc["relations"] == 0
    chains = [caps[0] for caps in d["captions"]]
    swapped = [c.replace(" red ", " blue ") if " red " in c else c.replace(" blue ", " red ") for c in chains]
    wrong = caption_accuracy(swapped, *keys)
    assert wrong["color"] < 1.0 and wrong["shape"] == 1.0 and wrong["exact"] < 1.0
    flipped = caption_accuracy([c.replace("left of", "right of") for c in chains], *keys)
    assert flipped["relation"] < 1.0 and flipped["color"] == 1.0
    assert caption_accuracy(["a picture"] * 60, *keys)["count"] == 0.0
    assert read_objects("a small red circle left of a large blue cross")[0] == ((0, 0, 0), " left of a ")
    assert stated_relation(", which is above ") == 2 and stated_relation(" and ") is None


def test_patch_labels_by_hand():
    boxes = torch.tensor([[[1.0, 1.0, 7.0, 7.0], [9.0, 0.0, 16.0, 3.0]]])  # two objects on a 16x16 image, patch 8
    mask = torch.tensor([[True, True]])
    values = torch.tensor([[3, 1]])
    assert patch_labels(boxes, mask, values, 4, 16, 8).tolist() == [[3, 1, 4, 4]]
    assert patch_labels(boxes, mask, values, 4, 16, 8, min_overlap=30).tolist() == [[3, 4, 4, 4]]  # 21 px^2 < 30
    assert patch_labels(boxes, torch.tensor([[True, False]]), values, 4, 16, 8).tolist() == [[3, 4, 4, 4]]
    with pytest.raises(ValueError, match="not divisible"):
        patch_labels(boxes, mask, values, 4, 16, 5)


def test_tagging_loss_and_accuracy_by_hand():
    boxes = torch.tensor([[[1.0, 1.0, 7.0, 7.0], [9.0, 0.0, 16.0, 3.0]]])  # as in test_patch_labels_by_hand
    scenes = {"boxes": boxes, "object_mask": torch.tensor([[True, True]]), "shapes": torch.tensor([[3, 1]]),
              "colors": torch.tensor([[5, 0]]), "sizes": torch.tensor([[1, 0]])}
    labels = scene_patch_labels(scenes, 16, 8)
    assert labels["shapes"].tolist() == [[3, 1, 4, 4]] and labels["colors"].tolist() == [[5, 0, 6, 6]]
    assert labels["sizes"].tolist() == [[1, 0, 2, 2]]  # background: the attribute's number of values
    heads = tagging_heads(2)
    assert {k: h.out_features for k, h in heads.items()} == {k: n + 1 for k, n in TAGGED_ATTRIBUTES}
    patches = torch.randn(1, 4, 2)
    expected = sum(torch.nn.functional.cross_entropy(heads[k](patches)[0], labels[k][0]) for k in heads)
    torch.testing.assert_close(tagging_loss(heads, patches, labels), expected)
    # a colour head that is right on the two object patches and wrong on the background ones
    logits = torch.full((1, 4, 7), -5.0)
    logits[0, 0, 5] = logits[0, 1, 0] = logits[0, 2, 1] = logits[0, 3, 1] = 5.0
    fixed = {**heads, "colors": lambda x: logits}
    assert tagging_accuracy(fixed, patches, labels)["colors"] == 1.0  # background patches do not count
    with pytest.raises(ValueError, match=r"patches must be \(B, G\*G, D\)"):
        tagging_loss(heads, patches[0], labels)


def test_patch_boxes_by_hand():
    boxes = torch.tensor([[[1.0, 1.0, 7.0, 7.0], [9.0, 0.0, 16.0, 3.0]]])  # as in test_patch_labels_by_hand
    targets, on_object = patch_boxes(boxes, torch.tensor([[True, True]]), 16, 8)
    assert on_object.tolist() == [[True, True, False, False]]
    first, second = [0.25, 0.25, 0.375, 0.375], [12.5 / 16, 1.5 / 16, 7 / 16, 3 / 16]  # (cx, cy, w, h) / 16
    torch.testing.assert_close(targets, torch.tensor([[first, second, [0.0] * 4, [0.0] * 4]]))
    with pytest.raises(ValueError, match=r"boxes must be \(B, K, 4\)"):
        patch_boxes(boxes[0], torch.tensor([[True, True]]), 16, 8)


def test_precomputed_tokens():
    t = torch.randn(2, 5, 8)
    assert PrecomputedTokens(8)(t) is t
    torch.testing.assert_close(PrecomputedTokens(8).pool(t), t[:, 0])
    torch.testing.assert_close(PrecomputedTokens(8, pool="mean").pool(t), t[:, 1:].mean(1))
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, 5, 4\)"):
        PrecomputedTokens(4)(t)
    with pytest.raises(ValueError, match="pool must be one of"):
        PrecomputedTokens(8, pool="max")
