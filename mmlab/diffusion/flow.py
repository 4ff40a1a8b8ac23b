"""Flow matching on the straight path from noise to data (rectified flow; Liu et al., 2023; Lipman et al., 2023).

A data image x1 and a noise image x0 ~ N(0, I) are joined by the straight line x_t = t x1 + (1 - t) x0, t in [0, 1]
(t = 0 is pure noise, t = 1 the image). Its velocity dx_t/dt = x1 - x0 does not depend on t; a network v(x_t, t, c)
trained with the mean squared error to x1 - x0 at random t learns E[x1 - x0 | x_t, c], the velocity field whose ODE
dx/dt = v carries N(0, I) to the data distribution (given the caption c). Sampling integrates that ODE from t = 0
to t = 1 with a few Euler steps.

Classifier-free guidance (Ho & Salimans, 2022), written for velocities: v = v(x, t, none) + w (v(x, t, c) -
v(x, t, none)); w = 1 is the plain conditional model, w = 0 the unconditional one, w > 1 pushes samples towards what
distinguishes the caption (more faithful, less diverse).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from mmlab import validation

MAX_STEPS = 1000
MAX_GUIDANCE = 20.0

VelocityFn = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]  # (x, t, caption, drop) -> velocity


def noisy_images(images: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = t x1 + (1 - t) x0 for images x1 (B, C, H, W), noise x0 of the same shape, t (B,) in [0, 1]."""
    if noise.shape != images.shape or t.shape != images.shape[:1]:
        raise ValueError(f"noise must match images {tuple(images.shape)} and t be ({images.shape[0]},); got "
                         f"{tuple(noise.shape)} and {tuple(t.shape)}")
    t = t.to(images.dtype)[:, None, None, None]
    return t * images + (1 - t) * noise


def flow_matching_loss(velocity_fn: VelocityFn, images: Tensor, captions: Tensor, drop_prob: float = 0.1,
                       generator: torch.Generator | None = None) -> Tensor:
    """Mean squared error between v(x_t, t, c) and x1 - x0 at t ~ U(0, 1); each row's caption is replaced by the
    model's "no caption" embedding with probability `drop_prob` (what classifier-free guidance needs)."""
    validation.finite_float("drop_prob", drop_prob, 0.0, 1.0)
    b = images.shape[0]
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    t = torch.rand(b, generator=generator, device=images.device)
    drop = torch.rand(b, generator=generator, device=images.device) < drop_prob
    target = images - noise  # (B, C, H, W): the straight path's velocity
    return (velocity_fn(noisy_images(images, noise, t), t, captions, drop) - target).pow(2).mean()


def check_sampling(steps: int, guidance_scale: float) -> None:
    """A step count in [1, MAX_STEPS] and a finite guidance scale in [0, MAX_GUIDANCE], or a ValueError."""
    validation.int_in_range("steps", steps, 1, MAX_STEPS)
    validation.finite_float("guidance_scale", guidance_scale, 0.0, MAX_GUIDANCE)


def guided_velocity(velocity_fn: VelocityFn, x: Tensor, t: Tensor, captions: Tensor, guidance_scale: float) -> Tensor:
    """v_none + w (v_caption - v_none), both halves in one batched call (w = 1 needs only the conditional one,
    w = 0 only the unconditional one)."""
    b = x.shape[0]
    if guidance_scale == 1.0:
        return velocity_fn(x, t, captions, None)
    if guidance_scale == 0.0:
        return velocity_fn(x, t, captions, torch.ones(b, dtype=torch.bool, device=x.device))
    drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
    v = velocity_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([captions, captions]), drop)
    v_caption, v_none = v[:b], v[b:]
    return v_none + guidance_scale * (v_caption - v_none)


@torch.no_grad()
def euler_sample(velocity_fn: VelocityFn, captions: Tensor, shape: tuple[int, int, int], steps: int = 16,
                 guidance_scale: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Integrate dx/dt = guided velocity from x0 ~ N(0, I) at t = 0 to t = 1 in `steps` equal Euler steps.
    captions (B, cond_dim) -> x at t = 1 (B, *shape), in the data's units."""
    check_sampling(steps, guidance_scale)
    b = captions.shape[0]
    x = torch.randn((b, *shape), generator=generator, device=captions.device, dtype=captions.dtype)
    dt = 1.0 / steps
    for i in range(steps):
        t = torch.full((b,), i * dt, device=captions.device)
        x = x + dt * guided_velocity(velocity_fn, x, t, captions, guidance_scale)
    return x
