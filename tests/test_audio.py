"""mmlab.preprocess.audio: librosa equivalence, resampling, int/float, mono/stereo, bad input."""
import warnings

import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa")
from mmlab.preprocess import audio  # noqa: E402


@pytest.mark.parametrize("shape,sr,n_fft,hop,n_mels,f_min,f_max,power", [
    ((16000,), 16000, 400, 160, 80, 0.0, None, 2.0),
    ((12345,), 16000, 512, 128, 64, 50.0, 7000.0, 1.0),
    ((2, 3, 999), 8000, 255, 100, 40, 0.0, None, 2.0),  # odd n_fft, odd length, batch dims
    ((3, 4097), 22050, 1024, 256, 128, 20.0, 11025.0, 1.5),
    ((300,), 16000, 400, 160, 80, 0.0, None, 2.0),  # shorter than n_fft: centred padding makes it work
])
def test_mel_spectrogram_equals_librosa(shape, sr, n_fft, hop, n_mels, f_min, f_max, power):
    y = np.random.default_rng(0).standard_normal(shape)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns when n_fft > length
        ref = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels,
                                             fmin=f_min, fmax=f_max, power=power)
    out = audio.mel_spectrogram(torch.from_numpy(y), sr, n_fft, hop, n_mels, f_min, f_max, power)
    assert out.dtype == torch.float64
    assert out.shape == ref.shape == (*shape[:-1], n_mels, 1 + shape[-1] // hop)
    rel = (out.numpy() - ref) / np.maximum(np.abs(ref), 1e-12 * np.abs(ref).max())
    assert np.abs(rel).max() <= 1e-5


def test_filterbank_equals_librosa_and_has_equal_areas():
    fb = audio.mel_filterbank(16000, 400, 80)
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, dtype=np.float64)
    np.testing.assert_allclose(fb.numpy(), ref, rtol=1e-10, atol=1e-14)
    fine = audio.mel_filterbank(16000, 8192, 40)  # fine FFT bins: the sum approximates the integral
    area = fine.sum(1) * (16000 / 8192)  # Slaney norm: every triangle has area 1 (in Hz)
    torch.testing.assert_close(area, torch.ones_like(area), atol=0.02, rtol=0)


def test_batched_equals_one_by_one_and_float32():
    y = torch.randn(3, 8000)
    batched = audio.mel_spectrogram(y, 16000)
    for i in range(3):
        torch.testing.assert_close(batched[i], audio.mel_spectrogram(y[i], 16000))
    assert batched.dtype == torch.float32


def test_framing_25ms_10ms():
    spec = audio.mel_spectrogram(torch.zeros(16000) + 0.1, 16000)  # n_fft=400 (25 ms), hop=160 (10 ms)
    assert spec.shape == (80, 101)


