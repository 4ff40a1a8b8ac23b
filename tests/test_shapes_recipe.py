"""The Shapes-World CLIP recipe shared by lessons 06, 06b and 08."""
import pytest
import torch

from mmlab.align.shapes_recipe import (
    CaptionedImages,
    CompactVocabulary,
    attribute_classes,
    attribute_recall,
    clip_loss,
    mean_pairwise_cosine,
    modality_gap,
    tiny_dual_encoder,
)
from mmlab.data import ShapesWorld


@pytest.fixture(scope="module")
def split():
    batch = ShapesWorld("train", size=40, with_audio=False).batch(range(40))
    vocab = CompactVocabulary([c for caps in batch["captions"] for c in caps], max_length=24)
    return batch, vocab, CaptionedImages.from_split(batch, vocab)


def test_compact_vocabulary_keeps_seen_ids_and_maps_the_rest_to_unk(split):
    batch, vocab, _ = split
    tok = vocab.tokenizer
    captions = [c for caps in batch["captions"] for c in caps]
    full = tok.encode(captions, max_length=24, padding="longest")["input_ids"]
    compact = vocab(captions)["input_ids"]
    assert compact.max() < len(vocab) and vocab.unknown_share(captions) == 0.0
    # the mapping is one-to-one on seen ids: decoding back through wordpiece_ids gives the original ids
    assert torch.equal(vocab.wordpiece_ids[compact], full)
    unseen = vocab(["a zyzzyva"])["input_ids"][0]
    assert vocab.unk_id in unseen.tolist() and vocab.unknown_share(["a zyzzyva", captions[0]]) == 0.5


def test_attribute_classes_number_the_48_combinations(split):
    batch, _, data = split
    classes = attribute_classes(batch)
    assert torch.equal(classes, batch["shape"] * 12 + batch["color"] * 2 + batch["size"]) and classes.max() < 48
    assert torch.equal(data.owner, torch.arange(40).repeat_interleave(4))


def test_batches_are_seeded_and_consistent(split):
    _, vocab, data = split
    a, b, c = data.batch(7, 16), data.batch(7, 16), data.batch(8, 16)
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["index"], c["index"])
    assert torch.equal(a["image"], data.images[a["index"]])
    assert torch.equal(a["caption_rows"] // 4, a["index"])  # each caption describes its own image
    assert torch.equal(a["positive"], data.classes[a["index"]][:, None] == data.classes[a["index"]][None, :])
    assert a["text"]["input_ids"].shape[1] == int(a["text"]["attention_mask"].sum(1).max())  # trimmed
    assert data.batch(7, 16, trim=False)["text"]["input_ids"].shape[1] == vocab.max_length
    assert torch.equal(data.batches(16, offset=5)(2)["index"], a["index"])


def test_extras_follow_the_drawn_images(split):
    batch, vocab, _ = split
    data = CaptionedImages.from_split(batch, vocab, marker=torch.arange(40.0))
    b = data.batch(3, 8)
    assert torch.equal(b["marker"], b["index"].float())


def test_clip_loss_uses_same_class_positives_for_info_nce_only(split):
    _, vocab, data = split
    torch.manual_seed(0)
    model = tiny_dual_encoder(len(vocab))
    batch = data.batch(0, 32)
    out = model(batch["image"], batch["text"])
    assert batch["positive"].sum() > 32  # duplicates exist, so the mask matters
    torch.testing.assert_close(clip_loss(model, batch),
                               model.loss(out["image"], out["text"], positive_mask=batch["positive"]))
    siglip = tiny_dual_encoder(len(vocab), loss="siglip")
    out = siglip(batch["image"], batch["text"])
    torch.testing.assert_close(clip_loss(siglip, batch), siglip.loss(out["image"], out["text"]))


def test_attribute_recall_counts_any_item_of_the_class():
    img = torch.eye(3)
    txt = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.05, 0.0, 1.0], [0.9, 0.1, 0.05]])
    img_cls, txt_cls = torch.tensor([0, 1, 2]), torch.tensor([1, 0, 0, 2])
    r = attribute_recall(img, txt, img_cls, txt_cls, ks=(1, 2))
    # nearest texts: image 0 -> text 1 (class 0, hit), image 1 -> text 0 (class 1, hit), image 2 -> text 2 (class 0,
    # miss) with text 3 (class 2) second
    assert r["i2t@1"] == pytest.approx(2 / 3) and r["i2t@2"] == 1.0
    # nearest images: text 0 -> image 1 (hit), text 1 -> image 0 (hit), text 2 -> image 2 then image 0 (hit at 2),
    # text 3 -> image 0 then image 1 (never its class 2)
    assert r["t2i@1"] == pytest.approx(2 / 4) and r["t2i@2"] == pytest.approx(3 / 4)


def test_modality_gap_is_the_centroid_distance():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[-1.0, 0.0]])
    assert modality_gap(img, txt) == pytest.approx(float(torch.tensor([1.5, 0.5]).norm()))
    assert modality_gap(img, img) == 0.0


def test_mean_pairwise_cosine_over_distinct_and_cross_group_pairs():
    x = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])  # norms do not matter
    assert mean_pairwise_cosine(x) == pytest.approx((1 + 0 + 0) / 3)
    assert mean_pairwise_cosine(x, groups=torch.tensor([0, 0, 1])) == pytest.approx(0.0)
    assert mean_pairwise_cosine(x, groups=torch.tensor([0, 1, 1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one group"):
        mean_pairwise_cosine(x, groups=torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mean_pairwise_cosine(x[:1])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="captions must be one or more"):
        CompactVocabulary([])
    with pytest.raises(TypeError, match="not one string"):
        CompactVocabulary("a red circle")
    with pytest.raises(TypeError, match="max_length"):
        CompactVocabulary(["a red circle"], max_length=2.5)
    with pytest.raises(ValueError, match="width mismatch"):
        modality_gap(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="image_classes"):
        attribute_recall(torch.randn(3, 4), torch.randn(2, 4), torch.tensor([0, 1]), torch.tensor([0, 1]))


def test_tiny_dual_encoder_adds_an_audio_tower_without_moving_the_others():
    from mmlab.encoders import AudioConfig

    torch.manual_seed(0)
    two = tiny_dual_encoder(40)
    torch.manual_seed(0)
    three = tiny_dual_encoder(40, audio=AudioConfig(dim=64, depth=1, heads=4, n_mels=32, patch_freq=8, patch_time=8))
    assert two.audio_encoder is None and three.audio_encoder is not None
    for name, p in two.image_encoder.state_dict().items():
        assert torch.equal(p, three.image_encoder.state_dict()[name])
    assert torch.equal(two.text_encoder.token_embed.weight, three.text_encoder.token_embed.weight)
    with pytest.raises(TypeError, match="AudioConfig"):
        tiny_dual_encoder(40, audio={"dim": 64})
