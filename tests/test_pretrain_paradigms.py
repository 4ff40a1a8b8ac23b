"""The unified (VLMo-style) model and the paradigm measurements of lesson 10b, on tiny models and data."""
import pytest
import torch

from mmlab.data.shapes_text import ANSWERS
from mmlab.pretrain import paradigms as P
from mmlab.pretrain import recipes as R
from mmlab.pretrain.data import load_vl_data
from mmlab.pretrain.unified import UnifiedConfig, UnifiedVLPModel
from mmlab.pretrain.vlp import Objectives, VLPConfig, VLPModel, vlp_loss


@pytest.fixture(scope="module")
def small():
    train, vocab = load_vl_data("train", 48)
    val, _ = load_vl_data("val", 16, vocab)
    return train, val, vocab


def _unified(vocab, **kw):
    torch.manual_seed(0)
    return UnifiedVLPModel(UnifiedConfig(vocab_size=len(vocab), dim=16, heads=2, embed_dim=16, **kw))


def _fusion(vocab):
    torch.manual_seed(0)
    return VLPModel(VLPConfig(vocab_size=len(vocab), dim=16, heads=2, embed_dim=16))


def test_unified_modes_shapes_and_independence(small):
    train, _, vocab = small
    model = _unified(vocab).eval()
    images, ids, mask = train.images[:3], train.ids[:3], train.mask[:3]
    with torch.no_grad():
        it, tt = model.image_tokens(images), model.text_tokens(ids, mask)
        assert it.shape == (3, 17, 16) and tt.shape == (3, ids.shape[1], 16)
        zi, zt = model.image_embedding(it), model.text_embedding(tt, mask)
        assert zi.shape == zt.shape == (3, 16) and torch.allclose(zi.norm(dim=1), torch.ones(3))
        fused = model.fuse(tt, mask, it)
        assert fused.shape == tt.shape
        other = model.fuse(tt, mask, model.image_tokens(torch.rand_like(images)))
        assert not torch.allclose(fused[:, 0], other[:, 0])  # fusion mode reads the image
        # dual mode: a caption's embedding does not depend on any image, nor on its padding
        tt2 = tt.clone()
        tt2[~mask.bool()] = 7.0
        assert torch.allclose(model.text_embedding(tt2, mask), zt, atol=1e-6)
    with pytest.raises(ValueError, match="batch mismatch"):
        model.fuse(tt, mask, it[:2])


def test_unified_objectives_reach_their_experts(small):
    train, _, vocab = small
    model = _unified(vocab, depth=2, vl_layers=1)
    batch = R.vlp_batches(train, vocab, 8, seed=0)(0)
    top, bottom = model.encoder.blocks[1], model.encoder.blocks[0]
    vlp_loss(model, batch, Objectives(itc=True))["loss"].backward()  # dual mode only: no VL expert
    assert top.ffn["vl"].fc1.weight.grad is None and bottom.ffn["image"].fc1.weight.grad.abs().sum() > 0
    assert model.dual.logit_scale.log_scale.grad is not None
    model.zero_grad(set_to_none=True)
    vlp_loss(model, batch, Objectives(itc=False, itm=True, mlm=True))["loss"].backward()  # fusion mode
    assert top.ffn["vl"].fc1.weight.grad.abs().sum() > 0 and model.itm_head.proj.weight.grad.abs().sum() > 0
    assert model.mlm_head[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="MIM needs a VLPModel"):
        vlp_loss(model, batch, Objectives(itc=True, mim=True))


def test_train_vlp_builds_either_paradigm(small):
    train, _, vocab = small
    uni, history = R.train_vlp(train, vocab, Objectives(itc=True, itm=True), steps=2, batch_size=8,
                               config=UnifiedConfig(vocab_size=len(vocab), dim=16, heads=2, embed_dim=16))
    assert isinstance(uni, UnifiedVLPModel) and len(history["loss"]) == 2 and not uni.training
    with pytest.raises(TypeError, match="VLPConfig or UnifiedConfig"):
        R.train_vlp(train, vocab, Objectives(), steps=1, config=object())
    with pytest.raises(ValueError, match="paradigm"):
        P.train_paradigm("two-tower", train, vocab, P.ParadigmSettings())
    with pytest.raises(ValueError, match="vl_layers"):
        UnifiedConfig(depth=2, vl_layers=3)