def test_log_mel_db_equals_power_to_db_and_ln():
    mel = audio.mel_spectrogram(torch.randn(2, 4000, dtype=torch.float64), 16000, n_mels=40)
    db = audio.log_mel(mel)
    for i in range(2):
        ref = librosa.power_to_db(mel[i].numpy(), ref=1.0, amin=1e-10, top_db=80.0)
        np.testing.assert_allclose(db[i].numpy(), ref, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(audio.log_mel(mel, mode="ln", eps=1e-6), torch.log(mel + 1e-6))
    silent = audio.log_mel(torch.zeros(1, 4, 5))
    assert torch.isfinite(silent).all()
    with pytest.raises(ValueError, match="mode"):
        audio.log_mel(mel, mode="log2")


def test_normalize_utterance():
    feats = torch.randn(2, 40, 50, dtype=torch.float64) * 3 + 7
    z = audio.normalize_utterance(feats)
    torch.testing.assert_close(z.mean(-1), torch.zeros(2, 40, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(-1, unbiased=False), torch.ones(2, 40, dtype=torch.float64), atol=1e-5, rtol=0)


def _tones(t, freqs):
    return sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate(freqs))


@pytest.mark.parametrize("orig,new", [(44100, 16000), (22050, 16000), (8000, 16000), (48000, 16000)])
def test_resample_band_limited_tones(orig, new):
    # Tones below 0.8 x the lower Nyquist are kept: the result matches the tones sampled at the new
    # rate to 1e-4 away from the edges (measured ~4e-5: the windowed sinc's passband ripple), and agrees
    # with librosa (soxr_hq) to 1e-3 (measured up to 3.6e-4, soxr's own passband error near 0.8 x Nyquist).
    # Edges see zero padding.
    freqs = [220.0, 1000.0, 0.8 * min(orig, new) / 2]
    x = _tones(np.arange(orig) / orig, freqs)
    y = audio.resample(torch.from_numpy(x), orig, new).numpy()
    assert y.shape == (int(np.ceil(orig * new / orig)),)
    truth = _tones(np.arange(len(y)) / new, freqs)
    edge = 200
    assert np.abs(y - truth)[edge:-edge].max() < 1e-4
    ref = librosa.resample(x, orig_sr=orig, target_sr=new)
    assert ref.shape == y.shape
    assert np.abs(y - ref)[edge:-edge].max() < 1e-3


def test_resample_removes_aliasing_and_batches():
    orig, new = 48000, 16000
    t = np.arange(orig) / orig
    high = np.sin(2 * np.pi * 12000 * t)  # above the new Nyquist (8 kHz): must vanish, not alias to 4 kHz
    y = audio.resample(torch.from_numpy(np.stack([high, high * 0.5])), orig, new)
    assert y.shape == (2, 16000)
    assert y[:, 200:-200].abs().max() < 1e-3
    assert torch.equal(audio.resample(torch.ones(5), 16000, 16000), torch.ones(5))


def test_to_mono_float_int_and_stereo():
    pcm = torch.tensor([0, 16384, -32768, 32767], dtype=torch.int16)
    torch.testing.assert_close(audio.to_mono_float(pcm), torch.tensor([0.0, 0.5, -1.0, 32767 / 32768]))
    pcm32 = torch.tensor([-2 ** 31, 2 ** 30], dtype=torch.int32)
    torch.testing.assert_close(audio.to_mono_float(pcm32), torch.tensor([-1.0, 0.5]))
    u8 = np.array([128, 255, 0], dtype=np.uint8)
    torch.testing.assert_close(audio.to_mono_float(u8), torch.tensor([0.0, 127 / 128, -1.0]))
    left, right = torch.rand(1000) - 0.5, torch.rand(1000) - 0.5
    first = audio.to_mono_float(torch.stack([left, right]))  # (C, T)
    last = audio.to_mono_float(torch.stack([left, right], dim=1), layout="channels_last")  # (T, C)
    torch.testing.assert_close(first, (left + right) / 2)
    torch.testing.assert_close(last, first)
    with pytest.raises(ValueError, match="looks like \\(T, C\\)"):
        audio.to_mono_float(torch.stack([left, right], dim=1))
    # int16 and its float version give the same features
    wave = torch.round(torch.sin(torch.arange(4000) / 5.0) * 20000).to(torch.int16)
    torch.testing.assert_close(audio.mel_spectrogram(audio.to_mono_float(wave), 16000),
                               audio.mel_spectrogram(wave.float() / 32768, 16000))


@pytest.mark.parametrize("bad,err,match", [
    (torch.zeros(0), ValueError, "empty"),
    (torch.tensor([0.0, float("nan"), 1.0]).repeat(100), ValueError, "non-finite"),
    (torch.tensor([0.0, float("inf")]).repeat(100), ValueError, "non-finite"),
    (torch.zeros(400, dtype=torch.complex64), TypeError, "dtype"),
    (torch.zeros(400, dtype=torch.bool), TypeError, "dtype"),
    (torch.zeros(400, dtype=torch.int16), TypeError, "to_mono_float"),
    ([0.0, 1.0], TypeError, "torch.Tensor"),
])
def test_bad_waveforms(bad, err, match):
    with pytest.raises(err, match=match):
        audio.mel_spectrogram(bad, 16000)


def test_bad_parameters():
    y = torch.randn(1600)
    for sr in (0, -16000, float("nan")):
        with pytest.raises(ValueError, match="sample_rate"):
            audio.mel_spectrogram(y, sr)
    for sr in ("16000", True):
        with pytest.raises(TypeError, match="sample_rate"):
            audio.mel_spectrogram(y, sr)
    with pytest.raises(ValueError, match="Nyquist"):
        audio.mel_spectrogram(y, 16000, f_max=9000.0)
    with pytest.raises(ValueError, match="n_fft"):
        audio.mel_spectrogram(y, 16000, n_fft=0)
    with pytest.raises(TypeError, match="hop_length"):
        audio.mel_spectrogram(y, 16000, hop_length=1.5)
    with pytest.raises(ValueError, match="hop_length"):
        audio.mel_spectrogram(y, 16000, hop_length=0)
    with pytest.raises(ValueError, match="n_mels"):
        audio.mel_spectrogram(y, 16000, n_mels=0)
    with pytest.raises(ValueError, match="new_sr"):
        audio.resample(y, 16000, 0)
    with pytest.raises(ValueError, match="layout"):
        audio.to_mono_float(y, layout="interleaved")
    with pytest.raises(TypeError, match="dtype"):
        audio.to_mono_float(torch.zeros(3, dtype=torch.complex64))
