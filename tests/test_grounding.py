"""mmlab.grounding: TransVG shapes and gradients, DETR's box loss on hand-computed cases, Acc@0.5, scene targets
(unique expressions only), bad input, and a short run through fit that lowers the loss."""
import pytest
import torch

from mmlab.data import ShapesWorld
from mmlab.encoders import TextConfig, TextTransformer, VisionTransformer, ViTConfig
from mmlab.grounding import (
    GroundingConfig,
    TransVG,
    accuracy_at_iou,
    cxcywh_to_xyxy,
    grounding_loss,
    scene_targets,
    xyxy_to_cxcywh,
)
from mmlab.train import TrainConfig, fit


def small_model(vocab=20, image_size=16):
    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(dim=32, depth=1, heads=2, mlp_ratio=2.0, image_size=image_size, patch_size=8))
    text = TextTransformer(TextConfig(vocab_size=vocab, max_length=8, dim=24, depth=1, heads=2, mlp_ratio=2.0))
    return TransVG(vit, text, GroundingConfig(dim=32, depth=1, heads=2))


def test_shapes_range_and_gradients_reach_every_part():
    model = small_model()
    images, ids = torch.rand(3, 3, 16, 16), torch.randint(1, 20, (3, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    boxes = model(images, ids, mask)
    assert boxes.shape == (3, 4) and ((boxes > 0) & (boxes < 1)).all()
    grounding_loss(boxes, torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 3)).backward()
    for name, p in model.named_parameters():
        if "token_embed" not in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # padding is ignored: changing a padded token id changes nothing
    other = ids.clone()
    other[0, 4] = 7 if ids[0, 4] != 7 else 8
    torch.testing.assert_close(model(images, other, mask), model(images, ids, mask))
    assert not torch.allclose(model(images, other), model(images, ids))  # without the mask it does


def test_box_conversions_invert():
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 3.0], [0.0, 0.0, 0.5, 0.25]])
    cxcywh = xyxy_to_cxcywh(xyxy)
    assert torch.equal(cxcywh, torch.tensor([[3.0, 2.5, 4.0, 1.0], [0.25, 0.125, 0.5, 0.25]]))
    assert torch.equal(cxcywh_to_xyxy(cxcywh), xyxy)


def test_loss_on_hand_computed_cases():
    t = torch.tensor([[0.5, 0.5, 0.4, 0.4]])
    assert grounding_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)
    # same centre, half the size: L1 = 0.2 + 0.2 = 0.4; IoU = GIoU = 0.04 / 0.16 = 0.25 (inside the target)
    p = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    assert grounding_loss(p, t).item() == pytest.approx(5 * 0.4 + 2 * 0.75, abs=1e-6)
    # apart: p = [0, 0, 0.2, 0.2], t = [0.4, 0, 0.6, 0.2]: L1 = 0.4 (cx only); GIoU = 0 - (0.12 - 0.08) / 0.12
    p, t2 = torch.tensor([[0.1, 0.1, 0.2, 0.2]]), torch.tensor([[0.5, 0.1, 0.2, 0.2]])
    assert grounding_loss(p, t2).item() == pytest.approx(5 * 0.4 + 2 * (1 + 1 / 3), abs=1e-6)
    # mean over boxes; the weights are DETR's by default and can be changed
    both = grounding_loss(torch.cat([p, p]), torch.cat([t2, p]))
    assert both.item() == pytest.approx((5 * 0.4 + 2 * (1 + 1 / 3)) / 2, abs=1e-6)
    assert grounding_loss(p, t2, l1_weight=1.0, giou_weight=0.0).item() == pytest.approx(0.4, abs=1e-6)


def test_accuracy_at_iou():
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    pred = torch.tensor([[0.0, 0.0, 10.0, 5.0],  # IoU 0.5: counts
                         [0.0, 0.0, 10.0, 4.9],  # IoU 0.49
                         [20.0, 20.0, 30.0, 30.0]])
    assert accuracy_at_iou(pred, target).tolist() == [True, False, False]
    assert accuracy_at_iou(pred, target, threshold=0.4).tolist() == [True, True, False]


def test_scene_targets_resolve_expressions_and_refuse_ambiguous_ones():
    batch = ShapesWorld("val", size=30, max_objects=3).batch(range(30))
    targets = scene_targets(batch)
    want = xyxy_to_cxcywh(batch["target_box"] / 64)
    torch.testing.assert_close(targets, want)
    two = next(i for i in range(30) if batch["num_objects"][i] >= 2)
    exprs = list(batch["expression"])
    exprs[two] = "the shape"
    with pytest.raises(ValueError, match=f"scene {two}: expression 'the shape' is not unique in the scene: it fits"):
        scene_targets(batch, exprs)
    exprs[two] = "a circle please"
    with pytest.raises(ValueError, match="not of the form"):
        scene_targets(batch, exprs)
    with pytest.raises(ValueError, match="29 expressions for 30 scenes"):
        scene_targets(batch, exprs[:29])
    with pytest.raises(ValueError, match="max_objects"):
        scene_targets(ShapesWorld("val", size=2).batch([0, 1]))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: grounding_loss(torch.zeros(2, 4), torch.zeros(3, 4)), ValueError, "same shape"),
        (lambda: grounding_loss(torch.zeros(2, 3), torch.zeros(2, 3)), ValueError, r"shape \(B, 4\)"),
        (lambda: grounding_loss(torch.zeros(0, 4), torch.zeros(0, 4)), ValueError, "empty"),
        (lambda: grounding_loss(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4)), TypeError, "floating"),
        (lambda: grounding_loss(torch.full((1, 4), 0.5), torch.tensor([[0.5, 0.5, -0.1, 0.2]])), ValueError,
         "widths and heights"),
        (lambda: grounding_loss(torch.full((1, 4), 0.5), torch.tensor([[0.5, float("nan"), 0.1, 0.2]])),
         ValueError, "NaN"),
        (lambda: grounding_loss(torch.full((1, 4), 0.5), torch.full((1, 4), 0.5), l1_weight=-1), ValueError,
         "l1_weight"),
        (lambda: accuracy_at_iou(torch.zeros(1, 4), torch.zeros(1, 4), threshold=1.5), ValueError, "threshold"),
        (lambda: accuracy_at_iou(torch.tensor([[2.0, 0, 1, 1]]), torch.zeros(1, 4)), ValueError, "x1 >= x0"),
        (lambda: GroundingConfig(dim=30, heads=4), ValueError, "divisible"),
        (lambda: GroundingConfig(depth=0), ValueError, "depth"),
        (lambda: TransVG(torch.nn.Linear(2, 2), small_model().text_encoder), TypeError, "image_encoder"),
        (lambda: TransVG(small_model().image_encoder, small_model().text_encoder, {"dim": 8}), TypeError, "config"),
        (lambda: small_model()(torch.rand(2, 3, 16, 16), torch.ones(3, 4, dtype=torch.long)), ValueError,
         "batch mismatch"),
        (lambda: scene_targets([1, 2]), TypeError, "batch"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_training_through_fit_lowers_the_loss():
    batch = ShapesWorld("train", size=64, max_objects=2, image_size=16).batch(range(64))
    targets = scene_targets(batch)
    ids = torch.randint(1, 20, (64, 6), generator=torch.Generator().manual_seed(0))  # text is not the point here
    model = small_model()

    def loss_fn(m, i):
        return grounding_loss(m(batch["image"], ids), targets)

    history = fit(model, loss_fn, lambda i: i, TrainConfig(steps=60, lr=3e-3, seed=0, progress=False))
    assert history["loss"][-1] < 0.6 * history["loss"][0]
