"""Modality encoders built from shared transformer blocks. Every encoder has the same API:
`forward(inputs)` returns tokens (B, N, D), `forward_with_attention(inputs)` an `EncoderOutput`
(tokens, per-layer attention), `pool(tokens)` and `pooled(inputs)` the pooled (B, D) feature."""
from mmlab.encoders.audio import AudioTransformer, log_mel_db
from mmlab.encoders.config import AudioConfig, TextConfig, TransformerConfig, TubeletConfig, VideoConfig, ViTConfig
from mmlab.encoders.layers import (
    MLP,
    CrossAttentionBlock,
    EncoderOutput,
    MultiHeadSelfAttention,
    TokenEncoder,
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
    "EncoderOutput",
    "MultiHeadSelfAttention",
    "TextConfig",
    "TextTransformer",
    "TokenEncoder",
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
