"""Video preprocessing: choosing frames, per-frame patches, and space-time tubelets.

Videos are (T, C, H, W) or batched (B, T, C, H, W) float tensors.
"""
from __future__ import annotations

import torch

from mmlab.preprocess.image import patchify
from mmlab.validation import positive_int, require_tensor

STRATEGIES = ("uniform", "fps", "random")
PAD_MODES = ("error", "repeat_last")


def _check_video(video: torch.Tensor) -> None:
    if require_tensor("video", video).dim() not in (4, 5):
        raise ValueError(f"video must be (T, C, H, W) or (B, T, C, H, W), got shape {tuple(video.shape)}")
    if video.shape[-4] == 0:
        raise ValueError(f"video has no frames (shape {tuple(video.shape)})")


def frame_indices(num_available: int, num_frames: int, strategy: str = "uniform", fps: float | None = None,
                  target_fps: float | None = None, generator: torch.Generator | None = None,
                  pad: str = "error") -> torch.Tensor:
    """Indices (num_frames,) int64 into a video of `num_available` frames, in increasing order.

    - "uniform": cut the video into num_frames equal segments and take the middle frame of each.
    - "random": a random frame inside each segment (training-time augmentation; reproducible with `generator`).
    - "fps": resample from the video's `fps` to `target_fps` (<= fps), starting at frame 0, i.e. frames
      round(i * fps / target_fps): a fixed amount of real time between samples.
    A video with too few frames raises a ValueError with pad="error"; with pad="repeat_last" the
    missing samples repeat the last frame (uniform/random then use every frame once, in order).
    """
    t = positive_int("number of video frames", num_available)
    n = positive_int("num_frames", num_frames)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    if strategy == "fps":
        if fps is None or target_fps is None or fps <= 0 or target_fps <= 0:
            raise ValueError(f"strategy='fps' needs positive fps and target_fps, "
                             f"got fps={fps}, target_fps={target_fps}")
        if target_fps > fps:
            raise ValueError(f"target_fps={target_fps} is above the video's fps={fps}: sampling cannot add frames")
        step = fps / target_fps
        idx = torch.round(torch.arange(n, dtype=torch.float64) * step).long()
        if int(idx[-1]) >= t:
            if pad == "error":
                raise ValueError(f"video has {t} frames but {n} frames at {target_fps} fps from a {fps} fps video "
                                 f"need {int(idx[-1]) + 1}; sample fewer frames or pass pad='repeat_last'")
            idx = idx.clamp(max=t - 1)
        return idx
    if t < n:
        if pad == "error":
            raise ValueError(f"video has {t} frames but num_frames={n} were requested "
                             f"(strategy={strategy!r}); pass pad='repeat_last' to repeat the last frame")
        return torch.cat([torch.arange(t), torch.full((n - t,), t - 1)])
    starts = torch.arange(n, dtype=torch.float64) * t / n  # (n,) segment starts
    if strategy == "uniform":
        return torch.floor(starts + t / (2 * n)).long()
    lengths = torch.floor(starts + t / n).long() - torch.floor(starts).long()  # frames in each segment, >= 1
    offsets = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * lengths).long()
    return torch.floor(starts).long() + offsets


def sample_frames(video: torch.Tensor, num_frames: int, strategy: str = "uniform", fps: float | None = None,
                  target_fps: float | None = None, generator: torch.Generator | None = None,
                  pad: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
    """Pick num_frames frames: (T, C, H, W) -> (num_frames, C, H, W), or (B, T, ...) -> (B, num_frames, ...).

    Returns (frames, indices); a batch shares one set of indices. See `frame_indices` for the strategies.
    """
    _check_video(video)
    idx = frame_indices(video.shape[-4], num_frames, strategy, fps, target_fps, generator, pad)
    frames = video.index_select(video.dim() - 4, idx.to(video.device))
    return frames, idx


def frame_patchify(video: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Patches of every frame: (B, T, C, H, W) -> (B, T, N, C*p*p), N = (H/p)*(W/p)."""
    if require_tensor("video", video).dim() != 5:
        raise ValueError(f"frame_patchify expects (B, T, C, H, W), got shape {tuple(video.shape)}")
    b, t = video.shape[:2]
    patches = patchify(video.reshape(b * t, *video.shape[2:]), patch_size)  # (B*T, N, C*p*p)
    return patches.reshape(b, t, *patches.shape[1:])


def tubeletify(video: torch.Tensor, t: int = 2, p: int = 16) -> torch.Tensor:
    """Cut videos into t x p x p space-time tubelets: (B, T, C, H, W) -> (B, N, C*t*p*p).

    N = (T/t) * (H/p) * (W/p), ordered time-major then row-major; each tubelet is flattened in
    (C, t, p, p) order, so a linear layer on it equals nn.Conv3d(C, D, (t, p, p), stride=(t, p, p))
    applied to video.transpose(1, 2) (the (B, C, T, H, W) layout), flattened and transposed.
    """
    positive_int("t", t)
    positive_int("p", p)
    if require_tensor("video", video).dim() != 5:
        raise ValueError(f"tubeletify expects (B, T, C, H, W), got shape {tuple(video.shape)} "
                         "(use video[None] for one video)")
    b, frames, c, h, w = video.shape
    if frames % t or h % p or w % p:
        raise ValueError(f"video of {frames} frames of {h}x{w} is not divisible into tubelets of {t}x{p}x{p} "
                         "(sample a multiple of t frames and resize to a multiple of p)")
    x = video.reshape(b, frames // t, t, c, h // p, p, w // p, p)  # (B, nt, t, C, gh, p, gw, p)
    x = x.permute(0, 1, 4, 6, 3, 2, 5, 7)  # (B, nt, gh, gw, C, t, p, p)
    return x.reshape(b, (frames // t) * (h // p) * (w // p), c * t * p * p)  # (B, N, C*t*p*p)
