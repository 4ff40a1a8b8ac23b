"""Video encoders: factorised (per-frame ViT, then a temporal transformer) and tubelet ViT (ViViT-style)."""
from __future__ import annotations

from torch import Tensor, nn

from mmlab.encoders.config import TubeletConfig, VideoConfig
from mmlab.encoders.layers import TokenEncoder, Transformer, add_cls_and_positions, cls_and_positions
from mmlab.encoders.vision import VisionTransformer
from mmlab.validation import floating_batch


class VideoTransformer(TokenEncoder):
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

    def stack(self) -> Transformer:
        return self.temporal


class TubeletTransformer(TokenEncoder):
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
