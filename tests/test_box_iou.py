"""mmlab.evaluate.box_iou and generalized_box_iou against hand-computed cases and the definitions."""
import pytest
import torch

from mmlab.evaluate import box_iou, generalized_box_iou


def boxes(*rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


# (a, b, IoU, GIoU), worked out by hand: IoU = inter / union, GIoU = IoU - (hull - union) / hull.
CASES = [
    ((0, 0, 2, 2), (1, 1, 3, 3), 1 / 7, 1 / 7 - 2 / 9),  # inter 1, union 4 + 4 - 1 = 7, hull 3x3 = 9
    ((0, 0, 2, 2), (0, 0, 2, 2), 1.0, 1.0),  # identical
    ((0, 0, 1, 1), (2, 0, 3, 1), 0.0, -1 / 3),  # apart: union 2, hull 3x1 = 3
    ((0, 0, 4, 4), (1, 1, 2, 2), 1 / 16, 1 / 16),  # contained: the hull is the outer box
    ((0, 0, 1, 1), (1, 0, 2, 1), 0.0, 0.0),  # touching edges: no overlap, hull = union
    ((0, 0, 1, 1), (5, 5, 6, 6), 0.0, 2 / 36 - 1),  # far apart diagonally: hull 6x6, union 2
    ((0, 0, 3, 1), (1, -1, 2, 2), 1 / 5, 1 / 5 - 4 / 9),  # a cross: inter 1, union 3 + 3 - 1 = 5, hull 3x3
    ((1, 1, 1, 1), (1, 1, 1, 1), 0.0, 0.0),  # zero-area boxes: defined as 0 here (torchvision: NaN)
]


@pytest.mark.parametrize("a, b, iou, giou", CASES)
def test_hand_computed_pairs(a, b, iou, giou):
    assert box_iou(boxes(a), boxes(b)).item() == pytest.approx(iou, abs=1e-12)
    assert generalized_box_iou(boxes(a), boxes(b)).item() == pytest.approx(giou, abs=1e-12)
    assert box_iou(boxes(b), boxes(a)).item() == pytest.approx(iou, abs=1e-12)  # symmetric
    assert generalized_box_iou(boxes(b), boxes(a)).item() == pytest.approx(giou, abs=1e-12)


def test_batched_matrix_equals_each_pair():
    a = torch.stack([boxes(c[0])[0] for c in CASES])  # (8, 4)
    b = torch.stack([boxes(c[1])[0] for c in CASES[:5]])  # (5, 4)
    iou, giou = box_iou(a, b), generalized_box_iou(a, b)
    assert iou.shape == giou.shape == (8, 5) and iou.dtype == torch.float64
    for i in range(8):
        for j in range(5):
            assert iou[i, j] == box_iou(a[i:i + 1], b[j:j + 1])[0, 0]
            assert giou[i, j] == generalized_box_iou(a[i:i + 1], b[j:j + 1])[0, 0]
    assert torch.allclose(torch.diagonal(iou[:5]), torch.tensor([c[2] for c in CASES[:5]], dtype=torch.float64))
    assert box_iou(a.float(), b.float()).dtype == torch.float32
    assert box_iou(a[:0], b).shape == (0, 5) and generalized_box_iou(a, b[:0]).shape == (8, 0)


def test_random_boxes_obey_the_bounds():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g, dtype=torch.float64) * 10
    a = torch.cat([xy, xy + torch.rand(200, 2, generator=g, dtype=torch.float64) * 5 + 0.01], 1)
    b = a.roll(7, 0) + torch.rand(200, 4, generator=g, dtype=torch.float64) * 0.1
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2])
    iou, giou = box_iou(a, b), generalized_box_iou(a, b)
    assert ((0 <= iou) & (iou <= 1)).all() and ((-1 < giou) & (giou <= iou + 1e-12)).all()
    assert (torch.diagonal(box_iou(a, a)) > 1 - 1e-6).all()


def test_gradients():
    a = boxes((0.1, 0.2, 1.3, 1.1), (2.0, 2.0, 3.0, 2.5)).requires_grad_()
    b = boxes((0.5, 0.0, 1.0, 2.0), (0.0, 0.0, 4.0, 4.0), (5.0, 5.0, 6.0, 7.0)).requires_grad_()
    assert torch.autograd.gradcheck(box_iou, (a, b))
    assert torch.autograd.gradcheck(generalized_box_iou, (a, b))
    # for boxes that do not overlap, IoU has no gradient and GIoU does (why DETR's loss uses it)
    p = boxes((0.0, 0.0, 1.0, 1.0)).requires_grad_()
    far = boxes((3.0, 0.0, 4.0, 1.0))
    (g_iou,) = torch.autograd.grad(box_iou(p, far).sum(), p)
    (g_giou,) = torch.autograd.grad(generalized_box_iou(p, far).sum(), p)
    assert (g_iou == 0).all() and g_giou[0, 2] > 0  # GIoU rises as the box stretches towards the other


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (boxes((0, 0, 1, 1), (2, 0, 1, 1)), ValueError, r"a row 1 is \[2.0, 0.0, 1.0, 1.0\]: need x1 >= x0"),
        (boxes((0, 3, 1, 1)), ValueError, "need x1 >= x0 and y1 >= y0"),
        (boxes((0, 0, float("nan"), 1)), ValueError, "a contains NaN or inf: row 0"),
        (boxes((0, 0, float("inf"), 1)), ValueError, "NaN or inf"),
        (torch.zeros(2, 3), ValueError, r"shape \(N, 4\)"),
        (torch.zeros(4), ValueError, r"shape \(N, 4\)"),
        (torch.zeros(2, 4, dtype=torch.int64), TypeError, "floating point"),
        ([[0, 0, 1, 1]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_boxes(bad, error, message):
    good = boxes((0, 0, 1, 1))
    for fn in (box_iou, generalized_box_iou):
        with pytest.raises(error, match=message):
            fn(bad, good)
    with pytest.raises(error, match=message.replace("a ", "b ", 1) if message.startswith("a ") else message):
        box_iou(good, bad)
