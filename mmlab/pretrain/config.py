"""Configurations of the pretraining models: dataclasses, validated on creation, kept apart from the modules."""
from __future__ import annotations

from dataclasses import dataclass

from mmlab import validation
from mmlab.encoders.config import TransformerConfig


@dataclass
class FusionEncoderConfig(TransformerConfig):
    """ALBEF/BLIP-style fusion: `depth` text layers, each self-attention, cross-attention into the image tokens
    (of width `image_dim`, default `dim`), then the feed-forward network."""

    image_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_dim is not None:
            validation.positive_int("FusionEncoderConfig.image_dim", self.image_dim)


@dataclass
class CoAttentionConfig(TransformerConfig):
    """ViLBERT/LXMERT-style co-attention: two streams of width `dim`; each of `depth` layers lets text attend to
    the image and the image to the text (both from the layer's inputs), then runs self-attention in each stream."""


@dataclass
class MultiwayConfig(TransformerConfig):
    """A unified (single-stream) transformer over image patches and text tokens with shared self-attention and one
    feed-forward expert per modality (VLMo, Bao et al., 2022; BEiT-3, Wang et al., 2023). In the top
    `vl_layers` layers a joint image-text input goes through a third, vision-language expert instead."""

    image_size: int = 32
    patch_size: int = 8
    in_channels: int = 3
    vocab_size: int = 30522
    max_length: int = 32
    pad_token_id: int = 0
    vl_layers: int = 0

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def __post_init__(self) -> None:
        super().__post_init__()
        v, name = validation, "MultiwayConfig"
        for field in ("image_size", "patch_size", "in_channels", "vocab_size", "max_length"):
            v.positive_int(f"{name}.{field}", getattr(self, field))
        if self.image_size % self.patch_size:
            raise ValueError(f"{name}: image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        v.int_in_range(f"{name}.pad_token_id", self.pad_token_id, 0, self.vocab_size - 1)
        v.int_in_range(f"{name}.vl_layers", self.vl_layers, 0, self.depth)


@dataclass
class MAEConfig:
    """Masked autoencoder (He et al., 2022): `mask_ratio` of the patches removed (0.75 in the paper), a light
    decoder of width `decoder_dim` and `decoder_depth` blocks, MSE on the removed patches of per-patch
    normalised pixels when `norm_pix`."""

    mask_ratio: float = 0.75
    decoder_dim: int = 32
    decoder_depth: int = 1
    decoder_heads: int = 4
    decoder_mlp_ratio: float = 4.0
    norm_pix: bool = True

    def __post_init__(self) -> None:
        v, name = validation, "MAEConfig"
        v.finite_float(f"{name}.mask_ratio", self.mask_ratio, 0.0, 1.0, high_open=True)
        for field in ("decoder_dim", "decoder_depth", "decoder_heads"):
            v.positive_int(f"{name}.{field}", getattr(self, field))
        v.finite_float(f"{name}.decoder_mlp_ratio", self.decoder_mlp_ratio, 0.0, low_open=True)
        v.boolean(f"{name}.norm_pix", self.norm_pix)
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"{name}: decoder_dim {self.decoder_dim} is not divisible by {self.decoder_heads} heads")
        if self.decoder_dim % 4:
            raise ValueError(f"{name}: decoder_dim must be a multiple of 4 (2-D sin-cos positions), "
                             f"got {self.decoder_dim}")
