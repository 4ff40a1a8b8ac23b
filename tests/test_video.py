"""mmlab.preprocess.video: sampling strategies, short videos, tubelets == Conv3d."""
import pytest
import torch

from mmlab.preprocess import video as V


def _video(t=10, b=None):
    shape = (t, 3, 4, 4) if b is None else (b, t, 3, 4, 4)
    frame_id = torch.arange(t, dtype=torch.float32).reshape(t, 1, 1, 1)
    v = frame_id.expand(t, 3, 4, 4).clone()
    return v if b is None else v.expand(shape).clone()


def test_uniform_takes_segment_middles():
    frames, idx = V.sample_frames(_video(10), 4)
    assert idx.tolist() == [1, 3, 6, 8]
    assert frames.shape == (4, 3, 4, 4)
    assert frames[:, 0, 0, 0].tolist() == [1.0, 3.0, 6.0, 8.0]
    assert V.sample_frames(_video(8), 8)[1].tolist() == list(range(8))


def test_batched_video_shares_indices():
    frames, idx = V.sample_frames(_video(12, b=2), 3)
    assert frames.shape == (2, 3, 3, 4, 4)
    assert torch.equal(frames[1, :, 0, 0, 0], idx.float())


def test_fps_strategy_fixed_time_step():
    _, idx = V.sample_frames(_video(30), 4, strategy="fps", fps=30, target_fps=10)
    assert idx.tolist() == [0, 3, 6, 9]
    _, idx = V.sample_frames(_video(30), 5, strategy="fps", fps=25, target_fps=10)
    assert idx.tolist() == [0, 2, 5, 8, 10]  # round(i * 2.5), ties to even
    with pytest.raises(ValueError, match="need 31"):
        V.sample_frames(_video(30), 11, strategy="fps", fps=30, target_fps=10)
    _, idx = V.sample_frames(_video(30), 11, strategy="fps", fps=30, target_fps=10, pad="repeat_last")
    assert idx[-1].item() == 29
    with pytest.raises(ValueError, match="target_fps"):
        V.sample_frames(_video(30), 4, strategy="fps", fps=10, target_fps=30)
    with pytest.raises(ValueError, match="fps"):
        V.sample_frames(_video(30), 4, strategy="fps")


def test_random_is_one_frame_per_segment_and_reproducible():
    seen = set()
    for seed in range(20):
        idx = V.sample_frames(_video(20), 4, strategy="random", generator=torch.Generator().manual_seed(seed))[1]
        assert ((idx >= torch.tensor([0, 5, 10, 15])) & (idx < torch.tensor([5, 10, 15, 20]))).all()
        seen.add(tuple(idx.tolist()))
    assert len(seen) > 5  # it really is random
    a = V.sample_frames(_video(20), 4, strategy="random", generator=torch.Generator().manual_seed(3))[1]
    b = V.sample_frames(_video(20), 4, strategy="random", generator=torch.Generator().manual_seed(3))[1]
    assert torch.equal(a, b)


def test_short_video_error_or_repeat_last():
    with pytest.raises(ValueError, match="3 frames but num_frames=5"):
        V.sample_frames(_video(3), 5)
    frames, idx = V.sample_frames(_video(3), 5, pad="repeat_last")
    assert idx.tolist() == [0, 1, 2, 2, 2]
    assert frames[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0, 2.0, 2.0]
    assert V.sample_frames(_video(3), 5, strategy="random", pad="repeat_last")[1].tolist() == [0, 1, 2, 2, 2]


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_frames=0), "num_frames"),
    (dict(num_frames=2, strategy="middle"), "strategy"),
    (dict(num_frames=2, pad="zeros"), "pad"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        V.sample_frames(_video(5), **kwargs)


def test_bad_video_shapes():
    with pytest.raises(ValueError, match="T, C, H, W"):
        V.sample_frames(torch.zeros(3, 4, 4), 2)
    with pytest.raises(ValueError, match="no frames"):
        V.sample_frames(torch.zeros(0, 3, 4, 4), 2)
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        V.tubeletify(torch.zeros(4, 3, 8, 8), 2, 4)
    with pytest.raises(ValueError, match="not divisible"):
        V.tubeletify(torch.zeros(1, 3, 3, 8, 8), 2, 4)
    with pytest.raises(ValueError, match="not divisible"):
        V.tubeletify(torch.zeros(1, 4, 3, 8, 10), 2, 4)


@pytest.mark.parametrize("t,p,shape", [(2, 16, (2, 4, 3, 32, 48)), (2, 8, (1, 8, 3, 32, 32)), (3, 4, (2, 6, 1, 8, 12))])
def test_tubelet_linear_equals_conv3d(t, p, shape):
    torch.manual_seed(0)
    video = torch.randn(shape, dtype=torch.float64)
    b, frames, c, h, w = shape
    conv = torch.nn.Conv3d(c, 24, kernel_size=(t, p, p), stride=(t, p, p)).double()
    tubes = V.tubeletify(video, t, p)
    assert tubes.shape == (b, (frames // t) * (h // p) * (w // p), c * t * p * p)
    linear = tubes @ conv.weight.reshape(24, -1).T + conv.bias
    expected = conv(video.transpose(1, 2)).flatten(2).transpose(1, 2)  # (B, C, T, H, W) layout -> (B, N, D)
    torch.testing.assert_close(linear, expected)


def test_frame_patchify_equals_image_patchify():
    from mmlab.preprocess.image import patchify
    video = torch.randn(2, 3, 3, 16, 16)
    patches = V.frame_patchify(video, 8)
    assert patches.shape == (2, 3, 4, 3 * 8 * 8)
    torch.testing.assert_close(patches[1, 2], patchify(video[1, 2:3], 8)[0])
    # a tubelet of length 1 is a per-frame patch
    torch.testing.assert_close(V.tubeletify(video, 1, 8), patches.reshape(2, 12, -1))
