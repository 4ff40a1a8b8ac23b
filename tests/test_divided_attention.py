"""Divided space-time attention (TimeSformer): shapes, parameter count, which tokens each sub-attention mixes,
the dense maps, and bad input."""
import pytest
import torch

from mmlab.encoders import (
    DividedSpaceTimeBlock,
    EncoderOutput,
    TimeSformer,
    TimeSformerConfig,
    attention_rollout,
    divided_attention_dense,
)

F_, P_, D_ = 3, 4, 16  # frames, patches per frame, width


def block(seed=0):
    torch.manual_seed(seed)
    return DividedSpaceTimeBlock(D_, heads=2, mlp_dim=32, num_frames=F_).eval()


def changed_tokens(step, x, index):
    """Which output tokens of `step` change when input token `index` is perturbed: (1 + F*P,) bool."""
    y = x.clone()
    y[:, index] += torch.randn(D_)
    with torch.no_grad():
        return ((step(y)[0] - step(x)[0]).abs().amax(-1) > 1e-6)[0]


def token(t, p):
    return 1 + t * P_ + p


def test_temporal_attention_mixes_only_the_same_position_across_frames():
    m, x = block(), torch.randn(1, 1 + F_ * P_, D_)
    changed = changed_tokens(m.temporal, x, token(1, 2))
    expected = torch.zeros(1 + F_ * P_, dtype=torch.bool)
    expected[[token(t, 2) for t in range(F_)]] = True  # patch 2 of every frame, nothing else, not CLS
    assert torch.equal(changed, expected)
    cls_only = torch.zeros(1 + F_ * P_, dtype=torch.bool)
    cls_only[0] = True
    assert torch.equal(changed_tokens(m.temporal, x, 0), cls_only)  # CLS passes through, mixes with nothing


def test_spatial_attention_mixes_only_within_a_frame_and_the_cls():
    m, x = block(), torch.randn(1, 1 + F_ * P_, D_)
    changed = changed_tokens(m.spatial, x, token(1, 2))
    expected = torch.zeros(1 + F_ * P_, dtype=torch.bool)
    expected[0] = True  # the CLS token attends to every frame
    expected[[token(1, p) for p in range(P_)]] = True  # the patches of frame 1, no other frame
    assert torch.equal(changed, expected)
    assert changed_tokens(m.spatial, x, 0).all()  # every patch attends to CLS


def test_block_order_is_time_then_space_then_mlp():
    m, x = block(), torch.randn(2, 1 + F_ * P_, D_)
    with torch.no_grad():
        h = m.spatial(m.temporal(x)[0])[0]
        torch.testing.assert_close(m(x), h + m.mlp(m.norm2(h)))
        out, (w_t, w_s) = m.forward_with_attention(x)
    torch.testing.assert_close(out, m(x))
    assert w_t.shape == (2 * P_, 2, F_, F_) and w_s.shape == (2 * F_, 2, 1 + P_, 1 + P_)
    # one block: temporal then spatial reaches every patch from any patch (through the CLS too)
    assert changed_tokens(lambda z: (m(z), None), x[:1], token(0, 0)).all()


