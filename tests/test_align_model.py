"""LearnableTemperature and DualEncoder: init, clamp, normalisation, widths, clear errors."""
import math

import pytest
import torch
from torch import nn

from mmlab.align.model import DualEncoder, LearnableTemperature, contrastive_loss
from mmlab.encoders import AudioConfig, AudioTransformer, TextConfig, TextTransformer, VisionTransformer, ViTConfig


def tiny_model(**kw) -> DualEncoder:
    vit = VisionTransformer(ViTConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4))
    txt = TextTransformer(TextConfig(vocab_size=30, max_length=6, dim=24, depth=1, heads=2))
    return DualEncoder(vit, txt, embed_dim=12, **kw)


def test_temperature_init_and_clamp():
    t = LearnableTemperature()
    assert math.isclose(t.log_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    assert math.isclose(t().item(), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad():
        t.log_scale.fill_(10.0)  # exp(10) ~ 22026
    assert math.isclose(t().item(), 100.0, rel_tol=1e-5)
    t().backward()
    assert t.log_scale.grad.item() == 0.0  # clamped: no push further up
    t.clamp_()
    assert math.isclose(t.log_scale.item(), math.log(100.0), rel_tol=1e-6)
    with pytest.raises(ValueError, match="init_scale"):
        LearnableTemperature(init_scale=0.0)
    with pytest.raises(ValueError, match="max_scale"):
        LearnableTemperature(init_scale=20.0, max_scale=10.0)


def test_temperature_gradient_below_cap():
    t = LearnableTemperature()
    t().backward()
    assert math.isclose(t.log_scale.grad.item(), 1 / 0.07, rel_tol=1e-5)  # d exp(x)/dx = exp(x)


def test_dual_encoder_features_are_unit_norm():
    torch.manual_seed(0)
    m = tiny_model()
    ids = torch.randint(1, 30, (5, 6))
    mask = torch.ones(5, 6, dtype=torch.long)
    img = m.encode_image(torch.rand(5, 3, 8, 8))
    txt = m.encode_text({"input_ids": ids, "attention_mask": mask})
    assert img.shape == txt.shape == (5, 12)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(m.encode_text(ids), txt)  # a bare tensor is passed positionally
    out = m(torch.rand(5, 3, 8, 8), ids)
    assert set(out) == {"image", "text", "logit_scale"}
    torch.testing.assert_close(m.similarity(img, txt), out["logit_scale"] * img @ txt.T)


def test_precomputed_features_tower_and_audio():
    m = DualEncoder(nn.Identity(), nn.Identity(), 8, image_dim=10, text_dim=20,
                    audio_encoder=AudioTransformer(AudioConfig(num_samples=1600, n_mels=16, dim=16, depth=1, heads=2,
                                                               patch_time=4)))
    assert m.encode_image(torch.randn(3, 10)).shape == (3, 8)
    assert m.encode_text(torch.randn(3, 20)).shape == (3, 8)
    assert m.audio_proj.in_features == 16
    with pytest.raises(ValueError, match=r"text tower gave shape \(3, 21\)"):
        m.encode_text(torch.randn(3, 21))


def test_siglip_variant_has_bias():
    m = tiny_model(loss="siglip")
    assert math.isclose(m.logit_scale().item(), 10.0, rel_tol=1e-5) and m.logit_bias.item() == -10.0


def test_clear_errors():
    m = tiny_model()
    with pytest.raises(RuntimeError, match="no audio tower"):
        m.encode_audio(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="width"):
        DualEncoder(nn.Identity(), nn.Identity(), 8)
    with pytest.raises(ValueError, match="loss must be"):
        tiny_model(loss="triplet")
    bad = DualEncoder(nn.Identity(), nn.Identity(), 4, image_dim=4, text_dim=4)
    with pytest.raises(ValueError, match="NaN or inf"):
        bad.encode_image(torch.tensor([[float("nan"), 0, 0, 0]]))
    a, b = torch.randn(4, 8), torch.randn(3, 8)
    with pytest.raises(ValueError, match="batch mismatch"):
        contrastive_loss("info_nce", a, b, torch.tensor(10.0))
    with pytest.raises(ValueError, match="width mismatch"):
        contrastive_loss("info_nce", a, torch.randn(4, 6), torch.tensor(10.0))
    with pytest.raises(ValueError, match="logit_scale must be positive"):
        contrastive_loss("info_nce", a, a, torch.tensor(0.0))


def test_loss_trains_the_towers():
    pytest.importorskip("mmlab.align.losses")
    torch.manual_seed(0)
    m = tiny_model()
    images, ids = torch.rand(6, 3, 8, 8), torch.randint(1, 30, (6, 6))
    out = m(images, ids)
    loss = m.loss(out["image"], out["text"])
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert m.image_proj.weight.grad.abs().sum() > 0 and m.text_encoder.token_embed.weight.grad.abs().sum() > 0
    assert m.logit_scale.log_scale.grad is not None
    # the InfoNCE value equals the textbook formula
    logits = m.logit_scale() * out["image"] @ out["text"].T
    target = torch.arange(6)
    naive = (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(loss, naive)


def test_clamp_logit_scale_callback_clips_the_stored_parameter():
    from mmlab.align.model import clamp_logit_scale

    m = tiny_model()
    with torch.no_grad():
        m.logit_scale.log_scale.fill_(math.log(500.0))
    assert math.isclose(m.logit_scale().item(), 100.0, rel_tol=1e-5)  # forward clamps already
    clamp_logit_scale(1, m, {})
    assert math.isclose(m.logit_scale.log_scale.item(), math.log(100.0), rel_tol=1e-6)  # and now the parameter too
