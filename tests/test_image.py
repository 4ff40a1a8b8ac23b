"""mmlab.preprocess.image: patchify contract, inverse, errors, ViT equivalence, positions, normalisation."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmlab.preprocess.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize,
    patchify,
    resize_center_crop,
    sincos_pos_embed_2d,
    unpatchify,
)


@pytest.mark.parametrize("c, d, p, h, w", [(3, 8, 4, 12, 20), (1, 5, 3, 9, 3), (2, 7, 1, 5, 3), (3, 16, 16, 32, 48)])
def test_patchify_times_conv_weight_equals_conv(c, d, p, h, w):
    gen = torch.Generator().manual_seed(c * 100 + p)
    x = torch.randn(2, c, h, w, generator=gen, dtype=torch.float64)
    conv = nn.Conv2d(c, d, p, stride=p).double()
    patches = patchify(x, p)
    assert patches.shape == (2, (h // p) * (w // p), c * p * p)
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, N, D)
    torch.testing.assert_close(patches @ conv.weight.reshape(d, -1).T + conv.bias, expected)


def test_patch_order_is_row_major_and_flattened_c_p_p():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    patches = patchify(x, 2)  # 2x3 grid
    # patch 1 is row 0, column 1: pixels x[:, :, 0:2, 2:4] flattened in (C, p, p) order
    assert torch.equal(patches[0, 1], x[0, :, 0:2, 2:4].reshape(-1))
    assert torch.equal(patches[0, 3], x[0, :, 2:4, 0:2].reshape(-1))


@pytest.mark.parametrize("shape, p", [((3, 2, 12, 20), 4), ((1, 1, 7, 7), 7), ((2, 5, 6, 9), 3)])
def test_unpatchify_inverts_patchify(shape, p):
    x = torch.randn(shape)
    size = (shape[2], shape[3]) if shape[2] != shape[3] else shape[2]
    assert torch.equal(unpatchify(patchify(x, p), p, size), x)


def test_patchify_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"30x32 is not divisible by patch size 16"):
        patchify(torch.zeros(1, 3, 30, 32), 16)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got \(3, 32, 32\)"):
        patchify(torch.zeros(3, 32, 32), 16)
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.zeros(1, 3, 32, 32), 0)
    with pytest.raises(ValueError, match="got 4 patches but a 32x32 image with patch size 8 has 16"):
        unpatchify(torch.zeros(1, 4, 192), 8, 32)
    with pytest.raises(ValueError, match="not divisible"):
        unpatchify(torch.zeros(1, 4, 192), 8, 30)
    with pytest.raises(ValueError, match=r"\(B, N, C\*p\*p\)"):
        unpatchify(torch.zeros(4, 192), 8, 16)
    # one rule: a wrong Python type or dtype is a TypeError, a wrong shape or value a ValueError
    with pytest.raises(TypeError, match="patch_size"):
        patchify(torch.zeros(1, 3, 32, 32), 2.0)
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        patchify([[0.0]], 4)
    with pytest.raises(TypeError, match="image_size"):
        unpatchify(torch.zeros(1, 4, 192), 8, "32")


def test_equals_transformers_vit_embeddings():
    transformers = pytest.importorskip("transformers")
    from transformers.models.vit.modeling_vit import ViTEmbeddings

    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=24,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                                 hidden_dropout_prob=0.0)
    torch.manual_seed(0)
    vit = ViTEmbeddings(cfg).eval()
    with torch.no_grad():  # the CLS token and positions start at zero in some versions: make them random
        vit.cls_token.normal_()
        vit.position_embeddings.normal_()
    x = torch.randn(2, 3, 32, 32)
    proj = vit.patch_embeddings.projection  # the stride-p Conv2d
    w, b = proj.weight.reshape(cfg.hidden_size, -1), proj.bias
    tokens = patchify(x, cfg.patch_size) @ w.T + b  # (B, 16, D)
    cls = vit.cls_token.expand(2, -1, -1)  # (B, 1, D)
    ours = torch.cat([cls, tokens], dim=1) + vit.position_embeddings  # (B, 17, D)
    with torch.no_grad():
        torch.testing.assert_close(vit.patch_embeddings(x), tokens)
        torch.testing.assert_close(vit(x), ours)


def test_sincos_layout_and_values():
    gh, gw, d = 3, 5, 16
    emb = sincos_pos_embed_2d(gh, gw, d)
    assert emb.shape == (gh * gw, d) and emb.dtype == torch.float32
    grid = emb.reshape(gh, gw, d)
    # first half depends only on the column, second half only on the row
    assert torch.equal(grid[0, :, : d // 2], grid[2, :, : d // 2])
    assert torch.equal(grid[:, 0, d // 2:], grid[:, 4, d // 2:])
    assert not torch.equal(grid[0, 0, : d // 2], grid[0, 1, : d // 2])
    # position (row 1, column 2): first frequency is 1, so sin(2), cos(2) and sin(1), cos(1)
    q = d // 4
    torch.testing.assert_close(grid[1, 2, 0], torch.tensor(math.sin(2.0)))
    torch.testing.assert_close(grid[1, 2, q], torch.tensor(math.cos(2.0)))
    torch.testing.assert_close(grid[1, 2, 2 * q], torch.tensor(math.sin(1.0)))
    torch.testing.assert_close(grid[1, 2, 3 * q], torch.tensor(math.cos(1.0)))
    # lowest frequency is 1/10000^((q-1)/q)
    omega = 1.0 / 10000 ** ((q - 1) / q)
    torch.testing.assert_close(grid[1, 2, q - 1], torch.tensor(math.sin(2 * omega)))


def test_sincos_similarity_falls_with_distance():
    emb = sincos_pos_embed_2d(14, 14, 64)
    sim = emb @ emb[0]  # similarity to the top-left patch
    grid = sim.reshape(14, 14)
    assert grid[0, 0] > grid[0, 1] > grid[0, 5]
    assert grid[0, 0] > grid[1, 0] > grid[5, 0]


@pytest.mark.parametrize("args,error", [((0, 4, 8), ValueError), ((4, 4, 6), ValueError),
                                        ((4, 4, 2.0), TypeError), ((True, 4, 8), TypeError)])
def test_sincos_bad_arguments(args, error):
    with pytest.raises(error):
        sincos_pos_embed_2d(*args)


def test_normalize():
    x = torch.rand(2, 3, 4, 4)
    y = normalize(x)
    expected = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(y, expected)
    with pytest.raises(ValueError, match="channels"):
        normalize(torch.rand(1, 4, 4))
    with pytest.raises(TypeError, match="dtype"):
        normalize(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_resize_center_crop():
    x = torch.rand(2, 3, 40, 60)
    y = resize_center_crop(x, 20)
    assert y.shape == (2, 3, 20, 20)
    same = resize_center_crop(torch.rand(3, 30, 50), 30)
    assert same.shape == (3, 30, 30)
    src = torch.arange(30 * 50, dtype=torch.float32).reshape(1, 1, 30, 50).expand(1, 3, 30, 50)
    assert torch.equal(resize_center_crop(src, 30), src[..., :, 10:40])
    with pytest.raises(ValueError, match="size"):
        resize_center_crop(x, 0)
