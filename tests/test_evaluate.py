"""mmlab.evaluate on hand-made cases with known answers."""
import pytest
import torch

from mmlab.evaluate import (
    confusion_matrix,
    linear_probe_accuracy,
    recall_at_k,
    zero_shot_accuracy,
    zero_shot_classifier,
)


def test_recall_perfect_and_reversed():
    x = torch.eye(4)
    r = recall_at_k(x, x, ks=(1, 4))
    assert r == {"i2t@1": 1.0, "t2i@1": 1.0, "i2t@4": 1.0, "t2i@4": 1.0}
    # texts in reverse order: text j describes image 3 - j, but is closest to image j
    r = recall_at_k(x, x, ks=(1, 2), text_to_image=[3, 2, 1, 0])
    assert r["i2t@1"] == 0.0 and r["t2i@1"] == 0.0


def test_recall_with_several_captions_per_image():
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0]])
    # image 0 owns text 0 (hit@1); image 1 owns text 1, which is last-but-2 -> rank 2 (miss@2, hit@3);
    # image 2 owns texts 2 and 3, both orthogonal to it; text 1 is ahead -> rank 1 (hit@2)
    r = recall_at_k(img, txt, ks=(1, 2, 3), text_to_image=[0, 1, 2, 2])
    assert r["i2t@1"] == pytest.approx(1 / 3) and r["i2t@2"] == pytest.approx(2 / 3) and r["i2t@3"] == 1.0
    # text->image: text 0 -> image 0 hit@1; texts 1,2,3 each have one other image ahead
    assert r["t2i@1"] == pytest.approx(1 / 4) and r["t2i@2"] == 1.0


def test_recall_errors():
    with pytest.raises(ValueError, match="text_to_image"):
        recall_at_k(torch.eye(3), torch.eye(3)[:2])
    with pytest.raises(ValueError, match="width mismatch"):
        recall_at_k(torch.eye(3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(torch.full((2, 2), float("nan")), torch.eye(2))
    with pytest.raises(ValueError, match="positive int"):
        recall_at_k(torch.eye(2), torch.eye(2), ks=(0,))


def fake_text_encoder(prompts):
    """Word-presence features over a fixed vocabulary: 'red'/'blue' on axes 0/1, anything else on axis 2."""
    out = torch.zeros(len(prompts), 3)
    for i, p in enumerate(prompts):
        out[i, 0] = float("red" in p)
        out[i, 1] = float("blue" in p)
        out[i, 2] = 1.0
    return out


def test_zero_shot_and_prompt_ensembling():
    img = torch.tensor([[1.0, 0, 0.1], [0, 1.0, 0.1], [0.9, 0.2, 0.1]])
    acc, pred = zero_shot_accuracy(img, [0, 1, 1], fake_text_encoder, ["red", "blue"],
                                   templates=("a {} thing", "{}"), return_predictions=True)
    assert pred.tolist() == [0, 1, 0] and acc == pytest.approx(2 / 3)
    cls = zero_shot_classifier(fake_text_encoder, ["red", "blue"], templates=("a {} thing", "{}"))
    want = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 1], [0, 1.0, 1]]), dim=-1)
    torch.testing.assert_close(cls, want)  # both templates give the same feature here, so the mean is that feature
    with pytest.raises(ValueError, match="placeholder"):
        zero_shot_classifier(fake_text_encoder, ["red"], templates=("no slot",))


def test_ensembling_averages_normalised_prompt_embeddings():
    def enc(prompts):  # template A points along x, template B along y, scaled differently per template
        return torch.tensor([[10.0, 0.0] if p.startswith("A") else [0.0, 1.0] for p in prompts])

    cls = zero_shot_classifier(enc, ["k"], templates=("A {}", "B {}"))
    torch.testing.assert_close(cls, torch.tensor([[1.0, 1.0]]) / 2**0.5)  # not pulled towards the longer vector


def test_linear_probe_separable_and_random():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] > 0).long()
    assert linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:]) > 0.95
    noise_labels = torch.randint(0, 2, (200,), generator=g)
    assert linear_probe_accuracy(x[:150], noise_labels[:150], x[150:], noise_labels[150:]) < 0.75
    with pytest.raises(ValueError, match="single class"):
        linear_probe_accuracy(x[:10], torch.zeros(10, dtype=torch.long), x[10:20], y[10:20])


def test_confusion_matrix():
    cm = confusion_matrix([0, 2, 1, 1, 2], [0, 1, 1, 2, 2], num_classes=4)
    want = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm, want) and cm.sum() == 5
    assert confusion_matrix([1, 0], [1, 0]).shape == (2, 2)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix([5], [0], num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix([0, 1], [0])
