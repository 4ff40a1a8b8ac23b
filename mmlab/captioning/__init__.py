"""Caption decoders that read an image four ways, trained by teacher forcing and decoded with mmlab.generate:

- `CrossAttentionDecoder`: cross-attention into the image tokens in every layer (BLIP's captioner);
- `FlamingoDecoder`: the same through tanh-gated cross-attention, gates initialised at 0 (Flamingo);
- `PrefixDecoder`: the pooled image embedding mapped to a few prefix embeddings (ClipCap);
- `UnifiedDecoder`: image tokens, prompt and text in one sequence under a prefix-LM mask.

`decoder.step(images)` is a KV-cached `logits_fn` for `mmlab.generate`; `CaptionVocabulary` turns captions
into decoder ids and back."""
from mmlab.captioning.attention import (
    CausalSelfAttention,
    GatedMemoryCrossAttention,
    MemoryCrossAttention,
    prefix_lm_mask,
)
from mmlab.captioning.base import CaptionDecoder, DecoderContext
from mmlab.captioning.block import DecoderLayer
from mmlab.captioning.cache import KVCache
from mmlab.captioning.config import DecoderConfig
from mmlab.captioning.cross_attention import CrossAttentionDecoder
from mmlab.captioning.features import PrecomputedTokens
from mmlab.captioning.flamingo import FlamingoDecoder
from mmlab.captioning.prefix import PrefixDecoder
from mmlab.captioning.step import DecoderStep
from mmlab.captioning.teacher_forcing import teacher_forcing_loss
from mmlab.captioning.unified import UnifiedDecoder
from mmlab.captioning.vocabulary import CaptionVocabulary

DECODERS = {"cross_attention": CrossAttentionDecoder, "flamingo": FlamingoDecoder, "prefix": PrefixDecoder,
            "unified": UnifiedDecoder}

__all__ = [
    "DECODERS",
    "CaptionDecoder",
    "CaptionVocabulary",
    "CausalSelfAttention",
    "CrossAttentionDecoder",
    "DecoderConfig",
    "DecoderContext",
    "DecoderLayer",
    "DecoderStep",
    "FlamingoDecoder",
    "GatedMemoryCrossAttention",
    "KVCache",
    "MemoryCrossAttention",
    "PrecomputedTokens",
    "PrefixDecoder",
    "UnifiedDecoder",
    "prefix_lm_mask",
    "teacher_forcing_loss",
]
