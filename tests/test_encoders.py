"""Encoders: shapes, exact parameter counts, masks, attention maps, the HF ViT round trip, bad input."""
import pytest
import torch

from mmlab.encoders import (
    AudioConfig,
    AudioTransformer,
    CrossAttentionBlock,
    TextConfig,
    TextTransformer,
    TubeletConfig,
    TubeletTransformer,
    VideoConfig,
    VideoTransformer,
    ViTConfig,
    VisionTransformer,
    vit_from_hf,
    vit_to_hf,
)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def stack_params(d: int, depth: int, m: int, qkv_bias: bool = True) -> int:
    """Pre-norm blocks (2 LayerNorms, q/k/v/out projections, 2-layer MLP) + a final LayerNorm."""
    attn = 4 * d * d + (4 if qkv_bias else 1) * d
    mlp = d * m + m + m * d + d
    return depth * (2 * 2 * d + attn + mlp) + 2 * d


def test_vit_shapes_and_param_count():
    c = ViTConfig(dim=32, depth=2, heads=4, mlp_ratio=2.0, image_size=16, patch_size=4)
    m = VisionTransformer(c)
    x = torch.rand(3, 3, 16, 16)
    assert m(x).shape == (3, 1 + 16, 32)
    assert m.pooled(x).shape == (3, 32)
    n = 16
    assert n_params(m) == 3 * 4 * 4 * 32 + 32 + 32 + (1 + n) * 32 + stack_params(32, 2, 64)


def test_vit_without_qkv_bias_and_mean_pool():
    c = ViTConfig(dim=16, depth=1, heads=2, mlp_ratio=1.0, image_size=8, patch_size=4, qkv_bias=False, pool="mean")
    m = VisionTransformer(c)
    assert n_params(m) == 3 * 16 * 16 + 16 + 16 + 5 * 16 + stack_params(16, 1, 16, qkv_bias=False)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(m.pooled(x), m(x)[:, 1:].mean(1))


def test_text_shapes_param_count_and_padding_invariance():
    c = TextConfig(vocab_size=50, max_length=12, dim=16, depth=2, heads=2, mlp_ratio=2.0, pool="mean")
    m = TextTransformer(c).eval()
    assert n_params(m) == 50 * 16 + 12 * 16 + stack_params(16, 2, 32)
    ids = torch.randint(1, 50, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, 3:] = 0
    assert m(ids, mask).shape == (2, 5, 16)
    longer_ids = torch.cat([ids, torch.randint(1, 50, (2, 4))], 1)  # garbage in the padded slots
    longer_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(m.pooled(ids, mask), m.pooled(longer_ids, longer_mask))
    # and the mask matters: without it the padded sequence pools differently
    assert not torch.allclose(m.pooled(ids, mask)[1], m.pooled(ids)[1], atol=1e-4)


def test_text_cls_pool_ignores_padding_too():
    m = TextTransformer(TextConfig(vocab_size=30, max_length=8, dim=8, depth=1, heads=2)).eval()
    ids = torch.randint(1, 30, (1, 4))
    a = m.pooled(ids, torch.ones(1, 4, dtype=torch.long))
    b = m.pooled(torch.cat([ids, torch.full((1, 3), 7)], 1), torch.tensor([[1, 1, 1, 1, 0, 0, 0]]))
    torch.testing.assert_close(a, b)


def test_audio_shapes_and_param_count():
    c = AudioConfig(num_samples=1600, hop_length=160, n_mels=16, patch_freq=8, patch_time=4, dim=16, depth=1,
                    heads=2, mlp_ratio=2.0)
    assert c.num_frames == 11 and c.grid == (2, 2)
    m = AudioTransformer(c)
    assert n_params(m) == 8 * 4 * 16 + 16 + 16 + (1 + 4) * 16 + stack_params(16, 1, 32)
    mel = torch.randn(3, 16, 11)
    assert m.forward_mel(mel).shape == (3, 5, 16)
    assert m.pooled_mel(mel).shape == (3, 16)
    torch.testing.assert_close(m.pooled(mel), m.pooled_mel(mel))  # pooled takes a spectrogram too
    with pytest.raises(ValueError, match=r"spectrogram must have shape \(B, 16, 11\)"):
        m.forward_mel(torch.randn(3, 16, 12))


def test_audio_from_waveform():
    pytest.importorskip("mmlab.preprocess.audio")
    c = AudioConfig(num_samples=1600, n_mels=16, patch_freq=8, patch_time=4, dim=16, depth=1, heads=2)
    m = AudioTransformer(c)
    wave = torch.sin(torch.arange(1600) * 0.3)[None].repeat(2, 1) * 0.5
    assert m.spectrogram(wave).shape == (2, 16, 11)
    assert m.pooled(wave).shape == (2, 16)
    with pytest.raises(ValueError, match="waveform must have shape"):
        m(torch.zeros(2, 1000))


