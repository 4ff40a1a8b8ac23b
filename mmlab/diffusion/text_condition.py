"""Caption embeddings from the course's pretrained text encoder: all-MiniLM-L6-v2 (bundled, offline), mean-pooled
over its tokens and L2-normalised as its sentence-transformers configuration does (384 numbers per caption).

The encoder stays frozen: a caption's embedding never changes, so each distinct caption is encoded once and cached.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mmlab import validation

EMBED_DIM = 384


class CaptionEmbedder:
    """`embedder(texts)` -> (B, 384) float32 unit vectors; the model loads on the first call."""

    def __init__(self, batch_size: int = 256):
        self.batch_size = validation.positive_int("batch_size", batch_size)
        self._cache: dict[str, Tensor] = {}
        self._model = self._tokenizer = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        from mmlab.preprocess.text import minilm_path

        path = minilm_path()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> Tensor:
        if self._model is None:
            self._load()
        tokens = self._tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden = self._model(**tokens).last_hidden_state  # (B, T, 384)
        mask = tokens["attention_mask"][..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # mean over real tokens
        return torch.nn.functional.normalize(pooled, dim=1)

    def __call__(self, texts: Sequence[str]) -> Tensor:
        texts = validation.str_list("texts", texts, single=False)
        if any(not t.strip() for t in texts):
            raise ValueError("texts holds an empty caption; every prompt needs words")
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for i in range(0, len(new), self.batch_size):
            chunk = new[i:i + self.batch_size]
            self._cache.update(zip(chunk, self._encode(chunk)))
        return torch.stack([self._cache[t] for t in texts])
