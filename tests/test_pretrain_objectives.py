"""mmlab.pretrain objectives: mae_loss against the formula (unbiased per-patch variance, removed patches only),
hard_negatives' distribution and guarantees (never a positive, float32, clear errors), the ITM head and pairs."""
import math

import pytest
import torch

from mmlab.pretrain import ITMHead, hard_negatives, itm_loss, itm_pairs, mae_loss


def _mae_case(seed=0, b=3, n=6, p=12):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.randn(b, n, p, generator=g), torch.rand(b, n, p, generator=g)
    mask = torch.rand(b, n, generator=g) < 0.6
    mask[:, 0] = True
    return pred, target, mask


def _mae_by_loops(pred, target, mask, norm_pix):
    total, count = 0.0, 0
    b, n, p = pred.shape
    for i in range(b):
        for j in range(n):
            if not mask[i, j]:
                continue
            t = target[i, j].double()
            if norm_pix:
                mean = float(t.mean())
                var = sum((float(v) - mean) ** 2 for v in t) / (p - 1)  # unbiased, as MAE
                t = (t - mean) / math.sqrt(var + 1e-6)
            total += float(((pred[i, j].double() - t) ** 2).mean())
            count += 1
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_matches_formula(norm_pix):
    pred, target, mask = _mae_case()
    got = mae_loss(pred, target, mask, norm_pix=norm_pix)
    assert got.shape == () and abs(float(got) - _mae_by_loops(pred, target, mask, norm_pix)) < 1e-5


def test_mae_loss_uses_unbiased_variance():
    pred, target, mask = _mae_case(p=4)  # few values per patch: biased and unbiased differ clearly
    mean = target.mean(-1, keepdim=True)
    biased = (target - mean) / (target.var(-1, unbiased=False, keepdim=True) + 1e-6) ** 0.5
    wrong = ((pred - biased) ** 2).mean(-1)[mask].mean()
    assert abs(float(mae_loss(pred, target, mask)) - float(wrong)) > 1e-3


def test_mae_loss_ignores_visible_patches_even_nan_and_accepts_0_1_masks():
    pred, target, mask = _mae_case()
    ref = mae_loss(pred, target, mask)
    pred2 = pred.clone()
    pred2[~mask] = float("nan")
    assert torch.equal(mae_loss(pred2, target, mask), ref)
    assert torch.allclose(mae_loss(pred, target, mask.long()), ref)
    assert torch.allclose(mae_loss(pred, target, mask.float()), ref)
    pred.requires_grad_(True)
    mae_loss(pred, target, mask).backward()
    assert (pred.grad[~mask] == 0).all() and (pred.grad[mask] != 0).any()


@pytest.mark.parametrize("change, error, words", [
    (dict(mask=torch.zeros(3, 6, dtype=torch.bool)), ValueError, "removes no patch"),
    (dict(mask=torch.ones(3, 5, dtype=torch.bool)), ValueError, "mask"),
    (dict(mask=torch.full((3, 6), 2)), ValueError, "0 and 1"),
    (dict(target=torch.rand(3, 6, 11)), ValueError, "target"),
    (dict(pred=torch.rand(3, 6)), ValueError, "pred"),
    (dict(pred=torch.ones(3, 6, 12, dtype=torch.long)), TypeError, "floating"),
    (dict(norm_pix=1), TypeError, "norm_pix"),
    (dict(pred=torch.rand(3, 6, 1), target=torch.rand(3, 6, 1)), ValueError, "unbiased"),
])
def test_mae_loss_errors(change, error, words):
    pred, target, mask = _mae_case()
    args = dict(pred=pred, target=target, mask=mask, norm_pix=True)
    args.update(change)
    with pytest.raises(error, match=words):
        mae_loss(**args)


# ---- hard negatives -----------------------------------------------------------------------------------

def test_hard_negatives_distribution_is_softmax_over_negatives():
    sim = torch.tensor([[3.0, 0.0, 1.0, 2.0, -1.0]])  # index 0 is the positive
    positive = torch.tensor([[True, False, False, False, False]])
    rows = 40000
    draws = hard_negatives(sim.expand(rows, -1), positive.expand(rows, -1), torch.Generator().manual_seed(0))
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0, -1.0]), 0)
    counts = torch.bincount(draws, minlength=5)
    assert counts[0] == 0
    for j, p in zip(range(1, 5), expected.tolist()):
        sd = math.sqrt(rows * p * (1 - p))
        assert abs(int(counts[j]) - rows * p) <= 5 * sd, (j, int(counts[j]), rows * p)


