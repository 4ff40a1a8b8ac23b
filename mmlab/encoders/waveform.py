"""A raw-waveform front end: a stack of strided 1-D convolutions, as in wav2vec 2.0 (Baevski et al., 2020).

wav2vec 2.0's feature encoder has seven convolutions with kernels (10, 3, 3, 3, 3, 2, 2) and strides
(5, 2, 2, 2, 2, 2, 2), 512 channels, GELU, and a GroupNorm (one group per channel) after the first:
total stride 5 * 2**6 = 320 samples (20 ms at 16 kHz) and a receptive field of 400 samples (25 ms).
`SMALL_LAYERS` keeps that stride and receptive field with four layers.

With `pad=False` (wav2vec 2.0) T samples give floor((T - receptive_field) / stride) + 1 frames, 49 for
one second. With `pad=True` (the default) receptive_field - stride zeros are added, split between the two
ends, so T samples give T // stride frames (50 per second), frame k centred near sample k * stride + stride / 2.
The layer names match transformers' `Wav2Vec2FeatureEncoder`, so its weights load with `load_state_dict`.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mmlab.validation import floating_tensor, positive_int

# (channels, kernel, stride) per layer
WAV2VEC2_LAYERS: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
SMALL_LAYERS: tuple[tuple[int, int, int], ...] = ((64, 10, 5), (64, 7, 4), (64, 7, 4), (64, 4, 4))


def receptive_field(layers: Sequence[tuple[int, int, int]]) -> int:
    """Input samples that one output frame of the stack sees: k1 + sum_i (k_i - 1) * (s_1 * ... * s_{i-1})."""
    field, jump = 1, 1
    for _, kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def total_stride(layers: Sequence[tuple[int, int, int]]) -> int:
    """Input samples between two output frames: the product of the strides."""
    out = 1
    for _, _, stride in layers:
        out *= stride
    return out


class _ConvLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, group_norm: bool):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, stride=stride, bias=False)
        self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True) if group_norm else None
        self.activation = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)  # (B, C, frames)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.activation(x)


class WaveformFrontEnd(nn.Module):
    """(B, T) waveform -> (B, frames, D) frame features, D the last layer's channels.

    `layers`: (channels, kernel, stride) per convolution; a GroupNorm follows the first, GELU every one.
    """

    def __init__(self, layers: Sequence[tuple[int, int, int]] = SMALL_LAYERS, pad: bool = True):
        super().__init__()
        layers = tuple(tuple(layer) for layer in layers)
        if not layers:
            raise ValueError("layers must name at least one (channels, kernel, stride) convolution")
        for i, layer in enumerate(layers):
            if len(layer) != 3:
                raise ValueError(f"layers[{i}] must be (channels, kernel, stride), got {layer!r}")
            for what, value in zip(("channels", "kernel", "stride"), layer):
                positive_int(f"layers[{i}] {what}", value)
        if not isinstance(pad, bool):
            raise TypeError(f"pad must be a bool, got {type(pad).__name__}")
        self.layers, self.pad = layers, pad
        self.receptive_field, self.stride = receptive_field(layers), total_stride(layers)
        self.dim = layers[-1][0]
        dims = (1,) + tuple(layer[0] for layer in layers)
        self.conv_layers = nn.ModuleList(
            _ConvLayer(dims[i], c, k, s, group_norm=(i == 0)) for i, (c, k, s) in enumerate(layers))

    def frame_rate(self, sample_rate: float) -> float:
        """Output frames per second of audio at `sample_rate`."""
        return sample_rate / self.stride

    def num_frames(self, num_samples: int) -> int:
        """Frames produced from `num_samples` samples (0 if too short)."""
        positive_int("num_samples", num_samples)
        if self.pad:
            return num_samples // self.stride
        return max(0, (num_samples - self.receptive_field) // self.stride + 1)

    def forward(self, waveform: Tensor) -> Tensor:
        x = floating_tensor("waveform", waveform, 2, "(B, T)")
        if self.num_frames(x.shape[-1]) == 0:
            need = self.stride if self.pad else self.receptive_field
            raise ValueError(f"waveform has {x.shape[-1]} samples; the front end needs at least {need}")
        x = x[:, None]  # (B, 1, T)
        if self.pad:
            extra = self.receptive_field - self.stride
            x = nn.functional.pad(x, (extra // 2, extra - extra // 2))
        for layer in self.conv_layers:
            x = layer(x)  # (B, C_i, frames_i)
        return x.transpose(1, 2)  # (B, frames, D)


__all__ = ["SMALL_LAYERS", "WAV2VEC2_LAYERS", "WaveformFrontEnd", "receptive_field", "total_stride"]