def heads_apply(attn, dense, x):
    """The sub-layer output predicted from a dense map: out(dense @ v), v = attn.v(x)."""
    b, n, d = x.shape
    v = attn.v(x).view(b, n, attn.heads, d // attn.heads).transpose(1, 2)  # (B, h, N, d)
    return attn.out((dense @ v).transpose(1, 2).reshape(b, n, d))


def test_dense_maps_reproduce_each_sub_attention_and_have_the_right_zeros():
    m, x = block(), torch.randn(2, 1 + F_ * P_, D_)
    with torch.no_grad():
        xt, w_t = m.temporal(x, with_attention=True)
        xs, w_s = m.spatial(xt, with_attention=True)
        dense_t, dense_s = divided_attention_dense(w_t, w_s, F_)
        n = 1 + F_ * P_
        assert dense_t.shape == dense_s.shape == (2, 2, n, n)
        torch.testing.assert_close(dense_t.sum(-1), torch.ones(2, 2, n))
        torch.testing.assert_close(dense_s.sum(-1), torch.ones(2, 2, n))
        # patch rows of the temporal output, every row of the spatial output, reproduced exactly
        torch.testing.assert_close(heads_apply(m.attn_t, dense_t, m.norm_t(x))[:, 1:], (xt - x)[:, 1:])
        torch.testing.assert_close(heads_apply(m.attn, dense_s, m.norm1(xt)), xs - xt)
    frame = torch.tensor([-1] + [t for t in range(F_) for _ in range(P_)])
    pos = torch.tensor([-1] + [p for _ in range(F_) for p in range(P_)])
    same_pos = (pos[:, None] == pos[None, :]) & (pos[:, None] >= 0)
    same_frame_or_cls = (frame[:, None] == frame[None, :]) | (frame[:, None] < 0) | (frame[None, :] < 0)
    assert torch.equal(dense_t[0, 0, 1:] > 0, same_pos[1:])
    assert torch.equal(dense_t[0, 0, 0], torch.eye(n)[0])
    assert torch.equal(dense_s[0, 0] > 0, same_frame_or_cls)
    assert (dense_t[0, 0] > 0).sum() == 1 + P_ * F_**2  # CLS to itself + P sequences of F x F
    assert (dense_s[0, 0] > 0).sum() == (1 + P_ * F_) + F_ * P_ * (P_ + 1)  # the CLS row + F frames of P x (1 + P)


CFG = TimeSformerConfig(dim=16, depth=2, heads=2, mlp_ratio=2.0, image_size=8, patch_size=4, num_frames=3)


def test_timesformer_shapes_api_and_param_count():
    m = TimeSformer(CFG).eval()
    video = torch.rand(2, 3, 3, 8, 8)
    with torch.no_grad():
        tokens, out, pooled = m(video), m.forward_with_attention(video), m.pooled(video)
    assert CFG.num_tokens == 1 + 3 * 4 and tokens.shape == (2, 13, 16) and pooled.shape == (2, 16)
    torch.testing.assert_close(pooled, tokens[:, 0])
    assert isinstance(out, EncoderOutput) and len(out.attentions) == 2 * CFG.depth
    torch.testing.assert_close(out.tokens, tokens)
    assert all(a.shape == (2, 2, 13, 13) for a in out.attentions)
    assert attention_rollout(out.attentions).shape == (2, 13, 13)
    d, mlp = 16, 32
    per_block = 3 * 2 * d + 2 * (4 * d * d + 4 * d) + 2 * d * mlp + mlp + d  # 3 LayerNorms, 2 attentions, MLP
    expected = 3 * 4 * 4 * d + d + d + 5 * d + 3 * d + 2 * per_block + 2 * d
    assert sum(p.numel() for p in m.parameters()) == expected


def test_timesformer_sees_frame_order_and_mean_pool():
    m = TimeSformer(CFG).eval()
    video = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(m.pooled(video), m.pooled(video.flip(1)), atol=1e-5)
    mean = TimeSformer(TimeSformerConfig(dim=16, depth=1, heads=2, image_size=8, patch_size=4, num_frames=3,
                                         pool="mean")).eval()
    with torch.no_grad():
        torch.testing.assert_close(mean.pooled(video), mean(video)[:, 1:].mean(1))


def test_bad_inputs_raise_clear_errors():
    m = TimeSformer(CFG)
    with pytest.raises(ValueError, match="video"):
        m(torch.rand(2, 4, 3, 8, 8))
    with pytest.raises(ValueError, match=r"x must be \(B, 1 \+ F\*P, D\) with F = 3"):
        block()(torch.randn(1, 12, D_))
    with pytest.raises(ValueError, match="num_frames"):
        TimeSformerConfig(num_frames=0)
    with pytest.raises(ValueError, match="num_frames"):
        DividedSpaceTimeBlock(16, 2, 32, num_frames=0)
    w_t, w_s = torch.rand(8, 2, 3, 3).softmax(-1), torch.rand(6, 2, 5, 5).softmax(-1)
    with pytest.raises(ValueError, match="do not fit num_frames=4"):
        divided_attention_dense(w_t, w_s, 4)
