"""mmlab.finetune probe and locked-tower helpers."""
import pytest
import torch
from torch import nn

from mmlab.evaluate import linear_probe_accuracy
from mmlab.finetune import (
    Classifier,
    accuracy,
    apply_lora,
    count_parameters,
    extract_features,
    linear_probe,
    lock_tower,
    probe_head,
    set_trainable,
    training_memory,
)
from mmlab.train import TrainConfig, fit


def blobs(n, seed):
    """Three Gaussian classes in 8-D."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[3.0] + [0] * 7, [0, 3.0] + [0] * 6, [0, 0, 3.0] + [0] * 5])
    return centres[y] + torch.randn(n, 8, generator=g), y


class TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image_encoder = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
        self.text_encoder = nn.Sequential(nn.Linear(4, 16), nn.Tanh())
        self.image_proj = nn.Linear(16, 6, bias=False)

    def encode_image(self, x):
        return self.image_proj(self.image_encoder(x))


def test_extract_features_batches_and_restores_nothing_else():
    enc = nn.Linear(8, 5)
    x = torch.randn(23, 8)
    feats = extract_features(enc, x, batch_size=4)
    assert feats.shape == (23, 5) and not feats.requires_grad
    torch.testing.assert_close(feats, enc(x).detach())
    d = extract_features(lambda b: b["a"] + b["b"], {"a": x, "b": x}, batch_size=5)
    torch.testing.assert_close(d, 2 * x)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(enc, x, batch_size=0)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        extract_features(lambda b: b.sum(), x)


def test_linear_probe_uses_frozen_features_and_learns():
    model = TwoTower()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xtr, ytr = blobs(300, 0)
    xte, yte = blobs(150, 1)
    acc = linear_probe(model.encode_image, xtr, ytr, xte, yte)
    assert acc > 0.85
    assert acc == linear_probe_accuracy(model.encode_image(xtr).detach(), ytr, model.encode_image(xte).detach(), yte)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_classifier_full_fine_tuning_and_accuracy():
    model = TwoTower()
    clf = Classifier(model, in_dim=6, num_classes=3, encode="encode_image")
    xtr, ytr = blobs(300, 0)
    xte, yte = blobs(150, 1)
    chance = accuracy(clf, xte, yte)
    fit(clf, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), [(xtr, ytr)],
        TrainConfig(steps=60, lr=1e-2, progress=False))
    acc = accuracy(clf, xte, yte)
    assert acc > 0.85 and acc > chance
    assert clf.training  # accuracy() restores the mode
    with pytest.raises(AttributeError, match="encode_audio"):
        Classifier(model, 6, 3, encode="encode_audio")
    with pytest.raises(ValueError, match="head expects"):
        Classifier(model, 7, 3, encode="encode_image")(xte)


def test_count_parameters_lock_tower_and_set_trainable():
    model = TwoTower()
    total = 8 * 16 + 16 + 4 * 16 + 16 + 16 * 6
    assert count_parameters(model) == {"trainable": total, "total": total}
    frozen = lock_tower(model, "text_encoder")
    assert frozen == 4 * 16 + 16
    assert count_parameters(model)["trainable"] == total - frozen
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    with pytest.raises(KeyError, match="no submodule 'audio_encoder'.*image_encoder"):
        lock_tower(model, "audio_encoder")
    names = set_trainable(model, ["image_proj", "*.0.bias"])
    assert names == ["image_proj.weight", "image_encoder.0.bias", "text_encoder.0.bias"]
    assert count_parameters(model)["trainable"] == 16 * 6 + 16 + 16
    with pytest.raises(KeyError, match="top-level names: image_encoder, image_proj, text_encoder"):
        set_trainable(model, "head")


def test_shared_parameters_counted_once():
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, lin)
    assert count_parameters(model) == {"trainable": 12, "total": 12}


def test_lora_plus_new_head_trains_only_adapters_and_head():
    model = TwoTower()
    apply_lora(model, ["image_encoder.0", "image_proj"], rank=2)
    clf = Classifier(model, in_dim=6, num_classes=3, encode="encode_image")
    trainable = {n for n, p in clf.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.image_encoder.0.lora_A", "backbone.image_encoder.0.lora_B",
                         "backbone.image_proj.lora_A", "backbone.image_proj.lora_B", "head.weight", "head.bias"}


def test_probe_head_equals_the_sklearn_probe():
    xtr, ytr = blobs(300, 0)
    xte, yte = blobs(150, 1)
    xtr, xte = xtr * 5 + 2, xte * 5 + 2  # unstandardised features: the head folds the scaler in
    for k in (3, 2):
        keep_tr, keep_te = ytr < k, yte < k
        head = probe_head(xtr[keep_tr], ytr[keep_tr])
        assert head.out_features == k
        acc = float((head(xte[keep_te]).argmax(dim=1) == yte[keep_te]).float().mean())
        assert acc == pytest.approx(linear_probe_accuracy(xtr[keep_tr], ytr[keep_tr], xte[keep_te], yte[keep_te]))
    with pytest.raises(ValueError, match="0..K-1"):
        probe_head(xtr, ytr + 1)
    with pytest.raises(ValueError, match="NaN"):
        probe_head(xtr * float("nan"), ytr)
    with pytest.raises(ValueError, match="head maps 8 -> 3"):
        Classifier(nn.Identity(), 8, 4, head=probe_head(xtr, ytr))


def test_training_memory_counts_what_trains():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    x = torch.randn(8, 10)
    loss = lambda m, b: m(b).sum()  # noqa: E731
    full = training_memory(model, loss, x)
    n_params = 10 * 20 + 20 + 20 * 3 + 3
    assert full["weights"] == full["gradients"] == 4 * n_params and full["optimizer"] == 8 * n_params
    # saved for backward: the input x (8x10) for layer 0's weight grad, the ReLU output (8x20) for
    # the ReLU and layer 2; parameters are not counted again
    assert full["activations"] == 4 * (8 * 10 + 8 * 20)
    model[0].requires_grad_(False)  # nothing before layer 2 needs a gradient now
    top = training_memory(model, loss, x)
    assert top["gradients"] == 4 * (20 * 3 + 3) and top["activations"] == 4 * 8 * 20
    model.requires_grad_(False)
    assert training_memory(model, loss, x)["activations"] == 0
    assert top["total"] == sum(v for k, v in top.items() if k != "total")