def test_hard_negatives_never_a_positive_with_many_positives_per_row():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (256,), generator=g)  # duplicates: several captions of one "image"
    positive = labels[:, None] == labels[None, :]
    sim = 50 * torch.randn(256, 256, generator=g) + 100 * positive  # positives score far highest
    for seed in range(5):
        j = hard_negatives(sim, positive, torch.Generator().manual_seed(seed))
        assert j.dtype == torch.int64 and j.shape == (256,)
        assert not positive[torch.arange(256), j].any()


def test_hard_negatives_float32_large_logits_and_minus_inf():
    sim = torch.tensor([[9000.0, 8990.0, 0.0, float("-inf")]], dtype=torch.bfloat16).expand(1000, -1)
    positive = torch.tensor([[True, False, False, False]]).expand(1000, -1)
    j = hard_negatives(sim, positive, torch.Generator().manual_seed(2))
    assert (j == 1).all()  # exp(8990 - 0) dominates; no overflow, -inf never drawn
    half = torch.tensor([[1.0, 1.0, float("-inf")]], dtype=torch.float16).expand(3000, -1)
    j = hard_negatives(half, torch.tensor([[False, True, False]]).expand(3000, -1), torch.Generator().manual_seed(2))
    assert (j == 0).all()  # the only negative with finite similarity


def test_hard_negatives_deterministic_and_rectangular():
    g = torch.Generator().manual_seed(3)
    sim, positive = torch.randn(8, 20, generator=g), torch.zeros(8, 20, dtype=torch.bool)
    positive[:, :3] = True
    a = hard_negatives(sim, positive, torch.Generator().manual_seed(4))
    b = hard_negatives(sim, positive, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and (a >= 3).all() and a.shape == (8,)


@pytest.mark.parametrize("sim, positive, error, words", [
    (torch.tensor([[0.0, float("nan")]]), torch.tensor([[True, False]]), ValueError, "NaN"),
    (torch.tensor([[0.0, float("inf")]]), torch.tensor([[True, False]]), ValueError, r"similarity\[0, 1\]"),
    (torch.zeros(2, 2), torch.tensor([[True, False], [True, True]]), ValueError, "row 1 has no negative"),
    (torch.tensor([[0.0, float("-inf")]]), torch.tensor([[True, False]]), ValueError, "row 0 has no negative"),
    (torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), TypeError, "positive_mask"),
    (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.bool), TypeError, "similarity"),
    (torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.bool), ValueError, "positive_mask"),
    (torch.zeros(4), torch.zeros(4, dtype=torch.bool), ValueError, "similarity"),
    (torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool), ValueError, "similarity"),
])
def test_hard_negatives_errors(sim, positive, error, words):
    with pytest.raises(error, match=words):
        hard_negatives(sim, positive)


def test_hard_negatives_does_not_modify_inputs():
    sim, positive = torch.randn(5, 5), torch.eye(5, dtype=torch.bool)
    s0, p0 = sim.clone(), positive.clone()
    hard_negatives(sim, positive)
    assert torch.equal(sim, s0) and torch.equal(positive, p0)


# ---- ITM ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hard", [True, False])
def test_itm_pairs_layout_and_no_positive_negatives(hard):
    labels = torch.tensor([0, 1, 0, 2, 1, 3])
    positive = labels[:, None] == labels[None, :]
    sim = torch.randn(6, 6)
    images, texts, y = itm_pairs(positive, sim, sim.T, hard=hard, generator=torch.Generator().manual_seed(0))
    assert images.shape == texts.shape == y.shape == (18,)
    assert torch.equal(y, torch.tensor([1] * 6 + [0] * 12))
    assert torch.equal(images[:6], torch.arange(6)) and torch.equal(texts[:6], torch.arange(6))
    assert not positive[images[6:], texts[6:]].any()  # a negative never matches, also with duplicates


def test_itm_head_and_loss():
    head = ITMHead(8)
    cls = torch.randn(4, 8, requires_grad=True)
    logits = head(cls)
    loss = itm_loss(logits, torch.tensor([1, 0, 0, 1]))
    loss.backward()
    assert logits.shape == (4, 2) and cls.grad.abs().sum() > 0
    p = head.match_probability(cls)
    assert p.shape == (4,) and ((p > 0) & (p < 1)).all()
    with pytest.raises(ValueError, match="0 or 1"):
        itm_loss(logits, torch.tensor([1, 0, 2, 1]))
    with pytest.raises(ValueError, match="logits"):
        itm_loss(torch.zeros(4, 3), torch.tensor([1, 0, 0, 1]))
