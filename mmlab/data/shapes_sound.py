"""Synthetic Shapes-World sounds: timbre follows shape, pitch follows colour, loudness size.

A sound is a harmonic tone (one recipe of harmonic amplitudes per shape, a fundamental per
colour, three small detunings) times an envelope (attack, exponential decay, release)
times a gain set by the size, plus a little fixed noise. All tones and envelopes are
precomputed once per (sample_rate, length) as tables; an item is one row of each: a window
of its tone starting at a random phase offset, multiplied by its envelope row. That makes a
second of audio cost one float32 multiply per sample.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from mmlab.data.shapes_random import noise_bank
from mmlab.data.shapes_text import COLORS, SHAPES, SIZES

# Fundamental (Hz) per colour: low for red (long light waves) up to high for purple.
PITCH_HZ: dict[str, float] = {
    "red": 220.00,  # A3
    "orange": 261.63,  # C4
    "yellow": 329.63,  # E4
    "green": 392.00,  # G4
    "blue": 493.88,  # B4
    "purple": 587.33,  # D5
}
# Harmonic amplitudes per shape (the fundamental is always the strongest partial).
HARMONICS: dict[str, tuple[float, ...]] = {
    "circle": (1.0,),  # pure sine: round and smooth
    "square": (1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0, 1 / 7),  # odd harmonics: hollow, square wave
    "triangle": (1.0, 0.5, 0.3, 0.15),  # a few low harmonics: soft reed
    "cross": tuple(1.0 / k for k in range(1, 9)),  # every harmonic: bright sawtooth buzz
}
DETUNE: tuple[float, ...] = (0.99, 1.0, 1.01)
# Peak gain per size (same order as SIZES); each item takes one of these levels.
GAINS: dict[str, tuple[float, ...]] = {"small": (0.22, 0.25, 0.28), "large": (0.70, 0.75, 0.80)}
ATTACK_S: tuple[float, ...] = (0.005, 0.01, 0.02, 0.04)
DECAY_PER_S: tuple[float, ...] = (0.4, 1.2)
RELEASE_S = 0.02
TONE_RMS = 0.5
NOISE_AMPLITUDE = 0.02
_NOISE_STREAM = 0x50D
_GRID = 2.0**-20  # tables are rounded to this grid so a last-ulp libm difference cannot leak

N_TONES = len(SHAPES) * len(COLORS) * len(DETUNE)
N_ENVELOPES = len(SIZES) * 3 * len(ATTACK_S) * len(DECAY_PER_S)


def tone_index(shape: np.ndarray, color: np.ndarray, detune: np.ndarray) -> np.ndarray:
    return (shape * len(COLORS) + color) * len(DETUNE) + detune


def envelope_index(size: np.ndarray, gain: np.ndarray, attack: np.ndarray, decay: np.ndarray) -> np.ndarray:
    return ((size * 3 + gain) * len(ATTACK_S) + attack) * len(DECAY_PER_S) + decay


def max_period(sample_rate: int) -> int:
    """Samples in one period of the lowest tone: phase offsets range over [0, max_period)."""
    return math.ceil(sample_rate / (min(PITCH_HZ.values()) * min(DETUNE))) + 1


def _round(x: np.ndarray) -> np.ndarray:
    return (np.round(x / _GRID) * _GRID).astype(np.float32)


@lru_cache(maxsize=4)
def tone_table(sample_rate: int, n_samples: int) -> np.ndarray:
    """(N_TONES, n_samples + max_period) float32 tones plus noise, RMS about TONE_RMS.

    Peaks stay below 1 / max gain, so every rendered sound lies strictly inside (-1, 1).
    """
    length = n_samples + max_period(sample_rate)
    t = np.arange(length, dtype=np.float64) / sample_rate
    noise = noise_bank(_NOISE_STREAM, N_TONES * length, NOISE_AMPLITUDE).reshape(N_TONES, length)
    out = np.empty((N_TONES, length), dtype=np.float32)
    for si, shape in enumerate(SHAPES):
        for ci, color in enumerate(COLORS):
            for di, detune in enumerate(DETUNE):
                f0 = PITCH_HZ[color] * detune
                wave = np.zeros(length)
                for k, amp in enumerate(HARMONICS[shape], start=1):
                    if amp and k * f0 < 0.5 * sample_rate:  # band-limited: nothing above Nyquist
                        wave += amp * np.sin(2 * np.pi * k * f0 * t)
                wave *= TONE_RMS / np.sqrt(np.mean(wave**2))
                row = tone_index(np.int64(si), np.int64(ci), np.int64(di))
                out[row] = _round(wave) + noise[row]
    assert np.abs(out).max() * max(max(g) for g in GAINS.values()) < 1.0
    return out


@lru_cache(maxsize=4)
def envelope_table(sample_rate: int, n_samples: int) -> np.ndarray:
    """(N_ENVELOPES, n_samples) float32: gain * attack ramp * exp decay * release ramp."""
    t = np.arange(n_samples, dtype=np.float64) / sample_rate
    duration = n_samples / sample_rate
    release = np.clip((duration - t) / RELEASE_S, 0.0, 1.0)
    out = np.empty((N_ENVELOPES, n_samples), dtype=np.float32)
    for zi, size in enumerate(SIZES):
        for gi, gain in enumerate(GAINS[size]):
            for ai, attack in enumerate(ATTACK_S):
                for di, decay in enumerate(DECAY_PER_S):
                    env = gain * np.minimum(t / attack, 1.0) * np.exp(-decay * t) * release
                    out[envelope_index(zi, gi, ai, di)] = _round(env)
    return out


def render_audio(
    tone: np.ndarray, offset: np.ndarray, envelope: np.ndarray, sample_rate: int, n_samples: int
) -> np.ndarray:
    """(B, n_samples) float32 in (-1, 1): tone rows (B,) from phase offsets (B,) times envelope rows (B,)."""
    tones = tone_table(sample_rate, n_samples)
    envs = envelope_table(sample_rate, n_samples)
    out = np.empty((len(tone), n_samples), dtype=np.float32)
    for b in range(len(tone)):  # one fused multiply per item: no (B, T) temporaries
        o = offset[b]
        np.multiply(tones[tone[b], o : o + n_samples], envs[envelope[b]], out=out[b])
    return out
