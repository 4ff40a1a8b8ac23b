"""Video encoders: factorised (per-frame ViT, then a temporal transformer) and tubelet ViT (ViViT-style)."""
from __future__ import annotations

from torch import Tensor, nn

from mmlab.encoders.config import TubeletConfig, VideoConfig
from mmlab.encoders.layers import (
    EncoderOutput,
    Transformer,
    add_cls_and_positions,
    cls_and_positions,
    cls_or_mean,
)
from mmlab.encoders.vision import VisionTransformer
from mmlab.validation import floating_batch


class VideoTransformer(nn.Module):
    """video (B, F, C, H, W) -> tokens (B, 1 + F, D): [CLS] + one token per frame (its ViT pooled feature)."""

    def __init__(self, config: VideoConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.frame_encoder = VisionTransformer(c.frame)
        self.cls_token, self.time_embed = cls_and_positions(c.num_frames, c.dim)
        self.temporal = Transformer.from_config(c)

    def frame_features(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, F, D): each frame encoded on its own."""
        f = self.config.frame
        floating_batch("video", video, (self.config.num_frames, f.in_channels, f.image_size, f.image_size))
        b, t = video.shape[:2]
        return self.frame_encoder.pooled(video.flatten(0, 1)).view(b, t, -1)  # (B, F, D)

    def embed(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, 1 + F, D): CLS + frame features + time embeddings."""
        return add_cls_and_positions(self.frame_features(video), self.cls_token, self.time_embed)

    def forward(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, 1 + F, D)."""
        return self.temporal(self.embed(video))

    def forward_with_attention(self, video: Tensor) -> EncoderOutput:
        """(B, F, C, H, W) -> tokens (B, 1 + F, D) and the temporal layers' attention (B, heads, 1 + F, 1 + F)."""
        return self.temporal.forward_with_attention(self.embed(video))

    def pool(self, tokens: Tensor) -> Tensor:
        """(B, 1 + F, D) -> (B, D): the temporal CLS token."""
        return tokens[:, 0]

    def pooled(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, D)."""
        return self.pool(self(video))


class TubeletTransformer(nn.Module):
    """video (B, F, C, H, W) -> tokens (B, 1 + N, D), one token per (t x p x p) tubelet (Conv3d embedding)."""

    def __init__(self, config: TubeletConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        kernel = (c.tubelet_frames, c.patch_size, c.patch_size)
        self.tubelet_embed = nn.Conv3d(c.in_channels, c.dim, kernel, stride=kernel)
        self.cls_token, self.pos_embed = cls_and_positions(c.num_patches, c.dim)
        self.transformer = Transformer.from_config(c)

    def embed(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, 1 + N, D), tubelets ordered time-major then row-major."""
        c = self.config
        floating_batch("video", video, (c.num_frames, c.in_channels, c.image_size, c.image_size))
        x = self.tubelet_embed(video.transpose(1, 2))  # (B, D, F/t, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        return add_cls_and_positions(x, self.cls_token, self.pos_embed)  # (B, 1 + N, D)

    def forward(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, 1 + N, D)."""
        return self.transformer(self.embed(video))

    def forward_with_attention(self, video: Tensor) -> EncoderOutput:
        """(B, F, C, H, W) -> tokens (B, 1 + N, D) and per-layer attention (B, heads, 1 + N, 1 + N)."""
        return self.transformer.forward_with_attention(self.embed(video))

    def pool(self, tokens: Tensor) -> Tensor:
        """(B, 1 + N, D) -> (B, D): the CLS token, or the mean of the tubelet tokens."""
        return cls_or_mean(tokens, self.config.pool)

    def pooled(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, D)."""
        return self.pool(self(video))
