"""CLIP-style dual (or tri-) encoder: modality towers, linear projections into a joint space, a learnable
temperature, and the contrastive loss (InfoNCE as in CLIP, or the sigmoid loss of SigLIP)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmlab import kernels, validation


class LearnableTemperature(nn.Module):
    """The logit scale s = exp(t), t learned; starts at 1/0.07 and is clamped so s <= max_scale = 100
    (Radford et al., 2021, CLIP, section 2.5)."""

    def __init__(self, init_scale: float = 1 / 0.07, max_scale: float = 100.0):
        super().__init__()
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be positive and finite, got {init_scale}")
        if not (math.isfinite(max_scale) and max_scale >= init_scale):
            raise ValueError(f"max_scale must be finite and >= init_scale {init_scale}, got {max_scale}")
        self.max_log_scale = math.log(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(self) -> Tensor:
        """The current scale, exp(min(t, log max_scale)) (a 0-d tensor)."""
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clip the stored parameter too (CLIP clips it after each step), so it cannot drift above the cap."""
        self.log_scale.clamp_(max=self.max_log_scale)

    def extra_repr(self) -> str:
        return f"scale={float(self().detach()):.3f}, max_scale={math.exp(self.max_log_scale):.1f}"


def clamp_logit_scale(step: int, model: nn.Module, history: dict) -> None:
    """A `mmlab.train.fit` callback: clip every LearnableTemperature in `model` after each step, as CLIP does."""
    for module in model.modules():
        if isinstance(module, LearnableTemperature):
            module.clamp_()


def contrastive_loss(kind: str, a: Tensor, b: Tensor, logit_scale: Tensor, logit_bias: Tensor | None = None,
                     positive_mask: Tensor | None = None, backend: str = "auto") -> Tensor:
    """InfoNCE or SigLIP loss on (B, D) features via mmlab.kernels (Triton on CUDA, reference elsewhere).

    Shapes, finiteness and a positive logit_scale are checked by the losses themselves."""
    if kind == "info_nce":
        return kernels.info_nce(a, b, logit_scale, positive_mask=positive_mask, backend=backend)
    if kind == "siglip":
        if positive_mask is not None:
            raise ValueError("siglip_loss takes no positive_mask")
        return kernels.siglip_loss(a, b, logit_scale, logit_bias, backend=backend)
    raise ValueError(f"unknown loss {kind!r}; expected 'info_nce' or 'siglip'")


class DualEncoder(nn.Module):
    """Image and text towers (and optionally audio) projected into one L2-normalised embed_dim space.

    A tower is any module with `pooled(...) -> (B, width)` (else its forward must return (B, width));
    its width is read from `tower.dim` unless given (`text_dim=` etc.). `nn.Identity()` with an explicit
    width makes a tower of precomputed features (e.g. a frozen MiniLM for LiT).
    loss: "info_nce" (CLIP; scale starts at 1/0.07) or "siglip" (scale starts at 10, bias at -10; Zhai et al., 2023).
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, embed_dim: int,
                 audio_encoder: nn.Module | None = None, image_dim: int | None = None, text_dim: int | None = None,
                 audio_dim: int | None = None, loss: str = "info_nce"):
        super().__init__()
        if loss not in ("info_nce", "siglip"):
            raise ValueError(f"loss must be 'info_nce' or 'siglip', got {loss!r}")
        if not isinstance(embed_dim, int) or embed_dim <= 0:
            raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
        self.loss_kind, self.embed_dim = loss, embed_dim
        self.image_encoder, self.text_encoder, self.audio_encoder = image_encoder, text_encoder, audio_encoder
        self.image_proj = nn.Linear(_width(image_encoder, image_dim, "image"), embed_dim, bias=False)
        self.text_proj = nn.Linear(_width(text_encoder, text_dim, "text"), embed_dim, bias=False)
        self.audio_proj = (nn.Linear(_width(audio_encoder, audio_dim, "audio"), embed_dim, bias=False)
                           if audio_encoder is not None else None)
        if loss == "info_nce":
            self.logit_scale = LearnableTemperature(1 / 0.07)
            self.logit_bias = None
        else:
            self.logit_scale = LearnableTemperature(10.0)
            self.logit_bias = nn.Parameter(torch.tensor(-10.0))

    def _encode(self, tower: nn.Module, proj: nn.Linear, inputs: Any, name: str) -> Tensor:
        if isinstance(inputs, Mapping):
            h = tower.pooled(**inputs) if hasattr(tower, "pooled") else tower(**inputs)
        else:
            h = tower.pooled(inputs) if hasattr(tower, "pooled") else tower(inputs)
        if h.ndim != 2 or h.shape[1] != proj.in_features:
            raise ValueError(f"{name} tower gave shape {tuple(h.shape)}; expected (B, {proj.in_features})")
        z = proj(h)  # (B, embed_dim)
        validation.features(f"{name} embeddings", z)
        return nn.functional.normalize(z, dim=-1)

    def encode_image(self, images: Any) -> Tensor:
        """-> (B, embed_dim), unit norm."""
        return self._encode(self.image_encoder, self.image_proj, images, "image")

    def encode_text(self, texts: Any) -> Tensor:
        """texts: token ids, a dict(input_ids=..., attention_mask=...), or precomputed features -> (B, embed_dim)."""
        return self._encode(self.text_encoder, self.text_proj, texts, "text")

    def encode_audio(self, audio: Any) -> Tensor:
        """-> (B, embed_dim), unit norm. Needs an audio tower."""
        if self.audio_encoder is None:
            raise RuntimeError("this DualEncoder has no audio tower; pass audio_encoder=... to build one")
        return self._encode(self.audio_encoder, self.audio_proj, audio, "audio")

    def forward(self, images: Any, texts: Any) -> dict[str, Tensor]:
        """-> {"image": (B, E), "text": (B, E), "logit_scale": scalar[, "logit_bias": scalar]}."""
        out = {"image": self.encode_image(images), "text": self.encode_text(texts), "logit_scale": self.logit_scale()}
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        return out

    def loss(self, a: Tensor, b: Tensor, positive_mask: Tensor | None = None, backend: str = "auto") -> Tensor:
        """This model's contrastive loss between two batches of normalised features (B, E)."""
        return contrastive_loss(self.loss_kind, a, b, self.logit_scale(), self.logit_bias, positive_mask, backend)

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """Scaled cosine similarities (logits) s * a @ b.T: (Na, E), (Nb, E) -> (Na, Nb)."""
        return self.logit_scale() * a @ b.T


def _width(tower: nn.Module | None, given: int | None, name: str) -> int:
    if given is not None:
        if not isinstance(given, int) or given <= 0:
            raise ValueError(f"{name}_dim must be a positive int, got {given!r}")
        return given
    width = getattr(tower, "dim", None)
    if not isinstance(width, int):
        raise ValueError(f"cannot tell the width of the {name} tower ({type(tower).__name__} has no int .dim); "
                         f"pass {name}_dim=...")
    return width
