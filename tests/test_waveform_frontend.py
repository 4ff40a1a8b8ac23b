"""mmlab.encoders.waveform: a wav2vec 2.0-style strided-convolution front end."""
import pytest
import torch

from mmlab.encoders import WaveformFrontEnd
from mmlab.encoders.waveform import SMALL_LAYERS, WAV2VEC2_LAYERS, receptive_field, total_stride


def test_wav2vec2_and_small_stacks_have_stride_320_and_field_400():
    for layers in (WAV2VEC2_LAYERS, SMALL_LAYERS):
        assert total_stride(layers) == 320  # 20 ms at 16 kHz
        assert receptive_field(layers) == 400  # 25 ms at 16 kHz
    assert len(WAV2VEC2_LAYERS) == 7 and len(SMALL_LAYERS) < 7


@pytest.mark.parametrize("num_samples", [320, 1000, 16000, 16319, 16320, 48000])
def test_frame_count_and_frame_rate(num_samples, one_thread):
    torch.manual_seed(0)
    padded, unpadded = WaveformFrontEnd(pad=True), WaveformFrontEnd(pad=False)
    x = torch.randn(2, num_samples)
    out = padded(x)
    assert out.shape == (2, num_samples // 320, 64) == (2, padded.num_frames(num_samples), padded.dim)
    assert padded.frame_rate(16000) == 50.0  # one frame every 20 ms
    if num_samples >= 400:
        assert unpadded(x).shape[1] == (num_samples - 400) // 320 + 1 == unpadded.num_frames(num_samples)
    else:
        with pytest.raises(ValueError, match="at least 400"):
            unpadded(x)


def test_one_second_gives_50_frames_padded_and_49_unpadded(one_thread):
    x = torch.randn(1, 16000)
    assert WaveformFrontEnd()(x).shape == (1, 50, 64)
    assert WaveformFrontEnd(pad=False)(x).shape == (1, 49, 64)


def test_receptive_field_measured_by_gradient(one_thread):
    torch.manual_seed(0)
    front = WaveformFrontEnd(pad=False).double()
    # the first layer's GroupNorm normalises each channel over the whole clip, so through its statistics
    # every frame depends on every sample; the convolutions alone see 400 samples
    front.conv_layers[0].layer_norm = None
    x = torch.randn(1, 2000, dtype=torch.float64, requires_grad=True)
    front(x)[0, 2].sum().backward()  # frame 2 of the unpadded stack starts at sample 2 * 320
    seen = (x.grad[0] != 0).nonzero().flatten()
    assert seen.min().item() == 640 and seen.max().item() == 640 + 399


def test_equals_transformers_wav2vec2_feature_encoder(one_thread):
    transformers = pytest.importorskip("transformers")
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2FeatureEncoder

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(conv_dim=(32,) * 7)  # the real kernels and strides, fewer channels
    ref = Wav2Vec2FeatureEncoder(config).eval()
    ours = WaveformFrontEnd([(32, k, s) for _, k, s in WAV2VEC2_LAYERS], pad=False)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).transpose(1, 2))  # (B, 49, 32)


def test_group_norm_divides_out_the_gain_when_the_variance_dominates_its_eps(one_thread):
    torch.manual_seed(0)
    front = WaveformFrontEnd()
    x = torch.randn(1, 16000)  # unit variance: the GroupNorm's eps (1e-5) is negligible
    with torch.no_grad():
        torch.testing.assert_close(front(4.0 * x), front(x), rtol=1e-4, atol=1e-4)
        front.conv_layers[0].layer_norm = None
        assert not torch.allclose(front(4.0 * x), front(x), rtol=1e-2, atol=1e-2)


def test_bad_inputs():
    front = WaveformFrontEnd()
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        front(torch.randn(16000))
    with pytest.raises(TypeError, match="floating"):
        front(torch.zeros(1, 16000, dtype=torch.int16))
    with pytest.raises(ValueError, match="at least 320"):
        front(torch.randn(1, 100))
    with pytest.raises(ValueError, match="channels, kernel, stride"):
        WaveformFrontEnd([(8, 3)])
    with pytest.raises(ValueError, match="stride"):
        WaveformFrontEnd([(8, 3, 0)])
    with pytest.raises(ValueError, match="at least one"):
        WaveformFrontEnd([])
