"""mmlab.preprocess.audio.mfcc / dct_matrix / normalize_waveform against librosa, scipy and transformers."""
import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa")
scipy_fft = pytest.importorskip("scipy.fft")
from mmlab.preprocess import audio  # noqa: E402


def _signal(shape, seed=0):
    shape = (shape,) if isinstance(shape, int) else shape
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(shape) * np.linspace(0.0, 1.0, shape[-1])  # a ramp: frames differ in level
    return y


@pytest.mark.parametrize("n_out,n_in", [(80, 80), (20, 80), (13, 40), (1, 7)])
def test_dct_matrix_equals_scipy_ortho_dct(n_out, n_in):
    x = np.random.default_rng(1).standard_normal((n_in, 5))
    ref = scipy_fft.dct(x, type=2, norm="ortho", axis=0)[:n_out]
    torch.testing.assert_close(audio.dct_matrix(n_out, n_in) @ torch.from_numpy(x), torch.from_numpy(ref))
    full = audio.dct_matrix(n_in, n_in)
    torch.testing.assert_close(full @ full.T, torch.eye(n_in, dtype=torch.float64))  # orthonormal


@pytest.mark.parametrize("kwargs", [
    {},
    {"n_mfcc": 13, "lifter": 22},
    {"n_mfcc": 40, "n_fft": 512, "hop_length": 128, "n_mels": 64, "fmin": 50.0, "fmax": 7000.0},
    {"n_mfcc": 20, "n_fft": 255, "hop_length": 100, "n_mels": 40, "power": 1.0},
])
def test_mfcc_equals_librosa(kwargs):
    y = _signal(12345)
    full = {"n_fft": 400, "hop_length": 160, "n_mels": 80} | kwargs
    ref = librosa.feature.mfcc(y=y, sr=16000, **full)
    ours = {{"fmin": "f_min", "fmax": "f_max"}.get(k, k): v for k, v in full.items()}
    out = audio.mfcc(torch.from_numpy(y), 16000, **ours)
    assert out.dtype == torch.float64 and out.shape == ref.shape
    torch.testing.assert_close(out, torch.from_numpy(ref), rtol=1e-7, atol=1e-5)


def test_mfcc_top_db_none_equals_librosa_on_unfloored_db():
    y = _signal(8000)
    y[:3000] *= 1e-6  # a near-silent start: more than 80 dB below the peak
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=80)
    ref = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=20)
    out = audio.mfcc(torch.from_numpy(y), 16000, top_db=None)
    torch.testing.assert_close(out, torch.from_numpy(ref), rtol=1e-7, atol=1e-5)
    assert not torch.allclose(out, audio.mfcc(torch.from_numpy(y), 16000))  # the 80 dB floor matters here


def test_mfcc_batched_equals_one_by_one_and_float32():
    y = torch.from_numpy(_signal((2, 3, 4000)))
    out = audio.mfcc(y, 16000, n_mfcc=13)
    assert out.shape == (2, 3, 13, 1 + 4000 // 160)
    for i in range(2):
        for j in range(3):
            ref = librosa.feature.mfcc(y=y[i, j].numpy(), sr=16000, n_mfcc=13, n_fft=400, hop_length=160, n_mels=80)
            torch.testing.assert_close(out[i, j], torch.from_numpy(ref), rtol=1e-7, atol=1e-5)
    out32 = audio.mfcc(y.float(), 16000, n_mfcc=13)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out, rtol=1e-4, atol=1e-2)


def test_mfcc_bad_arguments():
    y = torch.randn(1600)
    with pytest.raises(ValueError, match="n_mfcc"):
        audio.mfcc(y, 16000, n_mfcc=81, n_mels=80)
    with pytest.raises(ValueError, match="n_mfcc"):
        audio.mfcc(y, 16000, n_mfcc=0)
    with pytest.raises(ValueError, match="lifter"):
        audio.mfcc(y, 16000, lifter=-1)
    with pytest.raises(ValueError, match="n_out"):
        audio.dct_matrix(5, 4)
    with pytest.raises(TypeError, match="to_mono_float"):
        audio.mfcc(torch.zeros(400, dtype=torch.int16), 16000)


def test_normalize_waveform_equals_wav2vec2_feature_extractor_and_erases_gain():
    transformers = pytest.importorskip("transformers")
    fe = transformers.Wav2Vec2FeatureExtractor()  # default configuration, nothing downloaded
    clips = torch.from_numpy(_signal((3, 16000), seed=2)).float() * torch.tensor([[0.1], [0.5], [2.0]])
    ref = fe(list(clips.numpy()), sampling_rate=16000, return_tensors="pt")["input_values"]
    out = audio.normalize_waveform(clips)
    assert out.shape == ref.shape == (3, 16000)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(audio.normalize_waveform(3.0 * clips), out, rtol=1e-4, atol=1e-4)  # up to eps
    with pytest.raises(ValueError, match="eps"):
        audio.normalize_waveform(clips, eps=-1.0)
