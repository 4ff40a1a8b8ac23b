"""AST-style audio transformer (Gong et al., 2021): log-mel spectrogram -> (freq, time) patches -> ViT.

Patches do not overlap here (AST uses overlapping 16x16 patches with stride 10; we keep it small).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.encoders.config import AudioConfig
from mmlab.encoders.layers import TokenEncoder, Transformer, add_cls_and_positions, cls_and_positions
from mmlab.validation import floating_batch


def log_mel_db(waveform: Tensor, config: AudioConfig) -> Tensor:
    """(B, T) waveform -> (B, n_mels, frames) normalised log-mel: (10 log10(mel) - db_mean) / db_std."""
    from mmlab.preprocess.audio import mel_spectrogram

    mel = mel_spectrogram(waveform, config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                          n_mels=config.n_mels)  # (B, n_mels, frames)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    return (db - config.db_mean) / config.db_std


class AudioTransformer(TokenEncoder):
    """audio -> tokens (B, 1 + N, D). Every method taking `audio` accepts a (B, T) waveform, turned into
    a log-mel spectrogram, or that (B, n_mels, frames) spectrogram precomputed (`spectrogram`)."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.patch_embed = nn.Conv2d(1, c.dim, (c.patch_freq, c.patch_time), stride=(c.patch_freq, c.patch_time))
        self.cls_token, self.pos_embed = cls_and_positions(c.num_patches, c.dim)
        self.transformer = Transformer.from_config(c)

    def spectrogram(self, waveform: Tensor) -> Tensor:
        """(B, T) -> (B, n_mels, frames) normalised log-mel."""
        c = self.config
        return log_mel_db(floating_batch("waveform", waveform, (c.num_samples,), f" at {c.sample_rate} Hz"), c)

    def embed(self, audio: Tensor) -> Tensor:
        """Patch + CLS + position embeddings -> (B, 1 + N, D); frames beyond a whole number of patches are dropped."""
        c = self.config
        is_mel = isinstance(audio, Tensor) and audio.ndim == 3
        mel = floating_batch("spectrogram", audio, (c.n_mels, c.num_frames)) if is_mel else self.spectrogram(audio)
        x = self.patch_embed(mel[:, None]).flatten(2).transpose(1, 2)  # (B, F'*T', D), frequency-major
        return add_cls_and_positions(x, self.cls_token, self.pos_embed)  # (B, 1 + N, D)
