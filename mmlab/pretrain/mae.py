"""Masked autoencoder (He et al., 2022): the ViT encoder sees only the visible patches, a light decoder fills the
sequence with a learned mask token, and the loss is the MSE on the removed patches of per-patch normalised pixels.

Following the paper (section 3): the encoder embeds all patches and adds its positions, drops 75% of them
(`random_masking`), prepends its CLS token and runs its transformer on what is left; the decoder projects to its
own width, appends one shared mask token per removed patch, unshuffles (`ids_restore`), adds fixed 2-D sin-cos
positions and predicts each patch's C*p*p pixels. The encoder is the course's `VisionTransformer`, so after
pretraining it is used as is (all patches visible) for probing or fine-tuning.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.encoders.layers import Transformer
from mmlab.encoders.vision import VisionTransformer
from mmlab.preprocess.image import patchify, sincos_pos_embed_2d, unpatchify
from mmlab.pretrain.config import MAEConfig
from mmlab.pretrain.masking import random_masking, restore


def normalized_patches(target: Tensor, eps: float = 1e-6) -> Tensor:
    """MAE's per-patch normalisation over the last dim P: (t - mean) / sqrt(var + eps), var unbiased (torch's
    default, as the reference implementation)."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def mae_loss(pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """Mean over the removed patches (`mask` True) of the mean over P of (pred - target)**2.

    pred, target (B, N, P); mask (B, N) bool (or 0/1 integers or floats), True/1 = removed. With `norm_pix`
    each target patch is first normalised by its own mean and unbiased variance (eps 1e-6)."""
    validation.require_tensor("pred", pred)
    validation.require_tensor("target", target)
    validation.require_tensor("mask", mask)
    if pred.ndim != 3:
        raise ValueError(f"pred must be (B, N, P), got shape {tuple(pred.shape)}")
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"target must have the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise TypeError(f"pred and target must be floating point, got {pred.dtype} and {target.dtype}")
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"mask must be (B, N) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    if mask.is_complex():
        raise TypeError(f"mask must be bool or 0/1 numbers, got {mask.dtype}")
    validation.boolean("norm_pix", norm_pix)
    if norm_pix and pred.shape[2] < 2:
        raise ValueError(f"norm_pix needs at least 2 values per patch for the unbiased variance, got P = "
                         f"{pred.shape[2]}")
    if mask.dtype != torch.bool:
        if validation.on_host(mask) and not ((mask == 0) | (mask == 1)).all():
            raise ValueError("mask must hold only 0 and 1 (1 = removed patch)")
        mask = mask != 0
    if validation.on_host(mask) and not mask.any():
        raise ValueError("mask removes no patch: the loss is a mean over the removed patches and needs one")
    mask = mask.to(pred.device)
    if norm_pix:
        target = normalized_patches(target)
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    return per_patch[mask].mean()  # selected, so a non-finite visible patch cannot leak in


class MaskedAutoencoder(nn.Module):
    """MAE around a `VisionTransformer` encoder: images (B, C, H, W) -> {"loss", "pred" (B, N, P), "mask" (B, N)}."""

    def __init__(self, encoder: VisionTransformer, config: MAEConfig | None = None):
        super().__init__()
        if not isinstance(encoder, VisionTransformer):
            raise TypeError(f"encoder must be a VisionTransformer, got {type(encoder).__name__}")
        config = MAEConfig() if config is None else config
        if not isinstance(config, MAEConfig):
            raise TypeError(f"config must be a MAEConfig, got {type(config).__name__}")
        self.encoder, self.config = encoder, config
        v, c = encoder.config, config
        self.patch_size, self.image_size = v.patch_size, v.image_size
        self.decoder_embed = nn.Linear(v.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        pos = sincos_pos_embed_2d(v.grid, v.grid, c.decoder_dim)  # (N, Dd), fixed as in MAE
        self.register_buffer("decoder_pos_embed", torch.cat([torch.zeros(1, c.decoder_dim), pos])[None],
                             persistent=False)  # (1, 1 + N, Dd), a zero row for the CLS token
        self.decoder = Transformer(c.decoder_dim, c.decoder_depth, c.decoder_heads,
                                   int(round(c.decoder_dim * c.decoder_mlp_ratio)))
        self.decoder_pred = nn.Linear(c.decoder_dim, v.patch_size ** 2 * v.in_channels)

    def encode_visible(self, images: Tensor, generator: torch.Generator | None = None
                       ) -> tuple[Tensor, Tensor, Tensor]:
        """(latent (B, 1 + keep, D), mask (B, N), ids_restore (B, N)): the encoder on the visible patches only."""
        e = self.encoder
        validation.floating_batch("images", images, (e.config.in_channels, self.image_size, self.image_size))
        x = e.patch_embed(images).flatten(2).transpose(1, 2) + e.pos_embed[:, 1:]  # (B, N, D)
        visible, mask, ids_restore = random_masking(x, self.config.mask_ratio, generator)  # (B, keep, D)
        cls = (e.cls_token + e.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # (B, 1, D)
        return e.stack()(torch.cat([cls, visible], dim=1)), mask, ids_restore  # (B, 1 + keep, D)

    def decode(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """(B, 1 + keep, D) -> predicted pixels of every patch (B, N, C*p*p)."""
        x = self.decoder_embed(latent)  # (B, 1 + keep, Dd)
        b, n = ids_restore.shape
        fill = self.mask_token.expand(b, n - (x.shape[1] - 1), -1)  # (B, N - keep, Dd)
        x = torch.cat([x[:, :1], restore(x[:, 1:], fill, ids_restore)], dim=1)  # (B, 1 + N, Dd), patch order
        x = self.decoder(x + self.decoder_pos_embed)
        return self.decoder_pred(x[:, 1:])  # (B, N, C*p*p)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        latent, mask, ids_restore = self.encode_visible(images, generator)
        pred = self.decode(latent, ids_restore)
        target = patchify(images, self.patch_size)  # (B, N, C*p*p)
        return {"loss": mae_loss(pred, target, mask, self.config.norm_pix), "pred": pred, "mask": mask}

    @torch.no_grad()
    def reconstruct(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Pictures for display, each (B, C, H, W): "masked" (removed patches grey), "prediction" (every patch as
        predicted; with norm_pix de-normalised by each true patch's own mean and std, as MAE's demo does) and
        "pasted" (the visible patches from the input, the prediction in the removed ones)."""
        out = self.forward(images, generator)
        target = patchify(images, self.patch_size)
        pred = out["pred"]
        if self.config.norm_pix:
            pred = pred * (target.var(-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(-1, keepdim=True)
        removed = out["mask"][..., None]  # (B, N, 1)
        grey = torch.full_like(target, 0.5)
        size = self.image_size
        return {"masked": unpatchify(torch.where(removed, grey, target), self.patch_size, size),
                "prediction": unpatchify(pred.clamp(0, 1), self.patch_size, size),
                "pasted": unpatchify(torch.where(removed, pred.clamp(0, 1), target), self.patch_size, size),
                "mask": out["mask"]}
