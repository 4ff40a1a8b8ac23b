"""Modality encoders built from shared transformer blocks; every forward returns tokens (B, N, D)
and `pooled(...)` returns (B, D)."""
from mmlab.encoders.audio import AudioTransformer, log_mel_db
from mmlab.encoders.config import AudioConfig, TextConfig, TransformerConfig, TubeletConfig, VideoConfig, ViTConfig
from mmlab.encoders.layers import (
    MLP,
    CrossAttentionBlock,
    MultiHeadSelfAttention,
    Transformer,
    TransformerBlock,
    masked_mean,
)
from mmlab.encoders.text import TextTransformer
from mmlab.encoders.video import TubeletTransformer, VideoTransformer
from mmlab.encoders.vision import VisionTransformer, vit_from_hf, vit_to_hf

__all__ = [
    "MLP",
    "AudioConfig",
    "AudioTransformer",
    "CrossAttentionBlock",
    "MultiHeadSelfAttention",
    "TextConfig",
    "TextTransformer",
    "Transformer",
    "TransformerBlock",
    "TransformerConfig",
    "TubeletConfig",
    "TubeletTransformer",
    "VideoConfig",
    "VideoTransformer",
    "ViTConfig",
    "VisionTransformer",
    "log_mel_db",
    "masked_mean",
    "vit_from_hf",
    "vit_to_hf",
]
