"""mmlab.pretrain models: shapes and gradients of the fusion, co-attention, multiway and MAE models; padding and
expert routing; MAE's encoder sees only the visible patches; config errors."""
import pytest
import torch

from mmlab.encoders import VisionTransformer, ViTConfig
from mmlab.pretrain import (
    CoAttentionConfig,
    CoAttentionEncoder,
    FusionEncoder,
    FusionEncoderConfig,
    MAEConfig,
    MaskedAutoencoder,
    MultiwayConfig,
    MultiwayTransformer,
)

D = 16


def _text(b=3, length=5):
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 3:] = 0
    return torch.randn(b, length, D), mask


def _all_grads(module):
    return all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters() if p.requires_grad)


def test_fusion_encoder_shapes_gradients_and_padding():
    torch.manual_seed(0)
    enc = FusionEncoder(FusionEncoderConfig(dim=D, depth=2, heads=4, image_dim=8))
    text, mask = _text()
    image = torch.randn(3, 7, 8, requires_grad=True)
    out = enc(text, mask, image)
    assert out.shape == (3, 5, D)
    out[:, 0].sum().backward()  # [CLS] reads both the text and the image
    assert _all_grads(enc) and image.grad.abs().sum() > 0
    text2 = text.clone()
    text2[0, 3:] = float("nan")  # padding holds garbage: the real positions do not change
    with torch.no_grad():
        assert torch.allclose(enc(text2, mask, image)[0, :3], out[0, :3].detach(), atol=1e-6)


def test_fusion_encoder_output_depends_on_the_image():
    torch.manual_seed(1)
    enc = FusionEncoder(FusionEncoderConfig(dim=D, depth=1, heads=2))
    text, mask = _text()
    with torch.no_grad():
        a, b = enc(text, mask, torch.randn(3, 4, D)), enc(text, mask, torch.randn(3, 4, D))
    assert not torch.allclose(a, b)


def test_coattention_shapes_gradients_both_directions():
    torch.manual_seed(2)
    enc = CoAttentionEncoder(CoAttentionConfig(dim=D, depth=2, heads=4))
    text, mask = _text()
    text.requires_grad_(True)
    image = torch.randn(3, 7, D, requires_grad=True)
    t, v = enc(text, mask, image)
    assert t.shape == (3, 5, D) and v.shape == (3, 7, D)
    v.sum().backward(retain_graph=True)  # the image stream reads the text ...
    assert text.grad[:, :3].abs().sum() > 0 and (text.grad[0, 3:] == 0).all()  # ... but never its padding
    (t.sum() + v.sum()).backward()
    assert _all_grads(enc)


def _multiway(vl_layers=1):
    return MultiwayTransformer(MultiwayConfig(dim=D, depth=2, heads=4, vocab_size=30, max_length=8,
                                              image_size=16, patch_size=8, vl_layers=vl_layers))


