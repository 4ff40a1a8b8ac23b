"""Video encoders: factorised (per-frame ViT, then a temporal transformer) and tubelet ViT (ViViT-style)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.encoders.config import TubeletConfig, VideoConfig
from mmlab.encoders.layers import Transformer
from mmlab.encoders.vision import VisionTransformer


def check_video(video: Tensor, frames: int, channels: int, size: int) -> None:
    """Raise a clear error unless video is a floating (B, frames, channels, size, size) tensor."""
    want = (frames, channels, size, size)
    if not isinstance(video, Tensor) or video.ndim != 5 or tuple(video.shape[1:]) != want:
        raise ValueError(f"video must have shape (B, {frames}, {channels}, {size}, {size}), "
                         f"got {tuple(getattr(video, 'shape', ()))}")
    if not video.is_floating_point():
        raise TypeError(f"video must be a floating tensor, got {video.dtype}")


class VideoTransformer(nn.Module):
    """video (B, F, C, H, W) -> tokens (B, 1 + F, D): [CLS] + one token per frame (its ViT pooled feature)."""

    def __init__(self, config: VideoConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.frame_encoder = VisionTransformer(c.frame)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.time_embed = nn.Parameter(torch.randn(1, 1 + c.num_frames, c.dim) * 0.02)
        self.temporal = Transformer(c.dim, c.depth, c.heads, c.mlp_dim, c.qkv_bias, c.layer_norm_eps, c.dropout)

    def frame_features(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, F, D): each frame encoded on its own."""
        f = self.config.frame
        check_video(video, self.config.num_frames, f.in_channels, f.image_size)
        b, t = video.shape[:2]
        return self.frame_encoder.pooled(video.flatten(0, 1)).view(b, t, -1)  # (B, F, D)

    def forward(self, video: Tensor, return_attention: bool = False):
        """(B, F, C, H, W) -> (B, 1 + F, D)."""
        x = self.frame_features(video)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.time_embed  # (B, 1 + F, D)
        return self.temporal(x, return_attention=return_attention)

    def pooled(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, D): the temporal CLS token."""
        return self(video)[:, 0]


class TubeletTransformer(nn.Module):
    """video (B, F, C, H, W) -> tokens (B, 1 + N, D), one token per (t x p x p) tubelet (Conv3d embedding)."""

    def __init__(self, config: TubeletConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        kernel = (c.tubelet_frames, c.patch_size, c.patch_size)
        self.tubelet_embed = nn.Conv3d(c.in_channels, c.dim, kernel, stride=kernel)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + c.num_patches, c.dim) * 0.02)
        self.transformer = Transformer(c.dim, c.depth, c.heads, c.mlp_dim, c.qkv_bias, c.layer_norm_eps, c.dropout)

    def forward(self, video: Tensor, return_attention: bool = False):
        """(B, F, C, H, W) -> (B, 1 + N, D), tubelets ordered time-major then row-major."""
        c = self.config
        check_video(video, c.num_frames, c.in_channels, c.image_size)
        x = self.tubelet_embed(video.transpose(1, 2))  # (B, D, F/t, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, 1 + N, D)
        return self.transformer(x, return_attention=return_attention)

    def pool(self, tokens: Tensor) -> Tensor:
        """(B, 1 + N, D) -> (B, D): the CLS token, or the mean of the tubelet tokens."""
        return tokens[:, 0] if self.config.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def pooled(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, D)."""
        return self.pool(self(video))
