"""mmlab.pretrain masking contracts (../shared/DESIGN.md, "Pretraining"): mask_tokens' 15% and 80/10/10 over large
batches (tolerances from the binomial standard deviation), never a special or padding position, inputs untouched,
determinism with a generator; random_masking's keep count, exact restore order, uniformity; clear errors."""
import math

import pytest
import torch

from mmlab.pretrain import IGNORE_INDEX, mask_tokens, random_masking, restore

VOCAB, MASK = 200, 103 % 200
SPECIAL = (0, 1, 2, MASK)  # pad, cls, sep, mask


def _batch(b=4000, length=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (b, length), generator=g)
    ids[:, 0], ids[:, 1] = 1, 2  # a [CLS] and a [SEP] in every row (special, never chosen)
    ids[ids == MASK] = 5
    lengths = torch.randint(3, length + 1, (b,), generator=g)
    mask = torch.arange(length)[None, :] < lengths[:, None]  # (B, L) True = real token
    ids = ids.masked_fill(~mask, 0)
    return ids, mask.long()


def _within(count, n, p, sds=5.0):
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= sds * sd, (count, n * p, sd)


def _mask(ids, att, **kw):
    return mask_tokens(ids, att, vocab_size=VOCAB, mask_token_id=MASK, special_token_ids=SPECIAL[:3], **kw)


def test_mask_tokens_statistics_15_and_80_10_10():
    ids, att = _batch()
    masked, labels = _mask(ids, att, generator=torch.Generator().manual_seed(1))
    is_special = torch.isin(ids, torch.tensor(SPECIAL))
    eligible = att.bool() & ~is_special
    chosen = labels != IGNORE_INDEX
    n_eligible, n_chosen = int(eligible.sum()), int(chosen.sum())
    ok, info = _within(n_chosen, n_eligible, 0.15)
    assert ok, info
    k = VOCAB - len(SPECIAL)  # ordinary ids a random replacement may take
    to_mask = int((chosen & (masked == MASK)).sum())
    changed = int((chosen & (masked != MASK) & (masked != ids)).sum())
    same = int((chosen & (masked == ids)).sum())
    for count, p in ((to_mask, 0.8), (changed, 0.1 * (1 - 1 / k)), (same, 0.1 + 0.1 / k)):
        ok, info = _within(count, n_chosen, p)
        assert ok, info
    assert to_mask + changed + same == n_chosen


def test_mask_tokens_never_touches_special_or_padding_and_labels_are_the_originals():
    ids, att = _batch(b=2000)
    masked, labels = _mask(ids, att, prob=0.5, generator=torch.Generator().manual_seed(2))
    protected = ~att.bool() | torch.isin(ids, torch.tensor(SPECIAL))
    assert (labels[protected] == IGNORE_INDEX).all()
    assert torch.equal(masked[protected], ids[protected])
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen])
    replaced = chosen & (masked != MASK)
    assert not torch.isin(masked[replaced], torch.tensor(SPECIAL)).any()  # random ids are never special
    assert masked.dtype == labels.dtype == torch.int64


def test_mask_tokens_random_replacements_are_uniform_over_ordinary_ids():
    ids = torch.full((20000, 8), 7)
    att = torch.ones_like(ids)
    masked, labels = mask_tokens(ids, att, vocab_size=10, mask_token_id=3, special_token_ids=(0, 1), prob=1.0,
                                 generator=torch.Generator().manual_seed(3))
    replaced = masked[(masked != 3) & (masked != 7)]  # the random draws that landed on another id
    assert set(replaced.unique().tolist()) == {2, 4, 5, 6, 8, 9}
    n = ids.numel()  # every position chosen (prob=1); each ordinary id (7 of them) gets 0.1 / 7 of them
    for v in (2, 4, 5, 6, 8, 9):
        ok, info = _within(int((masked == v).sum()), n, 0.1 / 7)
        assert ok, (v, info)