def test_multiway_shapes_and_expert_routing():
    torch.manual_seed(3)
    model = _multiway(vl_layers=1)
    images, ids = torch.rand(2, 3, 16, 16), torch.randint(1, 30, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    assert model(images).shape == (2, 5, D)
    assert model(input_ids=ids, attention_mask=mask).shape == (2, 6, D)
    joint = model(images, ids, mask)
    assert joint.shape == (2, 11, D) and model.text_cls_index(True) == 5 and model.text_cls_index(False) == 0
    top, bottom = model.blocks[1], model.blocks[0]
    assert "vl" in top.ffn and "vl" not in bottom.ffn
    model.zero_grad()
    model(input_ids=ids, attention_mask=mask).sum().backward()  # text alone: language experts only
    assert bottom.ffn["image"].fc1.weight.grad is None and top.ffn["vl"].fc1.weight.grad is None
    assert bottom.ffn["text"].fc1.weight.grad.abs().sum() > 0
    model.zero_grad()
    model(images).sum().backward()  # image alone: vision experts only
    assert bottom.ffn["text"].fc1.weight.grad is None and bottom.ffn["image"].fc1.weight.grad.abs().sum() > 0
    model.zero_grad()
    joint = model(images, ids, mask)
    joint[:, model.text_cls_index(True)].sum().backward()  # fused: shared attention mixes both, VL on top
    assert top.ffn["vl"].fc1.weight.grad.abs().sum() > 0 and top.ffn["text"].fc1.weight.grad is None
    assert model.patch_embed.weight.grad.abs().sum() > 0 and model.token_embed.weight.grad.abs().sum() > 0


def test_multiway_without_vl_experts_and_padding_invariance():
    torch.manual_seed(4)
    model = _multiway(vl_layers=0).eval()
    images, ids = torch.rand(2, 3, 16, 16), torch.randint(1, 30, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[:, 4:] = 0
    ids2 = ids.clone()
    ids2[:, 4:] = 7  # other ids in the padding: real positions unchanged
    with torch.no_grad():
        a, b = model(images, ids, mask), model(images, ids2, mask)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)


def _mae(**kw):
    torch.manual_seed(5)
    vit = VisionTransformer(ViTConfig(dim=D, depth=1, heads=4, mlp_ratio=2.0, image_size=16, patch_size=4))
    return MaskedAutoencoder(vit, MAEConfig(decoder_dim=8, decoder_heads=2, **kw))


def test_mae_shapes_gradients_and_mask_ratio():
    mae = _mae()
    images = torch.rand(3, 3, 16, 16)
    out = mae(images, torch.Generator().manual_seed(0))
    assert out["pred"].shape == (3, 16, 48) and out["mask"].shape == (3, 16)
    assert (out["mask"].sum(1) == 12).all()  # 75% of 16 patches removed
    out["loss"].backward()
    assert _all_grads(mae.encoder) and _all_grads(mae.decoder) and mae.mask_token.grad.abs().sum() > 0
    pics = mae.reconstruct(images, torch.Generator().manual_seed(0))
    assert all(pics[k].shape == images.shape for k in ("masked", "prediction", "pasted"))


def test_mae_encoder_sees_only_visible_patches():
    mae = _mae()
    images = torch.rand(2, 3, 16, 16)
    latent, mask, _ = mae.encode_visible(images, torch.Generator().manual_seed(1))
    assert latent.shape == (2, 1 + 4, D)
    from mmlab.preprocess.image import patchify, unpatchify
    patches = patchify(images, 4)
    patches[mask] = torch.rand_like(patches[mask])  # change every removed patch
    latent2, mask2, _ = mae.encode_visible(unpatchify(patches, 4, 16), torch.Generator().manual_seed(1))
    assert torch.equal(mask, mask2) and torch.allclose(latent, latent2, atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        mae(torch.rand(2, 3, 8, 8))


@pytest.mark.parametrize("make, error, words", [
    (lambda: MAEConfig(mask_ratio=1.0), ValueError, "mask_ratio"),
    (lambda: MAEConfig(decoder_dim=6, decoder_heads=2), ValueError, "multiple of 4"),
    (lambda: MAEConfig(norm_pix=1), TypeError, "norm_pix"),
    (lambda: MultiwayConfig(vl_layers=3, depth=2), ValueError, "vl_layers"),
    (lambda: MultiwayConfig(image_size=30, patch_size=8), ValueError, "divisible"),
    (lambda: FusionEncoderConfig(image_dim=0), ValueError, "image_dim"),
    (lambda: FusionEncoder(CoAttentionConfig()), TypeError, "FusionEncoderConfig"),
    (lambda: MaskedAutoencoder(torch.nn.Linear(2, 2)), TypeError, "VisionTransformer"),
])
def test_config_errors(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_input_errors():
    enc = FusionEncoder(FusionEncoderConfig(dim=D, depth=1, heads=2))
    text, mask = _text()
    with pytest.raises(ValueError, match="image"):
        enc(text, mask, torch.randn(3, 4, D + 1))
    with pytest.raises(ValueError, match="batch mismatch"):
        enc(text, mask, torch.randn(2, 4, D))
    with pytest.raises(TypeError, match="text"):
        enc(text.long(), mask, torch.randn(3, 4, D))
    model = _multiway()
    with pytest.raises(ValueError, match="images, input_ids or both"):
        model()
    with pytest.raises(ValueError, match="token ids"):
        model(input_ids=torch.full((2, 3), 30))
