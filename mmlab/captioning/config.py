"""The decoders' configuration: a dataclass, validated on creation, kept apart from the modules."""
from __future__ import annotations

from dataclasses import dataclass

from mmlab.encoders.config import TransformerConfig
from mmlab.validation import non_negative_int, positive_int


@dataclass
class DecoderConfig(TransformerConfig):
    """A text decoder over `vocab_size` token ids, at most `max_length` text tokens (prompt and prefix apart).

    `pad_id` marks padding (excluded from the loss). `prefix_length`: the number of prefix embeddings the
    ClipCap mapping network makes (PrefixDecoder only). `max_prompt_length`: the longest prompt (a question) the
    UnifiedDecoder reads in its prefix."""

    vocab_size: int = 128
    max_length: int = 32
    pad_id: int = 0
    prefix_length: int = 4
    max_prompt_length: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vocab_size", "max_length", "prefix_length", "max_prompt_length"):
            positive_int(f"DecoderConfig.{name}", getattr(self, name))
        non_negative_int("DecoderConfig.pad_id", self.pad_id)
        if self.pad_id >= self.vocab_size:
            raise ValueError(f"DecoderConfig.pad_id {self.pad_id} must be < vocab_size {self.vocab_size}")
