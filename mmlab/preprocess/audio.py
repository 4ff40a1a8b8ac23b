"""Audio features in pure torch: mono float waveforms, resampling, STFT, mel filterbank, log-mel.

Everything is batched over leading dimensions and runs on whatever device the waveform is on.
`mel_spectrogram` equals `librosa.feature.melspectrogram` with the same arguments and librosa's
defaults (centered frames with zero padding, periodic Hann window, Slaney mel scale and area norm).

Framing: speech models look at 25 ms windows every 10 ms. At 16 kHz that is
0.025 * 16000 = 400 samples per window (`n_fft=400`) and 0.010 * 16000 = 160 samples per hop
(`hop_length=160`), so one second gives 1 + 16000 // 160 = 101 frames.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mmlab.validation import on_host, positive_int

_INT_SCALE = {torch.int16: 32768.0, torch.int32: 2147483648.0}


def _as_tensor(waveform, name: str = "waveform") -> torch.Tensor:
    if isinstance(waveform, np.ndarray):
        waveform = torch.from_numpy(np.ascontiguousarray(waveform))
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(waveform).__name__}")
    return waveform


def _check_sample_rate(sample_rate, name: str = "sample_rate") -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
        raise TypeError(f"{name} must be a number of samples per second, got {type(sample_rate).__name__}")
    if not math.isfinite(sample_rate) or sample_rate <= 0:
        raise ValueError(f"{name} must be a positive number of samples per second, got {sample_rate!r}")
    return float(sample_rate)


def _check_waveform(waveform) -> torch.Tensor:
    """A non-empty, finite, real floating-point tensor (..., T)."""
    waveform = _as_tensor(waveform)
    if waveform.is_complex() or waveform.dtype == torch.bool or not waveform.is_floating_point():
        hint = " (convert integer PCM with to_mono_float first)" if not waveform.is_complex() and \
            waveform.dtype != torch.bool else ""
        raise TypeError(f"waveform must be a real floating-point tensor, got dtype {waveform.dtype}{hint}")
    if waveform.dim() == 0 or waveform.shape[-1] == 0 or waveform.numel() == 0:
        raise ValueError(f"waveform is empty (shape {tuple(waveform.shape)}); expected (..., T) with T >= 1 samples")
    if on_host(waveform) and not bool(torch.isfinite(waveform).all()):
        raise ValueError("waveform contains non-finite values (NaN or inf)")
    if waveform.dtype in (torch.float16, torch.bfloat16):
        waveform = waveform.float()
    return waveform


def to_mono_float(waveform, layout: str = "channels_first") -> torch.Tensor:
    """Integer or float audio -> float32 mono (T,) in [-1, 1] (float64 input stays float64).

    1-D input is mono. 2-D input is (C, T) with `layout="channels_first"` (torchaudio's layout) or
    (T, C) with `layout="channels_last"` (soundfile's / scipy's layout); channels are averaged.
    int16 is divided by 2**15, int32 by 2**31, uint8 is centred at 128. A channels-first array with
    more than 16 "channels" but at most 16 samples is almost surely (T, C): that is an error.
    """
    waveform = _as_tensor(waveform)
    if layout not in ("channels_first", "channels_last"):
        raise ValueError(f"layout must be 'channels_first' (C, T) or 'channels_last' (T, C), got {layout!r}")
    if waveform.is_complex() or waveform.dtype == torch.bool:
        raise TypeError(f"audio samples must be integers or real floats, got dtype {waveform.dtype}")
    if waveform.dtype in _INT_SCALE:
        x = waveform.float() / _INT_SCALE[waveform.dtype]
    elif waveform.dtype == torch.uint8:
        x = (waveform.float() - 128.0) / 128.0
    elif waveform.is_floating_point():
        x = waveform if waveform.dtype == torch.float64 else waveform.float()
    else:
        raise TypeError(f"unsupported audio dtype {waveform.dtype}; expected int16, int32, uint8 or float")
    if x.dim() == 2:
        if layout == "channels_first":
            if x.shape[0] > 16 and x.shape[1] <= 16:
                raise ValueError(f"audio of shape {tuple(x.shape)} looks like (T, C); "
                                 "pass layout='channels_last' or transpose it to (C, T)")
            x = x.mean(dim=0)  # (T,)
        else:
            x = x.mean(dim=1)  # (T,)
    elif x.dim() != 1:
        raise ValueError(f"audio must be (T,) or 2-D (C, T)/(T, C), got shape {tuple(x.shape)}")
    return _check_waveform(x)


# ---------------------------------------------------------------- resampling

def _kaiser(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Kaiser window at positions x in [-1, 1] (0 outside)."""
    inside = x.abs() <= 1
    arg = beta * torch.sqrt(torch.clamp(1 - x * x, min=0))
    return torch.where(inside, torch.special.i0(arg) / torch.special.i0(torch.tensor(beta, dtype=x.dtype)), 0)


def resample(waveform, orig_sr: int, new_sr: int, lowpass_width: int = 32, rolloff: float = 0.945,
             beta: float = 8.6) -> torch.Tensor:
    """Band-limited resampling (..., T) -> (..., ceil(T * new_sr / orig_sr)) with a Kaiser-windowed sinc.

    Output sample n sits at input time t = n * orig_sr / new_sr; it is the sum of input samples
    weighted by a low-pass sinc (cut-off `rolloff` times the lower Nyquist, so downsampling does not
    alias) reaching `lowpass_width` zero crossings each side. The signal is zero beyond its ends.
    """
    x = _check_waveform(waveform)
    positive_int("orig_sr (samples per second)", orig_sr)
    positive_int("new_sr (samples per second)", new_sr)
    if orig_sr == new_sr:
        return x.clone()
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g  # output n <-> input time n * down / up
    length = x.shape[-1]
    out_len = math.ceil(length * new_sr / orig_sr)
    fc = rolloff * min(1.0, new_sr / orig_sr)  # cut-off in cycles per 2 input samples (1 = input Nyquist)
    half = lowpass_width / fc  # half-width of the kernel in input samples
    reach = math.ceil(half)
    n = torch.arange(out_len, device=x.device)
    base = (n * down) // up  # (n_out,) integer part of the input time
    frac = ((n * down) % up).to(x.dtype) / up  # (n_out,) fractional part
    offsets = torch.arange(-reach, reach + 2, device=x.device)  # (K,)
    d = frac[:, None] - offsets[None, :].to(x.dtype)  # (n_out, K) distance t - k
    weight = fc * torch.special.sinc(fc * d) * _kaiser(d / half, beta)  # (n_out, K)
    padded = torch.nn.functional.pad(x.reshape(-1, 1, length), (reach, reach + 2)).reshape(-1, length + 2 * reach + 2)
    idx = base[:, None] + offsets[None, :] + reach  # (n_out, K) into the padded signal
    taps = padded[:, idx]  # (N, n_out, K)
    y = (taps * weight).sum(-1)  # (N, n_out)
    return y.reshape(*x.shape[:-1], out_len)


# ---------------------------------------------------------------- STFT and mel

def stft_power(waveform, n_fft: int = 400, hop_length: int = 160, power: float = 2.0) -> torch.Tensor:
    """|STFT|**power, (..., T) -> (..., 1 + n_fft // 2, 1 + T // hop_length), as librosa.

    Frames are centred: n_fft // 2 zeros are padded on each side, so any T >= 1 works (a signal
    shorter than n_fft gives 1 + T // hop_length frames that are mostly padding). Periodic Hann window.
    """
    x = _check_waveform(waveform)
    positive_int("n_fft", n_fft)
    positive_int("hop_length", hop_length)
    if not isinstance(power, (int, float)) or isinstance(power, bool) or power <= 0:
        raise ValueError(f"power must be a positive number (1 = magnitude, 2 = power), got {power!r}")
    lead, length = x.shape[:-1], x.shape[-1]
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(x.reshape(-1, length), n_fft, hop_length=hop_length, win_length=n_fft, window=window,
                      center=True, pad_mode="constant", return_complex=True)  # (N, freq, frames)
    spec = spec.abs() ** power
    return spec.reshape(*lead, *spec.shape[-2:])  # (..., freq, frames)


# Slaney's mel scale: 200/3 Hz per mel below 1 kHz, then a constant ratio of 6.4 every 27 mels.
_HZ_PER_MEL, _MIN_LOG_HZ, _LOG_STEP = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _HZ_PER_MEL


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    return torch.where(hz >= _MIN_LOG_HZ, _MIN_LOG_MEL + torch.log(hz.clamp(min=1e-10) / _MIN_LOG_HZ) / _LOG_STEP,
                       hz / _HZ_PER_MEL)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of `hz_to_mel`."""
    return torch.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mel - _MIN_LOG_MEL)),
                       _HZ_PER_MEL * mel)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int = 80, f_min: float = 0.0, f_max: float | None = None,
                   dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Triangular mel filters (n_mels, 1 + n_fft // 2), Slaney scale and area norm (librosa's defaults).

    Filter i rises from mel point i to i+1 and falls to i+2 (n_mels + 2 points evenly spaced in mel
    between f_min and f_max); each is scaled by 2 / (its width in Hz) so every filter has the same area.
    """
    sr = _check_sample_rate(sample_rate)
    positive_int("n_fft", n_fft)
    positive_int("n_mels", n_mels)
    f_max = sr / 2 if f_max is None else float(f_max)
    if not 0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    if f_max > sr / 2:
        raise ValueError(f"f_max={f_max} Hz is above the Nyquist frequency sample_rate/2 = {sr / 2} Hz")
    fft_freqs = torch.arange(1 + n_fft // 2, dtype=torch.float64) * (sr / n_fft)  # (F,) bin centres
    mel_points = torch.linspace(float(hz_to_mel(torch.tensor(float(f_min), dtype=torch.float64))),
                                float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2,
                                dtype=torch.float64)
    hz_points = mel_to_hz(mel_points)  # (n_mels + 2,)
    widths = hz_points.diff()  # (n_mels + 1,)
    ramps = hz_points[:, None] - fft_freqs[None, :]  # (n_mels + 2, F)
    rising = -ramps[:-2] / widths[:-1, None]  # (n_mels, F)
    falling = ramps[2:] / widths[1:, None]  # (n_mels, F)
    weights = torch.clamp(torch.minimum(rising, falling), min=0)
    weights = weights * (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]  # Slaney area norm
    return weights.to(dtype=dtype, device=device)


def mel_spectrogram(waveform, sample_rate: float, n_fft: int = 400, hop_length: int = 160, n_mels: int = 80,
                    f_min: float = 0.0, f_max: float | None = None, power: float = 2.0) -> torch.Tensor:
    """Mel spectrogram (..., T) -> (..., n_mels, 1 + T // hop_length), equal to librosa.feature.melspectrogram."""
    spec = stft_power(waveform, n_fft=n_fft, hop_length=hop_length, power=power)  # (..., F, frames)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, dtype=spec.dtype, device=spec.device)
    return torch.matmul(fb, spec)  # (..., n_mels, frames)


def log_mel(mel: torch.Tensor, mode: str = "db", amin: float = 1e-10, top_db: float | None = 80.0,
            eps: float = 1e-6) -> torch.Tensor:
    """Compress a (power) mel spectrogram (..., n_mels, frames).

    mode="db": 10 * log10(max(mel, amin)), then (if top_db) floored at the per-example maximum minus
    top_db, i.e. librosa.power_to_db(mel, ref=1.0, amin=amin, top_db=top_db) for each example.
    mode="ln": natural log(mel + eps), the usual input of speech models (no top_db).
    """
    mel = _as_tensor(mel, "mel")
    if not mel.is_floating_point():
        raise TypeError(f"mel must be a float tensor (..., n_mels, frames), got {mel.dtype}")
    if mel.dim() < 2:
        raise ValueError(f"mel must be (..., n_mels, frames), got shape {tuple(mel.shape)}")
    if mode == "db":
        db = 10.0 * torch.log10(mel.clamp(min=amin))
        if top_db is not None:
            if top_db < 0:
                raise ValueError(f"top_db must be non-negative, got {top_db}")
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - top_db)
        return db
    if mode == "ln":
        return torch.log(mel + eps)
    raise ValueError(f"mode must be 'db' or 'ln', got {mode!r}")


def normalize_utterance(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean/variance normalisation: every feature row (mel bin) over the frames of
    one example gets zero mean and unit variance. (..., n_mels, frames) -> same shape."""
    features = _as_tensor(features, "features")
    if not features.is_floating_point():
        raise TypeError(f"features must be a float tensor (..., n_mels, frames), got {features.dtype}")
    if features.dim() < 2 or features.shape[-1] == 0:
        raise ValueError(f"features must be (..., n_mels, frames > 0), got shape {tuple(features.shape)}")
    mean = features.mean(dim=-1, keepdim=True)
    std = features.std(dim=-1, keepdim=True, unbiased=False)
    return (features - mean) / (std + eps)


# ---------------------------------------------------------------- MFCC

def dct_matrix(n_out: int, n_in: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Orthonormal DCT-II as a matrix (n_out, n_in): `dct_matrix(n, n) @ x` equals
    `scipy.fft.dct(x, type=2, norm="ortho", axis=0)`; the first n_out rows keep the n_out lowest
    "quefrencies". Row k is sqrt(2 / n_in) * cos(pi * k * (n + 1/2) / n_in), row 0 scaled by 1/sqrt(2)."""
    positive_int("n_in", n_in)
    positive_int("n_out", n_out)
    if n_out > n_in:
        raise ValueError(f"n_out={n_out} must be at most n_in={n_in} (a DCT of n_in values has n_in coefficients)")
    k = torch.arange(n_out, dtype=torch.float64)[:, None]  # (n_out, 1)
    n = torch.arange(n_in, dtype=torch.float64)[None, :]  # (1, n_in)
    basis = torch.cos(math.pi * k * (n + 0.5) / n_in) * math.sqrt(2.0 / n_in)  # (n_out, n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.to(dtype=dtype, device=device)


def mfcc(waveform, sample_rate: float, n_mfcc: int = 20, n_fft: int = 400, hop_length: int = 160, n_mels: int = 80,
         f_min: float = 0.0, f_max: float | None = None, power: float = 2.0, top_db: float | None = 80.0,
         lifter: float = 0.0) -> torch.Tensor:
    """Mel-frequency cepstral coefficients (..., T) -> (..., n_mfcc, 1 + T // hop_length).

    The log-mel in dB (`log_mel(mel_spectrogram(...), top_db=top_db)`, floored per example) followed by an
    orthonormal DCT-II over the mel axis, keeping the first `n_mfcc` coefficients, then (if `lifter > 0`)
    multiplied by 1 + (lifter / 2) * sin(pi * (k + 1) / lifter). Equal to `librosa.feature.mfcc` with the
    same arguments and librosa's other defaults (dct_type=2, norm="ortho", Slaney mel), applied to each
    example on its own (librosa.feature.mfcc always floors at 80 dB; other `top_db` values equal
    `librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=top_db))`). Pure torch, batched over leading
    dims, on the waveform's device.
    """
    positive_int("n_mfcc", n_mfcc)
    positive_int("n_mels", n_mels)
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc={n_mfcc} must be at most n_mels={n_mels}")
    if isinstance(lifter, bool) or not isinstance(lifter, (int, float)) or not math.isfinite(lifter) or lifter < 0:
        raise ValueError(f"lifter must be a non-negative number (0 = no liftering), got {lifter!r}")
    db = log_mel(mel_spectrogram(waveform, sample_rate, n_fft, hop_length, n_mels, f_min, f_max, power),
                 mode="db", top_db=top_db)  # (..., n_mels, frames)
    coeffs = torch.matmul(dct_matrix(n_mfcc, n_mels, dtype=db.dtype, device=db.device), db)  # (..., n_mfcc, frames)
    if lifter > 0:
        k = torch.arange(1, n_mfcc + 1, dtype=db.dtype, device=db.device)
        coeffs = coeffs * (1 + (lifter / 2) * torch.sin(math.pi * k / lifter))[:, None]
    return coeffs


def normalize_waveform(waveform, eps: float = 1e-7) -> torch.Tensor:
    """Zero-mean unit-variance normalisation of each utterance (..., T): (x - mean) / sqrt(var + eps),
    with the population variance over the last axis. This is what transformers' `Wav2Vec2FeatureExtractor`
    does (do_normalize=True, eps 1e-7) to each unpadded clip. Like `normalize_utterance`, it erases the
    clip's overall gain: x and g * x (g > 0) give the same output up to the eps term."""
    x = _check_waveform(waveform)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)
