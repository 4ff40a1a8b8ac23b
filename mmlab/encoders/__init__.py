"""Modality encoders built from shared transformer blocks. Every encoder has the same API:
`forward(inputs)` returns tokens (B, N, D), `forward_with_attention(inputs)` an `EncoderOutput`
(tokens, per-layer attention), `pool(tokens)` and `pooled(inputs)` the pooled (B, D) feature.
`attention_rollout` reads attention through the layers (mmlab.encoders.attention_maps)."""
from mmlab.encoders.attention_maps import attention_rollout, divided_attention_dense
from mmlab.encoders.audio import AudioTransformer, log_mel_db
from mmlab.encoders.config import (
    AudioConfig,
    TextConfig,
    TimeSformerConfig,
    TransformerConfig,
    TubeletConfig,
    VideoConfig,
    ViTConfig,
)
from mmlab.encoders.layers import (
    MLP,
    CrossAttentionBlock,
    DividedSpaceTimeBlock,
    EncoderOutput,
    MultiHeadSelfAttention,
    TokenEncoder,
    Transformer,
    TransformerBlock,
    masked_mean,
)
from mmlab.encoders.text import TextTransformer
from mmlab.encoders.video import TimeSformer, TubeletTransformer, VideoTransformer
from mmlab.encoders.vision import VisionTransformer, vit_from_hf, vit_to_hf
from mmlab.encoders.waveform import WaveformFrontEnd

__all__ = [
    "MLP",
    "AudioConfig",
    "AudioTransformer",
    "CrossAttentionBlock",
    "DividedSpaceTimeBlock",
    "EncoderOutput",
    "MultiHeadSelfAttention",
    "TextConfig",
    "TextTransformer",
    "TimeSformer",
    "TimeSformerConfig",
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
    "WaveformFrontEnd",
    "attention_rollout",
    "divided_attention_dense",
    "log_mel_db",
    "masked_mean",
    "vit_from_hf",
    "vit_to_hf",
]
