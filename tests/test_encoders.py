"""Encoders: shapes, exact parameter counts, masks, attention maps, the HF ViT round trip, bad input."""
import pytest
import torch

from mmlab.encoders import (
    AudioConfig,
    AudioTransformer,
    CrossAttentionBlock,
    EncoderOutput,
    TextConfig,
    TextTransformer,
    Transformer,
    TransformerConfig,
    TubeletConfig,
    TubeletTransformer,
    VideoConfig,
    VideoTransformer,
    VisionTransformer,
    ViTConfig,
    masked_mean,
    vit_from_hf,
    vit_to_hf,
)

FRAME = ViTConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4)
AUDIO = AudioConfig(num_samples=1600, n_mels=16, patch_freq=8, patch_time=4, dim=16, depth=1, heads=2)


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
    mel = torch.randn(3, 16, 11)  # a precomputed spectrogram goes in directly
    assert m(mel).shape == (3, 5, 16)
    torch.testing.assert_close(m.pooled(mel), m(mel)[:, 0])
    with pytest.raises(ValueError, match=r"spectrogram must have shape \(B, 16, 11\)"):
        m(torch.randn(3, 16, 12))


def test_audio_from_waveform():
    pytest.importorskip("mmlab.preprocess.audio")
    m = AudioTransformer(AUDIO).eval()
    wave = torch.sin(torch.arange(1600) * 0.3)[None].repeat(2, 1) * 0.5
    assert m.spectrogram(wave).shape == (2, 16, 11)
    torch.testing.assert_close(m.pooled(wave), m.pooled(m.spectrogram(wave)))
    with pytest.raises(ValueError, match=r"waveform must have shape \(B, 1600\) at 16000 Hz"):
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
    m = VideoTransformer(VideoConfig(dim=16, depth=1, heads=2, num_frames=4, frame=FRAME)).eval()
    video = torch.rand(1, 4, 3, 8, 8)
    assert not torch.allclose(m.pooled(video), m.pooled(video.flip(1)), atol=1e-5)


ENCODERS = {  # kind -> (encoder, its inputs)
    "vision": lambda: (VisionTransformer(ViTConfig(dim=16, depth=2, heads=2, image_size=8, patch_size=4, pool="mean")),
                       (torch.rand(2, 3, 8, 8),)),
    "text": lambda: (TextTransformer(TextConfig(vocab_size=20, max_length=6, dim=8, depth=2, heads=2, pool="mean")),
                     (torch.randint(1, 20, (2, 6)), torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]]))),
    "audio": lambda: (AudioTransformer(AUDIO), (torch.randn(2, 1600),)),
    "video": lambda: (VideoTransformer(VideoConfig(dim=16, depth=2, heads=2, num_frames=4, frame=FRAME)),
                      (torch.rand(2, 4, 3, 8, 8),)),
    "tubelet": lambda: (TubeletTransformer(TubeletConfig(dim=16, depth=2, heads=2, image_size=8, patch_size=4,
                                                         num_frames=4, tubelet_frames=2, pool="mean")),
                        (torch.rand(2, 4, 3, 8, 8),)),
}


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_every_encoder_has_the_same_api(kind):
    """forward -> tokens; forward_with_attention -> EncoderOutput; pooled(inputs) == pool(forward(inputs))."""
    model, inputs = ENCODERS[kind]()
    model.eval()
    with torch.no_grad():
        tokens = model(*inputs)
        out = model.forward_with_attention(*inputs)
        pooled = model.pooled(*inputs)
    assert isinstance(out, EncoderOutput) and len(out.attentions) == model.config.depth
    torch.testing.assert_close(out.tokens, tokens)  # the explicit softmax equals the fused kernel
    b, n, d = tokens.shape
    assert out.attentions[0].shape == (b, model.config.heads, n, n)
    torch.testing.assert_close(out.attentions[-1].sum(-1), torch.ones(b, model.config.heads, n))
    assert pooled.shape == (b, d)
    torch.testing.assert_close(pooled, model.pool(tokens, *inputs[1:]))


def test_masked_keys_get_zero_attention():
    m = TextTransformer(TextConfig(vocab_size=20, max_length=6, dim=8, depth=1, heads=2)).eval()
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    maps = m.forward_with_attention(torch.randint(1, 20, (1, 6)), mask).attentions
    assert torch.all(maps[0][..., 3:] == 0)


def test_transformer_from_config():
    c = TransformerConfig(dim=16, depth=3, heads=4, mlp_ratio=1.5, qkv_bias=False, layer_norm_eps=1e-5, dropout=0.1)
    t = Transformer.from_config(c)
    assert len(t.blocks) == 3 and t.norm.eps == 1e-5 and t.blocks[0].attn.q.bias is None
    assert t.blocks[0].mlp.fc1.out_features == 24 and t.blocks[0].attn.heads == 4 and t.blocks[0].attn.dropout == 0.1


def test_seeded_init_draws_in_module_order():
    """Seeded encoders keep their numbers: conv patch embedding, then positions (CLS starts at 0), then blocks."""
    c = ViTConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4)
    torch.manual_seed(0)
    m = VisionTransformer(c)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 16, 4, stride=4)
    pos = torch.randn(1, 5, 16) * 0.02
    blocks = Transformer.from_config(c)
    torch.testing.assert_close(m.patch_embed.weight, conv.weight, rtol=0, atol=0)
    torch.testing.assert_close(m.pos_embed, pos, rtol=0, atol=0)
    torch.testing.assert_close(m.transformer.blocks[0].attn.q.weight, blocks.blocks[0].attn.q.weight, rtol=0, atol=0)
    assert torch.all(m.cls_token == 0)
    video = VideoTransformer(VideoConfig(dim=16, depth=1, heads=2, num_frames=4, frame=FRAME))
    assert {"cls_token", "time_embed", "frame_encoder.cls_token", "frame_encoder.pos_embed"} <= set(video.state_dict())


