"""Encoder configurations: plain dataclasses, validated on creation, kept apart from the modules."""
from __future__ import annotations

from dataclasses import dataclass, field

from mmlab.validation import one_of, positive_int


def _positive_ints(owner: str, **values: int) -> None:
    for name, v in values.items():
        positive_int(f"{owner}.{name}", v)


def _positive(owner: str, **values: float) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{owner}.{name} must be a number, got {type(v).__name__} {v!r}")
        if not v > 0:
            raise ValueError(f"{owner}.{name} must be positive, got {v!r}")


def _divides(owner: str, what: str, total: int, part: int) -> None:
    if total % part != 0:
        raise ValueError(f"{owner}: {what} {total} is not divisible by {part}")


@dataclass
class TransformerConfig:
    """Width, depth, heads and MLP size of a transformer stack (shared by all encoders)."""

    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    dropout: float = 0.0

    @property
    def mlp_dim(self) -> int:
        return int(round(self.dim * self.mlp_ratio))

    def __post_init__(self) -> None:
        name = type(self).__name__
        _positive_ints(name, dim=self.dim, depth=self.depth, heads=self.heads)
        _positive(name, mlp_ratio=self.mlp_ratio, layer_norm_eps=self.layer_norm_eps)
        _divides(name, "dim", self.dim, self.heads)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ViTConfig(TransformerConfig):
    """Vision transformer: square images cut into patch_size x patch_size patches, plus a CLS token."""

    image_size: int = 32
    patch_size: int = 8
    in_channels: int = 3
    pool: str = "cls"  # "cls" or "mean" (over patch tokens)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints("ViTConfig", image_size=self.image_size, patch_size=self.patch_size,
                       in_channels=self.in_channels)
        _divides("ViTConfig", "image_size", self.image_size, self.patch_size)
        one_of("ViTConfig.pool", self.pool, ("cls", "mean"))


@dataclass
class TextConfig(TransformerConfig):
    """Text transformer over token ids (e.g. from WordPieceTokenizer), learned positions."""

    vocab_size: int = 30522  # BERT/MiniLM WordPiece vocabulary
    max_length: int = 32
    pad_token_id: int = 0
    pool: str = "cls"  # "cls" (first token, [CLS] for WordPiece) or "mean" (over real tokens)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints("TextConfig", vocab_size=self.vocab_size, max_length=self.max_length)
        one_of("TextConfig.pool", self.pool, ("cls", "mean"))


@dataclass
class AudioConfig(TransformerConfig):
    """AST-style audio transformer: log-mel spectrogram cut into (freq, time) patches, plus a CLS token.

    The waveform length fixes the number of frames: 1 + num_samples // hop_length (centred STFT).
    """

    sample_rate: int = 16000
    num_samples: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 32
    patch_freq: int = 8
    patch_time: int = 8
    db_mean: float = -40.0  # fixed normalisation of the log-mel in dB: (x - mean) / std
    db_std: float = 20.0

    @property
    def num_frames(self) -> int:
        return 1 + self.num_samples // self.hop_length

    @property
    def grid(self) -> tuple[int, int]:
        return self.n_mels // self.patch_freq, self.num_frames // self.patch_time

    @property
    def num_patches(self) -> int:
        f, t = self.grid
        return f * t

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints("AudioConfig", sample_rate=self.sample_rate, num_samples=self.num_samples, n_fft=self.n_fft,
                       hop_length=self.hop_length, n_mels=self.n_mels, patch_freq=self.patch_freq,
                       patch_time=self.patch_time)
        _positive("AudioConfig", db_std=self.db_std)
        _divides("AudioConfig", "n_mels", self.n_mels, self.patch_freq)
        if self.num_frames < self.patch_time:
            raise ValueError(f"AudioConfig: {self.num_frames} frames is fewer than patch_time {self.patch_time}")


@dataclass
class VideoConfig(TransformerConfig):
    """Factorised video encoder: a per-frame ViT (`frame`), then this temporal transformer over frames."""

    num_frames: int = 8
    frame: ViTConfig = field(default_factory=ViTConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints("VideoConfig", num_frames=self.num_frames)
        if self.frame.dim != self.dim:
            raise ValueError(
                f"VideoConfig: frame encoder width {self.frame.dim} must equal the temporal width {self.dim}")


@dataclass
class TubeletConfig(ViTConfig):
    """Tubelet ViT (ViViT-style): one token per tubelet of tubelet_frames x patch_size x patch_size pixels."""

    num_frames: int = 8
    tubelet_frames: int = 2

    @property
    def num_patches(self) -> int:
        return (self.num_frames // self.tubelet_frames) * self.grid**2

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints("TubeletConfig", num_frames=self.num_frames, tubelet_frames=self.tubelet_frames)
        _divides("TubeletConfig", "num_frames", self.num_frames, self.tubelet_frames)


@dataclass
class TimeSformerConfig(ViTConfig):
    """TimeSformer (divided space-time attention): each frame cut into patch_size x patch_size patches, one
    token each, plus a CLS token; every block attends over time, then over space (DividedSpaceTimeBlock)."""

    num_frames: int = 8

    @property
    def num_tokens(self) -> int:
        """1 + num_frames * num_patches (num_patches counts the patches of one frame)."""
        return 1 + self.num_frames * self.num_patches

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_ints("TimeSformerConfig", num_frames=self.num_frames)
