"""Launch helpers shared by the tiled contrastive losses: input checks, block sizes, kernel calls."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_empty = torch.empty  # every kernel output is allocated here (tests poison it with NaN)


@dataclass(frozen=True)
class Blocks:
    """Tile sizes: BLOCK_M rows of `a` per program, BLOCK_N rows of `b` per step, BLOCK_D-wide dot
    slices, BLOCK_DG-wide gradient chunks (backward recomputes the tiles once per chunk). Powers of 2, >= 16."""
    m: int = 64
    n: int = 64
    d: int = 64
    dg: int = 128
    num_warps: int = 4

    def __post_init__(self) -> None:
        for name in ("m", "n", "d", "dg"):
            v = getattr(self, name)
            if v < 16 or v & (v - 1):
                raise ValueError(f"Blocks.{name} must be a power of two >= 16, got {v}")


# Defaults measured on an H100 at B = 32768, d in {512, 768}, bf16 (benchmarks/tune_contrastive_blocks.py,
# results in benchmarks/results/contrastive_blocks_H100.md): large square tiles for the forward; for the
# backward, wide gradient chunks (fewer recomputations of each logit tile) with 8 warps.
FORWARD_BLOCKS = Blocks(m=128, n=128, d=64, dg=128, num_warps=8)
BACKWARD_BLOCKS = Blocks(m=128, n=64, d=64, dg=256, num_warps=8)
INTERPRETER_BLOCKS = Blocks(m=16, n=16, d=32, dg=32, num_warps=1)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


# backend="auto" keeps the reference up to this batch size. Recorded on the H100 (bf16, forward+backward,
# benchmarks/results/contrastive_loss_NVIDIA_H100_80GB_HBM3.md): at B = 4096 the naive eager loss took 1.12 ms and
# the kernels 2.61 ms (d = 768: 1.08 vs 4.21 ms); at B = 16384 the kernels took 9.03 vs 13.19 ms at d = 512
# (15.97 vs 13.65 ms at d = 768) with 1/36 of the extra memory (128 MiB vs 4.6 GiB), which decides above this size.
AUTO_MAX_REFERENCE_BATCH = 4096


def use_triton(backend: str, image_features: Tensor) -> bool:
    """auto -> Triton for CUDA tensors of a supported dtype with more than AUTO_MAX_REFERENCE_BATCH rows when
    triton is installed; else the reference (faster for small batches, whose B x B logits are small anyway)."""
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch":
        return False
    if backend == "auto":
        return (isinstance(image_features, Tensor) and image_features.is_cuda
                and image_features.dtype in SUPPORTED_DTYPES and image_features.dim() == 2
                and image_features.shape[0] > AUTO_MAX_REFERENCE_BATCH and triton_available())
    if not triton_available():
        raise RuntimeError("backend='triton' needs the triton package (pip install triton)")
    return True


def check_triton_inputs(image_features: Tensor, text_features: Tensor) -> tuple[Tensor, Tensor]:
    """Dtype/device checks for the kernels; non-contiguous features are copied to contiguous ones."""
    if image_features.dtype != text_features.dtype:
        raise TypeError(f"dtype mismatch: image_features {image_features.dtype}, text_features {text_features.dtype}")
    if image_features.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"the Triton kernels take float32, float16 or bfloat16 features, got {image_features.dtype}; "
                        "use backend='torch' for other dtypes")
    if not image_features.is_cuda and not interpreting():
        raise RuntimeError(f"backend='triton' needs CUDA tensors (got {image_features.device}); "
                           "set TRITON_INTERPRET=1 before importing mmlab.kernels to run the kernels on a CPU")
    return image_features.contiguous(), text_features.contiguous()


def scalar_tensor(value: Tensor | float, like: Tensor) -> Tensor:
    """A 0-d float32 tensor on the features' device (keeps autograd history when `value` has it)."""
    if isinstance(value, Tensor):
        if value.device != like.device and value.numel() == 1 and value.device.type != "cpu":
            raise ValueError(f"scalar on {value.device}, features on {like.device}")
        return value.reshape(()).to(device=like.device, dtype=torch.float32)
    return torch.tensor(float(value), device=like.device, dtype=torch.float32)


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot's input_precision: float32 features stay exact; fp16/bf16 ignore it."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _settings(a: Tensor, blocks: Blocks | None, default: Blocks) -> tuple[Blocks, bool, str]:
    if blocks is None:
        blocks = INTERPRETER_BLOCKS if interpreting() else default
    return blocks, interpreting(), dot_precision(a.dtype)