def test_nan_and_inf_in_padded_positions_do_not_leak():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    x = torch.randn(2, 5, 8)
    bad = x.clone()
    bad[0, 3], bad[0, 4] = float("nan"), float("inf")
    t = Transformer(8, 2, 2, 16).eval()
    blk = CrossAttentionBlock(dim=8, heads=2, mlp_dim=16).eval()
    q = torch.randn(2, 3, 8)
    with torch.no_grad():
        torch.testing.assert_close(t(bad, mask)[mask], t(x, mask)[mask])
        torch.testing.assert_close(t.forward_with_attention(bad, mask).tokens[mask], t(x, mask)[mask])
        torch.testing.assert_close(blk(q, bad, mask), blk(q, x, mask))
    torch.testing.assert_close(masked_mean(bad, mask), masked_mean(x, mask))
    torch.testing.assert_close(masked_mean(x, mask)[0], x[0, :3].mean(0))


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
    from transformers import ViTConfig as HFConfig
    from transformers import ViTModel

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
    """A wrong Python type or dtype is a TypeError; a wrong shape or value is a ValueError."""
    with pytest.raises(ValueError, match="not divisible"):
        ViTConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="divisible by"):
        ViTConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="TextConfig.depth must be a positive integer"):
        TextConfig(depth=0)
    with pytest.raises(TypeError, match="ViTConfig.patch_size must be a positive integer"):
        ViTConfig(patch_size=4.0)
    with pytest.raises(TypeError, match="mlp_ratio must be a number"):
        TransformerConfig(mlp_ratio="2")
    with pytest.raises(ValueError, match="layer_norm_eps must be positive"):
        TransformerConfig(layer_norm_eps=0.0)
    with pytest.raises(ValueError, match="pool must be one of"):
        ViTConfig(pool="max")
    with pytest.raises(ValueError, match="frame encoder width"):
        VideoConfig(dim=16, heads=2, frame=ViTConfig(dim=32))
    m = VisionTransformer(FRAME)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 8, 8\)"):
        m(torch.rand(2, 3, 16, 16))
    with pytest.raises(TypeError, match="images must be a floating tensor"):
        m(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        m([[0.0]])
    t = TextTransformer(TextConfig(vocab_size=10, max_length=4, dim=8, depth=1, heads=2))
    with pytest.raises(ValueError, match="max_length"):
        t(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 10\)"):
        t(torch.full((1, 3), 10))
    with pytest.raises(TypeError, match="input_ids must be int64 or int32"):
        t(torch.zeros(1, 3))
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        t([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"input_ids must be a \(B, L\) tensor"):
        t(torch.zeros(3, dtype=torch.long))
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask row 1 has no real tokens"):
        t(ids, torch.tensor([[1, 1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        t(ids, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="attention_mask must be bool or integer"):
        t(ids, torch.ones(2, 3))
    video = VideoTransformer(VideoConfig(dim=16, depth=1, heads=2, num_frames=4, frame=FRAME))
    with pytest.raises(ValueError, match=r"video must have shape \(B, 4, 3, 8, 8\)"):
        video(torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(TypeError, match="video must be a torch.Tensor"):
        video(None)
    a = AudioTransformer(AUDIO)
    with pytest.raises(TypeError, match="waveform must be a floating tensor"):
        a(torch.zeros(2, 1600, dtype=torch.int16))
    with pytest.raises(TypeError, match="waveform must be a torch.Tensor"):
        a([0.0] * 1600)


def test_value_checks_only_read_host_tensors(monkeypatch):
    """Reading a CUDA tensor's values would synchronise the GPU: pretend the inputs are not on the host."""
    import mmlab.encoders.text
    import mmlab.validation

    for module in (mmlab.validation, mmlab.encoders.text):
        monkeypatch.setattr(module, "on_host", lambda t: False)
    t = TextTransformer(TextConfig(vocab_size=10, max_length=4, dim=8, depth=1, heads=2))
    t(torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    t(torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 0], [0, 0, 0]]))  # the empty row is not read
    with pytest.raises(IndexError):  # the embedding lookup fails, not the id check
        t(torch.full((1, 3), 10))


def _unseen_rows_after_training(make_optimizer, steps=5):
    """Train a tiny text tower on ids 1..9 only; return (rows 10.. before, after)."""
    from mmlab.runtime import seed_everything

    seed_everything(0)
    m = TextTransformer(TextConfig(vocab_size=30, max_length=6, dim=8, depth=1, heads=2, pool="mean"))
    before = m.token_embed.weight[10:].detach().clone()
    opt = make_optimizer(m)
    ids = torch.randint(1, 10, (4, 6))
    for _ in range(steps):
        loss = m.pooled(ids, torch.ones_like(ids)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, m.token_embed.weight[10:].detach()


def test_weight_decay_moves_the_embedding_rows_of_unseen_words():
    """Plain AdamW decays every row each step; Adam, and AdamW over parameter_groups, leave unseen rows alone."""
    from mmlab.optim import parameter_groups

    before, after = _unseen_rows_after_training(lambda m: torch.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1))
    torch.testing.assert_close(after, before * (1 - 0.01 * 0.1) ** 5)  # shrunk by (1 - lr * wd) per step, exactly
    assert not torch.equal(after, before)
    for make in (lambda m: torch.optim.Adam(m.parameters(), lr=0.01),
                 lambda m: torch.optim.AdamW(parameter_groups(m, weight_decay=0.1), lr=0.01)):
        before, after = _unseen_rows_after_training(make)
        assert torch.equal(after, before)