def test_video_encoders_shapes_and_param_counts():
    frame = ViTConfig(dim=16, depth=1, heads=2, mlp_ratio=2.0, image_size=8, patch_size=4)
    c = VideoConfig(dim=16, depth=1, heads=2, mlp_ratio=2.0, num_frames=4, frame=frame)
    m = VideoTransformer(c)
    video = torch.rand(2, 4, 3, 8, 8)
    assert m(video).shape == (2, 5, 16) and m.pooled(video).shape == (2, 16)
    vit = 3 * 16 * 16 + 16 + 16 + 5 * 16 + stack_params(16, 1, 32)
    assert n_params(m) == vit + 16 + 5 * 16 + stack_params(16, 1, 32)
    t = TubeletTransformer(TubeletConfig(dim=16, depth=1, heads=2, mlp_ratio=2.0, image_size=8, patch_size=4,
                                         num_frames=4, tubelet_frames=2))
    assert t(video).shape == (2, 1 + 2 * 4, 16) and t.pooled(video).shape == (2, 16)
    assert n_params(t) == 3 * 2 * 4 * 4 * 16 + 16 + 16 + 9 * 16 + stack_params(16, 1, 32)


def test_video_encoder_sees_frame_order():
    frame = ViTConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4)
    m = VideoTransformer(VideoConfig(dim=16, depth=1, heads=2, num_frames=4, frame=frame)).eval()
    video = torch.rand(1, 4, 3, 8, 8)
    assert not torch.allclose(m.pooled(video), m.pooled(video.flip(1)), atol=1e-5)


def test_attention_maps_are_distributions_and_match_fast_path():
    m = VisionTransformer(ViTConfig(dim=16, depth=2, heads=2, image_size=8, patch_size=4)).eval()
    x = torch.rand(2, 3, 8, 8)
    y, maps = m(x, return_attention=True)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 5, 5)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, 5))
    torch.testing.assert_close(y, m(x))


def test_masked_keys_get_zero_attention():
    m = TextTransformer(TextConfig(vocab_size=20, max_length=6, dim=8, depth=1, heads=2)).eval()
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    _, maps = m(torch.randint(1, 20, (1, 6)), mask, return_attention=True)
    assert torch.all(maps[0][..., 3:] == 0)


def test_cross_attention_block_respects_context_mask():
    blk = CrossAttentionBlock(dim=8, heads=2, mlp_dim=16, context_dim=12).eval()
    q, ctx = torch.randn(2, 3, 8), torch.randn(2, 5, 12)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    ctx2 = ctx.clone()
    ctx2[0, 3:] = 100.0
    out = blk(q, ctx, mask)
    assert out.shape == (2, 3, 8)
    torch.testing.assert_close(out, blk(q, ctx2, mask))


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_vit_round_trip_with_transformers(qkv_bias):
    from transformers import ViTConfig as HFConfig, ViTModel

    torch.manual_seed(0)
    hf_config = HFConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
                         image_size=16, patch_size=8, qkv_bias=qkv_bias)
    hf = ViTModel(hf_config, add_pooling_layer=False).eval()
    with torch.no_grad():  # HF initialises cls/pos to small values; make every weight non-trivial
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = vit_from_hf(hf).eval()
    assert ours.config.layer_norm_eps == 1e-12 and ours.config.mlp_dim == 40 and ours.config.qkv_bias == qkv_bias
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
        torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-5)
        back = vit_to_hf(ours).eval()
        torch.testing.assert_close(back(pixel_values=x).last_hidden_state, ref, atol=1e-5, rtol=1e-5)
    for k, v in hf.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)


def test_vit_to_hf_from_our_init():
    m = VisionTransformer(ViTConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4, layer_norm_eps=1e-12)).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(vit_to_hf(m)(pixel_values=x).last_hidden_state, m(x), atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="not divisible"):
        ViTConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="divisible by"):
        ViTConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="must be positive"):
        TextConfig(depth=0)
    m = VisionTransformer(ViTConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4))
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        m(torch.rand(2, 3, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        m(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    t = TextTransformer(TextConfig(vocab_size=10, max_length=4, dim=8, depth=1, heads=2))
    with pytest.raises(ValueError, match="max_length"):
        t(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        t(torch.full((1, 3), 10))
    with pytest.raises(ValueError, match="no real tokens"):
        t(torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="video must have shape"):
        VideoTransformer(VideoConfig(dim=16, depth=1, heads=2, num_frames=4,
                                     frame=ViTConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4)))(
            torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="frame encoder width"):
        VideoConfig(dim=16, heads=2, frame=ViTConfig(dim=32))