def rows_forward(a: Tensor, b: Tensor, scale: float, bias: float, loss: int, blocks: Blocks | None,
                 diagonal: bool = False) -> tuple[Tensor, Tensor | None]:
    """(B,) float32 per-row LSE of s·a·bᵀ (loss 0) or per-row SigLIP sum (loss 1); with `diagonal`,
    also the (B,) float32 positives s·<a_i, b_i> (else None)."""
    from mmlab.kernels import _contrastive_tiles as k

    blocks, cast, precision = _settings(a, blocks, FORWARD_BLOCKS)
    n, d = a.shape
    out = _empty(n, device=a.device, dtype=torch.float32)
    diag = _empty(n, device=a.device, dtype=torch.float32) if diagonal else None
    grid = (-(-n // blocks.m),)
    k.rows_forward_kernel[grid](a, b, out, out if diag is None else diag, n, d, scale, bias, LOSS=loss,
                                DIAGONAL=diagonal, BLOCK_M=blocks.m, BLOCK_N=blocks.n, BLOCK_D=blocks.d,
                                CAST_FP32=cast, PRECISION=precision, num_warps=blocks.num_warps)
    return out, diag


def rows_backward(a: Tensor, b: Tensor, lse_a: Tensor | None, lse_b: Tensor | None, scale: float, bias: float,
                  coef: float, loss: int, blocks: Blocks | None,
                  diagonal: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """grad_a (B, D) in a's dtype, plus per-row float32 partials of coef·sum_j G_ij<a_i,b_j> and coef·sum_j G_ij.

    `diagonal` (InfoNCE): G includes the -2·δ_ij of the positives' gradient."""
    from mmlab.kernels import _contrastive_tiles as k

    blocks, cast, precision = _settings(a, blocks, BACKWARD_BLOCKS)
    n, d = a.shape
    grad = _empty(n, d, device=a.device, dtype=a.dtype)
    dot_part = _empty(n, device=a.device, dtype=torch.float32)
    sum_part = _empty(n, device=a.device, dtype=torch.float32)
    if lse_a is None:  # SigLIP: unused pointers
        lse_a = lse_b = dot_part
    grid = (-(-n // blocks.m),)
    k.rows_backward_kernel[grid](a, b, lse_a, lse_b, grad, dot_part, sum_part, n, d, scale, bias, coef,
                                 LOSS=loss, DIAGONAL=diagonal, BLOCK_M=blocks.m, BLOCK_N=blocks.n, BLOCK_D=blocks.d,
                                 BLOCK_DG=blocks.dg, CAST_FP32=cast, PRECISION=precision,
                                 num_warps=blocks.num_warps)
    return grad, dot_part, sum_part


def backward_sides(x: Tensor, y: Tensor, lse_x: Tensor | None, lse_y: Tensor | None, scale: float, bias: float,
                   coef: float, loss: int, blocks: Blocks | None, diagonal: bool,
                   need_x: bool, need_y: bool) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor]:
    """(grad_x or None, grad_y or None, dot_part, sum_part): one backward launch per feature that needs a gradient
    (a locked tower costs nothing), at least one for the scalars' partials, which either side gives alike
    (the y side sums the transposed tile)."""
    grad_x = grad_y = partials = None
    if need_x or not need_y:
        grad_x, *partials = rows_backward(x, y, lse_x, lse_y, scale, bias, coef, loss, blocks, diagonal)
    if need_y:
        grad_y, *y_partials = rows_backward(y, x, lse_y, lse_x, scale, bias, coef, loss, blocks, diagonal)
        partials = partials or y_partials
    return (grad_x if need_x else None), grad_y, partials[0], partials[1]
