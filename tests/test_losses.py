"""mmlab.align losses (the references beside mmlab.kernels) against naive loop formulas, gradcheck, multi-positive
semantics, errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmlab.align import info_nce, siglip_loss


def _feats(b=6, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    y = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    return x, y


def _naive_info_nce(x, y, s, mask=None):
    b = x.shape[0]
    mask = torch.eye(b, dtype=torch.bool) if mask is None else mask
    logit = [[s * float(x[i] @ y[j]) for j in range(b)] for i in range(b)]
    total = 0.0
    for i in range(b):  # image -> text: row i
        lse = math.log(sum(math.exp(v) for v in logit[i]))
        pos = [logit[i][j] for j in range(b) if mask[i, j]]
        total += lse - sum(pos) / len(pos)
    for j in range(b):  # text -> image: column j
        col = [logit[i][j] for i in range(b)]
        lse = math.log(sum(math.exp(v) for v in col))
        pos = [logit[i][j] for i in range(b) if mask[i, j]]
        total += lse - sum(pos) / len(pos)
    return total / (2 * b)


def _naive_siglip(x, y, s, bias):
    b = x.shape[0]
    total = 0.0
    for i in range(b):
        for j in range(b):
            z = 1.0 if i == j else -1.0
            total += math.log1p(math.exp(-z * (s * float(x[i] @ y[j]) + bias)))
    return total / b


def test_info_nce_matches_loop_and_cross_entropy():
    x, y = _feats(7, 4)
    got = info_nce(x, y, 3.0)
    assert abs(float(got) - _naive_info_nce(x, y, 3.0)) < 1e-10
    logits = 3.0 * x @ y.T
    t = torch.arange(7)
    torch.testing.assert_close(got, (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2)


def test_info_nce_tensor_scale_and_float32_inputs():
    x, y = _feats(5, 3)
    a = info_nce(x.float(), y.float(), torch.tensor(2.5))
    assert a.dtype == torch.float32
    assert abs(float(a) - _naive_info_nce(x, y, 2.5)) < 1e-5


def test_multi_positive_matches_loop_and_identity_mask():
    x, y = _feats(6, 4, seed=1)
    mask = torch.eye(6, dtype=torch.bool)
    torch.testing.assert_close(info_nce(x, y, 4.0, positive_mask=mask), info_nce(x, y, 4.0))
    mask[0, 3] = mask[3, 0] = mask[2, 5] = mask[1, 4] = True
    got = info_nce(x, y, 4.0, positive_mask=mask)
    assert abs(float(got) - _naive_info_nce(x, y, 4.0, mask)) < 1e-10
    assert abs(float(got) - float(info_nce(x, y, 4.0))) > 1e-3  # the mask changes the loss


def test_multi_positive_is_cross_entropy_with_uniform_soft_targets():
    x, y = _feats(5, 6, seed=2)
    mask = torch.eye(5, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = mask[0, 4] = True
    logits = 5.0 * x @ y.T
    rows = mask.double() / mask.sum(1, keepdim=True)
    cols = mask.T.double() / mask.T.sum(1, keepdim=True)
    want = (F.cross_entropy(logits, rows) + F.cross_entropy(logits.T, cols)) / 2
    torch.testing.assert_close(info_nce(x, y, 5.0, positive_mask=mask), want)


def test_siglip_matches_loop():
    x, y = _feats(6, 5, seed=3)
    got = siglip_loss(x, y, 10.0, -10.0)
    assert abs(float(got) - _naive_siglip(x, y, 10.0, -10.0)) < 1e-9
    got_t = siglip_loss(x, y, torch.tensor(2.0), torch.tensor(0.5))
    assert abs(float(got_t) - _naive_siglip(x, y, 2.0, 0.5)) < 1e-9


def test_gradcheck_float64():
    x, y = _feats(5, 4, seed=4)
    x.requires_grad_(True)
    y.requires_grad_(True)
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    mask = torch.eye(5, dtype=torch.bool)
    mask[0, 2] = mask[2, 0] = True
    assert torch.autograd.gradcheck(lambda a, b, c: info_nce(a, b, c), (x, y, s))
    assert torch.autograd.gradcheck(lambda a, b, c: info_nce(a, b, c, positive_mask=mask), (x, y, s))
    assert torch.autograd.gradcheck(lambda a, b, c, d: siglip_loss(a, b, c, d), (x, y, s, bias))


@pytest.mark.parametrize("call, error, match", [
    (lambda x, y: info_nce(x, y[:-1], 1.0), ValueError, "batch mismatch"),
    (lambda x, y: info_nce(x, y[:, :-1], 1.0), ValueError, "width mismatch"),
    (lambda x, y: info_nce(x[None], y, 1.0), ValueError, "2-D"),
    (lambda x, y: info_nce(x.tolist(), y, 1.0), TypeError, "must be a torch.Tensor"),
    (lambda x, y: info_nce(x.long(), y.long(), 1.0), TypeError, "floating point"),
    (lambda x, y: info_nce(x, y, 0.0), ValueError, "positive"),
    (lambda x, y: info_nce(x, y, torch.tensor(-1.0)), ValueError, "positive"),
    (lambda x, y: info_nce(x, y, torch.tensor(2)), TypeError, "floating tensor"),
    (lambda x, y: info_nce(x, y, "2.0"), TypeError, "number or a 1-element tensor"),
    (lambda x, y: info_nce(x, y, float("nan")), ValueError, "finite"),
    (lambda x, y: siglip_loss(x, y, -2.0, 0.0), ValueError, "positive"),
    (lambda x, y: siglip_loss(x, y, 2.0, float("inf")), ValueError, "logit_bias must be finite"),
    (lambda x, y: siglip_loss(x, y, 2.0, torch.zeros(2)), ValueError, "logit_bias must be a scalar"),
    (lambda x, y: info_nce(x.clone().fill_(float("nan")), y, 1.0), ValueError, "NaN or inf"),
    (lambda x, y: siglip_loss(x, y.clone().fill_(float("inf")), 1.0, 0.0), ValueError, "NaN or inf"),
    (lambda x, y: info_nce(x, y, 1.0, positive_mask=torch.eye(4, dtype=torch.bool)), ValueError, r"shape \(5, 5\)"),
    (lambda x, y: info_nce(x, y, 1.0, positive_mask=torch.eye(5)), TypeError, "bool"),
    (lambda x, y: info_nce(x, y, 1.0, positive_mask=torch.zeros(5, 5, dtype=torch.bool)), ValueError,
     "row 0 has no positive"),
])
def test_errors(call, error, match):
    """A wrong type or dtype is a TypeError, a wrong shape or value a ValueError, each naming the problem."""
    x, y = _feats(5, 3)
    with pytest.raises(error, match=match):
        call(x, y)


def test_column_without_positive_is_an_error():
    x, y = _feats(3, 3)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)  # column 1 ok, all columns ok
    info_nce(x, y, 1.0, positive_mask=mask)
    mask = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    with pytest.raises(ValueError, match="column 1 has no positive"):
        info_nce(x, y, 1.0, positive_mask=mask)


@pytest.mark.parametrize("with_mask", [False, True])
def test_chunked_info_nce_equals_reference(with_mask):
    from mmlab.kernels.info_nce import info_nce_chunked

    x, y = _feats(b=11, d=7, seed=3, dtype=torch.float32)
    mask = (torch.eye(11, dtype=torch.bool) | (torch.arange(11)[:, None] == (torch.arange(11)[None, :] + 1) % 11)
            if with_mask else None)
    results = []
    for fn in (lambda *a: info_nce(*a, positive_mask=mask),
               lambda *a: info_nce_chunked(*a, positive_mask=mask, chunk=4)):
        xi, yi = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        scale = torch.tensor(7.0, requires_grad=True)
        loss = fn(xi, yi, scale)  # chunk 4 does not divide B = 11
        loss.backward()
        results.append([loss.detach(), xi.grad, yi.grad, scale.grad])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
