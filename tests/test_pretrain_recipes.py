"""mmlab.pretrain data preparation, the VLP model's objectives and the lesson-10 recipes, on tiny budgets."""
import pytest
import torch

from mmlab.pretrain import recipes as R
from mmlab.pretrain.data import NOT_NAMED, CompactVocab, caption_facts, load_vl_data, true_of
from mmlab.pretrain.vlp import Objectives, VLPConfig, VLPModel, vlp_loss


@pytest.fixture(scope="module")
def small():
    train, vocab = load_vl_data("train", 64)
    val, _ = load_vl_data("val", 24, vocab)
    return train, val, vocab


def test_compact_vocab(small):
    _, _, vocab = small
    assert vocab.special_ids == (0, 1, 2, 3, 4) and vocab.decode([0, 1, 2, 3, 4]) == list(CompactVocab.SPECIAL)
    ids, mask = vocab.encode(["a red circle", "a zebra"], max_length=8)
    assert vocab.decode(ids[0, :5]) == ["[CLS]", "a", "red", "circle", "[SEP]"]
    assert ids[1, 2] == vocab.unk_id and mask.sum(1).tolist() == [5, 4]
    assert vocab.word_id("red") == int(ids[0, 2])
    with pytest.raises(ValueError, match="single token"):
        vocab.word_id("zebra")


@pytest.mark.parametrize("caption, facts", [
    ("a small red circle", (0, 0, 0, NOT_NAMED)),
    ("a blue cross in the top left corner", (3, 4, NOT_NAMED, 0)),
    ("one green square at the top on a dark background", (1, 3, NOT_NAMED, 1)),
    ("the triangle is purple and large", (2, 5, 1, NOT_NAMED)),
    ("a yellow square at the bottom", (1, 2, NOT_NAMED, 7)),
])
def test_caption_facts(caption, facts):
    assert caption_facts(caption) == facts


def test_truth_and_own_captions(small):
    train, _, _ = small
    img = torch.tensor([[0, 0, 0, 4], [0, 0, 1, 4]])
    cap = torch.tensor([[0, 0, NOT_NAMED, NOT_NAMED], [0, 0, 1, NOT_NAMED], [0, 1, NOT_NAMED, 4]])
    assert true_of(img, cap).tolist() == [[True, False, False], [True, True, False]]
    t = train.truth()
    assert t[train.owner, torch.arange(len(train.captions))].all()  # every caption is true of its own image
    assert not t.all()


def _tiny_model(vocab):
    torch.manual_seed(0)
    return VLPModel(VLPConfig(vocab_size=len(vocab), dim=16, heads=2, embed_dim=16))


def test_vlp_loss_every_objective_reaches_its_parameters(small):
    train, _, vocab = small
    model = _tiny_model(vocab)
    batch = R.vlp_batches(train, vocab, 16, seed=0)(0)
    parts = vlp_loss(model, batch, Objectives(itc=True, itm=True, mlm=True, mim=True))
    assert set(parts) == {"itc", "itm", "mlm", "mim", "loss"} and all(torch.isfinite(v) for v in parts.values())
    for name, owner in (("itc", model.dual.image_proj), ("itm", model.itm_head), ("mlm", model.mlm_head),
                        ("mim", model.mae.decoder_pred)):
        model.zero_grad()
        parts = vlp_loss(model, batch, Objectives(itc=name == "itc", itm=name == "itm", mlm=name == "mlm",
                                                  mim=name == "mim"))
        parts["loss"].backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in owner.parameters()), name


def test_blind_objective_ignores_the_image(small):
    train, _, vocab = small
    model = _tiny_model(vocab).eval()
    batch = R.vlp_batches(train, vocab, 8, seed=1)(0)
    obj = Objectives(itc=False, mlm=True, blind=True)
    a = vlp_loss(model, batch, obj)["loss"]
    batch["images"] = torch.rand_like(batch["images"])
    assert torch.allclose(vlp_loss(model, batch, obj)["loss"], a)
    ids, mask = train.ids[:4], train.mask[:4]
    assert torch.allclose(model.mlm_logits(train.images[:4], ids, mask, blind=True),
                          model.mlm_logits(torch.rand(4, 3, 32, 32), ids, mask, blind=True))


def test_train_fusion_freezes_the_towers(small):
    train, val, vocab = small
    cfg = VLPConfig(vocab_size=len(vocab), dim=16, heads=2, embed_dim=16)
    base, _ = R.train_vlp(train, vocab, Objectives(itc=True), steps=2, batch_size=8, config=cfg)
    model, history = R.train_fusion(base, train, vocab, Objectives(itc=False, itm=True, mlm=True), steps=3,
                                    batch_size=8)
    assert len(history["loss"]) == 3
    for a, b in zip(base.dual.parameters(), model.dual.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(base.fusion.parameters(), model.fusion.parameters()))
    with pytest.raises(ValueError, match="train_image_tower"):
        R.train_fusion(base, train, vocab, Objectives(itc=True, itm=True), steps=1)
    tower, _ = R.train_fusion(base, train, vocab, Objectives(itc=True, itm=True), steps=2, batch_size=8,
                              train_image_tower=True)
    assert not torch.equal(tower.dual.image_proj.weight, base.dual.image_proj.weight)
    assert torch.equal(tower.dual.text_proj.weight, base.dual.text_proj.weight)
    r = R.i2t_recall_at_1(model, val, k=4)
    assert set(r) == {"itc", "itm_rerank", "itm+itc_rerank", "itc_r@4"} and all(0 <= v <= 1 for v in r.values())
    assert max(r["itc"], r["itm_rerank"], r["itm+itc_rerank"]) <= r["itc_r@4"]  # re-ranking picks inside the top k
    assert 0 <= R.itc_hard_pair_accuracy(model, val) <= 1
    acc = R.mlm_attribute_accuracy(model, val, vocab)
    assert set(acc) == {"shape", "color", "size", "all"}


def test_swapped_captions_are_one_word_off_and_false(small):
    _, val, vocab = small
    ids, kinds = R.swapped_captions(val, vocab, seed=0)
    rows = torch.arange(len(val)) * 4
    assert ((ids != val.ids[rows]).sum(1) == 1).all()
    assert set(kinds.tolist()) <= {0, 1, 2}
    swapped = [" ".join(t for t in vocab.decode(r) if not t.startswith("[")) for r in ids]
    facts = torch.tensor([caption_facts(c) for c in swapped])
    assert not true_of(val.image_facts, facts).diagonal().any()


def test_mae_recipe_and_probe(small):
    train, val, _ = small
    vit = R.LessonSettings(dim=16).vit_config()
    mae, history = R.train_mae(train.images, steps=2, batch_size=8, vit=vit)
    assert len(history["loss"]) == 2 and not mae.training
    acc = R.probe_accuracy(mae.encoder, train.images, train.image_facts[:, 1], val.images, val.image_facts[:, 1])
    assert 0 <= acc <= 1


def test_objectives_validation():
    with pytest.raises(ValueError, match="at least one"):
        Objectives(itc=False)
    with pytest.raises(TypeError, match="hard_negatives"):
        Objectives(hard_negatives=1)
    with pytest.raises(ValueError, match="mlm_prob"):
        Objectives(mlm=True, mlm_prob=0.0)
    assert Objectives(itm=True, mlm=True).name() == "ITC+ITM+MLM"