@pytest.mark.parametrize("make", [_fusion, _unified])
def test_reranking_with_k_1_is_itc_and_every_pair_is_itm_over_all(small, make):
    _, val, vocab = small
    model = make(vocab).eval()
    one = R.i2t_recall_at_1(model, val, k=1)
    assert one["itc"] == one["itm_rerank"] == one["itm+itc_rerank"] == one["itc_r@1"]
    every = R.i2t_recall_at_1(model, val, k=len(val.captions))  # the shortlist is every caption
    assert every[f"itc_r@{len(val.captions)}"] == 1.0
    assert every["itm_rerank"] == pytest.approx(P.full_itm_recall(model, val), abs=1 / len(val))
    assert 0 <= P.full_itm_recall(model, val, images=4) <= 1


def test_retrieval_cost_counts(small):
    _, val, vocab = small
    cost = P.retrieval_cost(_fusion(vocab).eval(), val, k=4, repeats=1, full_images=2)
    n, m = len(val), len(val.captions)
    assert (cost["unimodal passes"], cost["fusion passes, ITC"], cost["fusion passes, re-rank"],
            cost["fusion passes, every pair"]) == (n + m, 0, n * 4, n * m)
    model = _fusion(vocab)
    with P.counting_rows(model, "fuse") as counts:
        model.itm_logits(*(model.image_tokens(val.images[:3]), model.text_tokens(val.ids[:3], val.mask[:3])),
                         val.mask[:3])
    assert counts == {"fuse": 3} and "fuse" not in vars(model)  # counted, then the method is restored
    assert 0 < cost["seconds, ITC"] <= cost["seconds, every pair"]
    with pytest.raises(ValueError, match="repeats"):
        P.retrieval_cost(_fusion(vocab), val, k=4, repeats=0)
    with pytest.raises(ValueError, match="full_images"):
        P.retrieval_cost(_fusion(vocab), val, k=4, full_images=len(val) + 1)


def test_pair_features_and_parameter_count(small):
    _, val, vocab = small
    fusion, uni = _fusion(vocab).eval(), _unified(vocab).eval()
    assert P.pair_features(fusion, val, "dual").shape == (len(val), 32)
    assert P.pair_features(fusion, val, "fusion").shape == (len(val), 16)
    assert P.pair_features(uni, val, "unified").shape == (len(val), 16)
    assert P.parameter_count(fusion, "dual") == sum(p.numel() for p in fusion.dual.parameters())
    assert P.parameter_count(fusion, "fusion") == sum(
        p.numel() for n, p in fusion.named_parameters() if not n.startswith(("mlm_head.", "mae.")))
    assert P.parameter_count(uni, "unified") == sum(p.numel() for p in uni.parameters()) - sum(
        p.numel() for p in uni.mlm_head.parameters())


def test_question_types_and_vqa_head(small):
    train, val, _ = small
    kinds = [P.question_type(q) for q in train.questions + val.questions]
    assert set(kinds) <= set(range(len(P.QUESTION_TYPES)))
    with pytest.raises(ValueError, match="not a VQA-lite question"):
        P.question_type("how many shapes?")
    # features that carry the answer: the head must learn them; features of noise: it must not
    g = torch.Generator().manual_seed(0)
    y_train, y_val = train.answers, val.answers
    onehot = torch.eye(len(ANSWERS))
    s = P.ParadigmSettings(head_steps=200)
    good = P.vqa_head_accuracy(onehot[y_train] + 0.1 * torch.randn(len(y_train), len(ANSWERS), generator=g),
                               y_train, onehot[y_val], y_val, val.questions, s)
    assert good["all"] == 1.0 and set(good) == {"all", *P.QUESTION_TYPES}
    noise = P.vqa_head_accuracy(torch.randn(len(y_train), 8, generator=g), y_train,
                                torch.randn(len(y_val), 8, generator=g), y_val, val.questions, s)
    assert noise["all"] < 0.6
