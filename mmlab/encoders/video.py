"""Video encoders, named as in ViViT (Arnab et al., 2021) and TimeSformer (Bertasius et al., 2021):

- `VideoTransformer`: ViViT's *factorised encoder* (model 2): a spatial transformer (a ViT) encodes each frame
  on its own, then a temporal transformer runs over the F frame tokens;
- `TubeletTransformer`: ViViT's tubelet embedding with *joint space-time attention* (model 1): every token
  attends to every other token of the clip;
- `TimeSformer`: *divided space-time attention*: in every block, attention over time at each patch
  position, then attention over space within each frame, then the MLP.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmlab.encoders.attention_maps import divided_attention_dense
from mmlab.encoders.config import TimeSformerConfig, TubeletConfig, VideoConfig
from mmlab.encoders.layers import (
    DividedSpaceTimeBlock,
    EncoderOutput,
    TokenEncoder,
    Transformer,
    add_cls_and_positions,
    cls_and_positions,
    position_embedding,
)
from mmlab.encoders.vision import VisionTransformer
from mmlab.validation import floating_batch


class VideoTransformer(TokenEncoder):
    """ViViT's factorised encoder (model 2): video (B, F, C, H, W) -> tokens (B, 1 + F, D).

    A spatial transformer (`frame_encoder`, a ViT) encodes each frame on its own into one pooled token; a
    temporal transformer (`temporal`) then runs over [CLS] + the F frame tokens + time embeddings."""

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
    """ViViT's joint space-time model (model 1) with tubelet embedding: video (B, F, C, H, W) -> tokens
    (B, 1 + N, D), one token per (t x p x p) tubelet (Conv3d embedding), all N + 1 attending to each other."""

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


class TimeSformer(TokenEncoder):
    """Divided space-time attention (TimeSformer, Bertasius et al., 2021): video (B, F, C, H, W) -> tokens
    (B, 1 + F*P, D): [CLS] + one token per patch per frame, frame-major (patch p of frame t at 1 + t*P + p).

    Patches are embedded frame by frame (Conv2d), with spatial positions (`pos_embed`, shared by the frames,
    CLS included) and time embeddings (`time_embed`, one per frame); then `depth` DividedSpaceTimeBlocks and a
    final LayerNorm. `forward_with_attention` returns 2 * depth dense maps (B, heads, N, N), in the order
    temporal_1, spatial_1, temporal_2, ... (see `divided_attention_dense`)."""

    def __init__(self, config: TimeSformerConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.patch_embed = nn.Conv2d(c.in_channels, c.dim, c.patch_size, stride=c.patch_size)
        self.cls_token, self.pos_embed = cls_and_positions(c.num_patches, c.dim)
        self.time_embed = position_embedding(c.num_frames, c.dim)
        self.blocks = nn.ModuleList(
            DividedSpaceTimeBlock(c.dim, c.heads, c.mlp_dim, c.num_frames, c.qkv_bias, c.layer_norm_eps, c.dropout)
            for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)

    def embed(self, video: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, 1 + F*P, D): CLS + patches + spatial positions + time embeddings."""
        c = self.config
        floating_batch("video", video, (c.num_frames, c.in_channels, c.image_size, c.image_size))
        b, f = video.shape[:2]
        x = self.patch_embed(video.flatten(0, 1)).flatten(2).transpose(1, 2)  # (B*F, P, D)
        x = x.view(b, f, -1, self.dim) + self.pos_embed[:, None, 1:] + self.time_embed[:, :, None]  # (B, F, P, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)  # (B, 1, D)
        return torch.cat([cls, x.flatten(1, 2)], dim=1)  # (B, 1 + F*P, D)

    def forward(self, video: Tensor) -> Tensor:
        """video -> tokens (B, 1 + F*P, D)."""
        x = self.embed(video)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_with_attention(self, video: Tensor) -> EncoderOutput:
        """video -> tokens (B, 1 + F*P, D) and 2 * depth dense maps (B, heads, N, N): temporal, spatial, ..."""
        x, maps = self.embed(video), []
        for block in self.blocks:
            x, (w_t, w_s) = block.forward_with_attention(x)
            maps.extend(divided_attention_dense(w_t, w_s, self.config.num_frames))
        return EncoderOutput(self.norm(x), tuple(maps))
