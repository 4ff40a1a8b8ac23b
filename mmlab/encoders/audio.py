"""AST-style audio transformer (Gong et al., 2021): log-mel spectrogram -> (freq, time) patches -> ViT.

Patches do not overlap here (AST uses overlapping 16x16 patches with stride 10; we keep it small).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.encoders.config import AudioConfig
from mmlab.encoders.layers import Transformer


def log_mel_db(waveform: Tensor, config: AudioConfig) -> Tensor:
    """(B, T) waveform -> (B, n_mels, frames) normalised log-mel: (10 log10(mel) - db_mean) / db_std."""
    from mmlab.preprocess.audio import mel_spectrogram

    mel = mel_spectrogram(waveform, config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                          n_mels=config.n_mels)  # (B, n_mels, frames)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    return (db - config.db_mean) / config.db_std


class AudioTransformer(nn.Module):
    """waveform (B, T) -> tokens (B, 1 + N, D) via a log-mel spectrogram; `forward_mel` takes the spectrogram."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.patch_embed = nn.Conv2d(1, c.dim, (c.patch_freq, c.patch_time), stride=(c.patch_freq, c.patch_time))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + c.num_patches, c.dim) * 0.02)
        self.transformer = Transformer(c.dim, c.depth, c.heads, c.mlp_dim, c.qkv_bias, c.layer_norm_eps, c.dropout)

    def spectrogram(self, waveform: Tensor) -> Tensor:
        """(B, T) -> (B, n_mels, frames) normalised log-mel."""
        c = self.config
        if not isinstance(waveform, Tensor) or waveform.ndim != 2 or waveform.shape[1] != c.num_samples:
            raise ValueError(f"waveform must have shape (B, {c.num_samples}) at {c.sample_rate} Hz, "
                             f"got {tuple(getattr(waveform, 'shape', ()))}")
        if not waveform.is_floating_point():
            raise TypeError(f"waveform must be a floating tensor, got {waveform.dtype}")
        return log_mel_db(waveform, c)

    def forward_mel(self, mel: Tensor, return_attention: bool = False):
        """(B, n_mels, frames) -> (B, 1 + N, D); frames beyond a whole number of patches are dropped."""
        c = self.config
        if mel.ndim != 3 or mel.shape[1:] != (c.n_mels, c.num_frames):
            raise ValueError(f"spectrogram must have shape (B, {c.n_mels}, {c.num_frames}), got {tuple(mel.shape)}")
        x = self.patch_embed(mel[:, None]).flatten(2).transpose(1, 2)  # (B, F'*T', D), frequency-major
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, 1 + N, D)
        return self.transformer(x, return_attention=return_attention)

    def forward(self, waveform: Tensor, return_attention: bool = False):
        """(B, T) -> (B, 1 + N, D)."""
        return self.forward_mel(self.spectrogram(waveform), return_attention)

    def pooled(self, audio: Tensor) -> Tensor:
        """(B, T) waveform or (B, n_mels, frames) precomputed spectrogram -> (B, D): the CLS token."""
        if isinstance(audio, Tensor) and audio.ndim == 3:
            return self.pooled_mel(audio)
        return self(audio)[:, 0]

    def pooled_mel(self, mel: Tensor) -> Tensor:
        """(B, n_mels, frames) -> (B, D), for precomputed spectrograms."""
        return self.forward_mel(mel)[:, 0]