def test_mask_tokens_inputs_unmodified_and_deterministic():
    ids, att = _batch(b=64)
    ids0, att0 = ids.clone(), att.clone()
    a = _mask(ids, att, generator=torch.Generator().manual_seed(5))
    b = _mask(ids, att, generator=torch.Generator().manual_seed(5))
    c = _mask(ids, att, generator=torch.Generator().manual_seed(6))
    assert torch.equal(ids, ids0) and torch.equal(att, att0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_mask_tokens_prob_edges_and_bool_mask():
    ids, att = _batch(b=32)
    masked, labels = _mask(ids, att.bool(), prob=0.0)
    assert torch.equal(masked, ids) and (labels == IGNORE_INDEX).all()
    _, labels = _mask(ids, att, prob=1.0)
    eligible = att.bool() & ~torch.isin(ids, torch.tensor(SPECIAL))
    assert torch.equal(labels != IGNORE_INDEX, eligible)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(input_ids=torch.zeros(2, 3)), TypeError, "input_ids"),
    (dict(input_ids=torch.zeros(6, dtype=torch.long)), ValueError, "input_ids"),
    (dict(attention_mask=torch.ones(2, 4, dtype=torch.long)), ValueError, "attention_mask"),
    (dict(attention_mask=torch.ones(2, 3)), TypeError, "attention_mask"),
    (dict(input_ids=torch.full((2, 3), VOCAB)), ValueError, "input_ids"),
    (dict(prob=1.5), ValueError, "prob"),
    (dict(mask_token_id=VOCAB), ValueError, "mask_token_id"),
    (dict(special_token_ids=(0, -1)), ValueError, "special_token_ids"),
    (dict(special_token_ids=5), TypeError, "special_token_ids"),
    (dict(generator=0), TypeError, "generator"),
    (dict(vocab_size=2, mask_token_id=1, special_token_ids=(0,), input_ids=torch.zeros(2, 3, dtype=torch.long)),
     ValueError, "special"),
])
def test_mask_tokens_errors(kwargs, error, words):
    args = dict(input_ids=torch.full((2, 3), 9), attention_mask=torch.ones(2, 3, dtype=torch.long),
                vocab_size=VOCAB, mask_token_id=MASK, special_token_ids=SPECIAL[:3])
    args.update(kwargs)
    ids, att = args.pop("input_ids"), args.pop("attention_mask")
    with pytest.raises(error, match=words):
        mask_tokens(ids, att, **args)


# ---- random_masking ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n, ratio, keep", [(16, 0.75, 4), (10, 0.75, 2), (7, 0.5, 3), (16, 1.0, 1), (5, 0.0, 5),
                                            (3, 0.9, 1)])
def test_random_masking_keep_count(n, ratio, keep):
    tokens = torch.randn(4, n, 3)
    visible, mask, ids_restore = random_masking(tokens, ratio, torch.Generator().manual_seed(0))
    assert visible.shape == (4, keep, 3) and mask.shape == (4, n) and mask.dtype == torch.bool
    assert ids_restore.shape == (4, n) and ids_restore.dtype == torch.int64
    assert (mask.sum(1) == n - keep).all()


def test_random_masking_restore_order_is_exact():
    b, n, d = 32, 16, 5
    tokens = torch.randn(b, n, d)
    tokens0 = tokens.clone()
    visible, mask, ids_restore = random_masking(tokens, 0.75, torch.Generator().manual_seed(1))
    assert torch.equal(tokens, tokens0)  # input untouched
    fill = 1000 + torch.arange(b * (n - 4) * d, dtype=tokens.dtype).view(b, n - 4, d)  # distinct fill rows
    full = torch.gather(torch.cat([visible, fill], 1), 1, ids_restore[..., None].expand(-1, -1, d))
    assert torch.equal(full[~mask], tokens[~mask])  # every kept token back at its own position
    for i in range(b):  # the fill rows exactly at the removed positions, each once
        got = full[i][mask[i]]
        assert sorted(got[:, 0].tolist()) == sorted(fill[i, :, 0].tolist())
    assert torch.equal(restore(visible, fill, ids_restore), full)
    # the kept tokens are the ones the mask says are visible
    for i in range(b):
        assert sorted(visible[i, :, 0].tolist()) == sorted(tokens[i][~mask[i]][:, 0].tolist())


def test_random_masking_uniform_and_independent_rows():
    b, n = 8000, 16
    _, mask, _ = random_masking(torch.zeros(b, n, 1), 0.75, torch.Generator().manual_seed(2))
    per_position = mask.sum(0)  # each position removed with probability 12/16
    for count in per_position.tolist():
        ok, info = _within(count, b, 0.75)
        assert ok, info
    assert len({tuple(r) for r in mask[:100].tolist()}) > 90  # rows draw independent subsets


def test_random_masking_deterministic_with_generator():
    tokens = torch.randn(6, 9, 2)
    a = random_masking(tokens, 0.5, torch.Generator().manual_seed(3))
    b = random_masking(tokens, 0.5, torch.Generator().manual_seed(3))
    c = random_masking(tokens, 0.5, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("tokens, ratio, error, words", [
    (torch.zeros(2, 3), 0.5, ValueError, "tokens"),
    (torch.zeros(2, 0, 3), 0.5, ValueError, "tokens"),
    ([[0.0]], 0.5, TypeError, "tokens"),
    (torch.zeros(2, 3, 1), 1.5, ValueError, "mask_ratio"),
    (torch.zeros(2, 3, 1), float("nan"), ValueError, "mask_ratio"),
    (torch.zeros(2, 3, 1), "0.5", TypeError, "mask_ratio"),
])
def test_random_masking_errors(tokens, ratio, error, words):
    with pytest.raises(error, match=words):
        random_masking(tokens, ratio)
