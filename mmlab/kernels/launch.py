"""Launch layer of the tiled contrastive losses: tile sizes, dispatch, and the kernel launchers.

The public layer beneath `mmlab.kernels.info_nce` / `siglip_loss`, for tests, benchmarks and readers. Triton is
imported only when a launcher runs (the kernels live in `mmlab.kernels.contrastive_tiles`).

Launchers take the feature tensors positionally and everything else by keyword:

    rows_forward(a, b, *, loss, scale, bias=None, blocks=None, diagonal=False) -> (out, diag)
    rows_backward(a, b, *, loss, scale, coef, bias=None, lse_a=None, lse_b=None, blocks=None, diagonal=False)
        -> (grad_a, dot_part, sum_part)
    backward_sides(x, y, *, loss, scale, coef, bias=None, lse_x=None, lse_y=None, blocks=None, diagonal=False,
                   need_x=True, need_y=True) -> (grad_x or None, grad_y or None, dot_part, sum_part)

- `loss`: INFO_NCE (needs lse_a and lse_b in the backward) or SIGLIP (needs bias).
- `scale`, `bias`, `coef`: 1-element float tensors (or numbers), handed to the kernels as 0-d float32 tensors on
  the features' device and read there with tl.load: values already on the device cost no host synchronisation.
- `OUTPUT_ALLOCATOR(*shape, device=, dtype=)` allocates every kernel output (`torch.empty`); a test may replace
  it, e.g. with a NaN fill, so that an element a kernel forgets to write shows.
- `use_triton(backend, features)` decides the dispatch, `check_triton_inputs(x, y)` what the kernels accept.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from mmlab import validation

__all__ = [
    "AUTO_MAX_REFERENCE_BATCH", "BACKENDS", "BACKWARD_BLOCKS", "Blocks", "FORWARD_BLOCKS", "INFO_NCE",
    "INTERPRETER_BLOCKS", "LOSSES", "OUTPUT_ALLOCATOR", "SIGLIP", "SUPPORTED_DTYPES", "backward_sides",
    "check_triton_inputs", "dot_precision", "interpreting", "rows_backward", "rows_forward", "triton_available",
    "use_triton",
]

INFO_NCE, SIGLIP = "info_nce", "siglip"  # the kernels' LOSS
LOSSES = (INFO_NCE, SIGLIP)
BACKENDS = ("auto", "triton", "torch")
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
OUTPUT_ALLOCATOR = torch.empty


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
        validation.positive_int("Blocks.num_warps", self.num_warps)
        for name in ("m", "n", "d", "dg"):
            v = validation.positive_int(f"Blocks.{name}", getattr(self, name))
            if v < 16 or v & (v - 1):
                raise ValueError(f"Blocks.{name} must be a power of two >= 16, got {v}")


# Defaults chosen from the tile timings in benchmarks/results/contrastive_blocks_H100.md
# (benchmarks/tune_contrastive_blocks.py); the interpreter's are small, for speed on a CPU.
FORWARD_BLOCKS = Blocks(m=128, n=128, d=64, dg=128, num_warps=8)
BACKWARD_BLOCKS = Blocks(m=128, n=64, d=64, dg=256, num_warps=8)
INTERPRETER_BLOCKS = Blocks(m=16, n=16, d=32, dg=32, num_warps=1)

# backend="auto" keeps the reference up to this batch size, where it ran faster than the kernels
# (benchmarks/results/contrastive_loss_README.md, "Why auto keeps the reference up to 4096 rows").
AUTO_MAX_REFERENCE_BATCH = 4096


def interpreting() -> bool:
    """True when the kernels run through the Triton interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def use_triton(backend: str, image_features: Tensor) -> bool:
    """auto -> Triton for CUDA tensors of a supported dtype with more than AUTO_MAX_REFERENCE_BATCH rows when
    triton is installed; else the reference (faster for small batches, whose B x B logits are small anyway)."""
    validation.one_of("backend", backend, BACKENDS)
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


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot's input_precision: float32 features stay exact; fp16/bf16 ignore it."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _tiles(a: Tensor, blocks: Blocks | None, default: Blocks) -> tuple[Blocks, dict]:
    """The blocks to use and the launch options both kernels share."""
    if blocks is None:
        blocks = INTERPRETER_BLOCKS if interpreting() else default
    return blocks, dict(BLOCK_M=blocks.m, BLOCK_N=blocks.n, BLOCK_D=blocks.d, CAST_FP32=interpreting(),
                        PRECISION=dot_precision(a.dtype), num_warps=blocks.num_warps)


def _scale_and_bias(a: Tensor, loss: str, scale: Tensor | float, bias: Tensor | float | None) -> tuple[Tensor, Tensor]:
    """0-d float32 device tensors for the kernels' scale and bias pointers (InfoNCE reads no bias: scale's)."""
    validation.one_of("loss", loss, LOSSES)
    scale = validation.scalar_tensor(scale, a)
    if loss == INFO_NCE:
        return scale, scale
    if bias is None:
        raise TypeError("loss=SIGLIP needs bias")
    return scale, validation.scalar_tensor(bias, a)


def rows_forward(a: Tensor, b: Tensor, *, loss: str, scale: Tensor | float, bias: Tensor | float | None = None,
                 blocks: Blocks | None = None, diagonal: bool = False) -> tuple[Tensor, Tensor | None]:
    """(B,) float32 per-row LSE of s·a·bᵀ (INFO_NCE) or per-row SigLIP sum (SIGLIP); with `diagonal`,
    also the (B,) float32 positives s·<a_i, b_i> (else None)."""
    from mmlab.kernels import contrastive_tiles

    scale, bias = _scale_and_bias(a, loss, scale, bias)
    blocks, options = _tiles(a, blocks, FORWARD_BLOCKS)
    n, d = a.shape
    out = OUTPUT_ALLOCATOR(n, device=a.device, dtype=torch.float32)
    diag = OUTPUT_ALLOCATOR(n, device=a.device, dtype=torch.float32) if diagonal else None
    contrastive_tiles.rows_forward_kernel[(-(-n // blocks.m),)](
        a_ptr=a, b_ptr=b, out_ptr=out, diag_ptr=out if diag is None else diag, scale_ptr=scale, bias_ptr=bias,
        B=n, D=d, LOSS=loss, DIAGONAL=diagonal, **options)
    return out, diag


def rows_backward(a: Tensor, b: Tensor, *, loss: str, scale: Tensor | float, coef: Tensor | float,
                  bias: Tensor | float | None = None, lse_a: Tensor | None = None, lse_b: Tensor | None = None,
                  blocks: Blocks | None = None, diagonal: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """grad_a (B, D) in a's dtype, plus per-row float32 partials of coef·sum_j G_ij<a_i,b_j> and coef·sum_j G_ij.

    INFO_NCE needs the forward's per-row LSEs of both sides (lse_a, lse_b); with `diagonal` G includes the
    -2·δ_ij of the positives' gradient."""
    from mmlab.kernels import contrastive_tiles

    scale, bias = _scale_and_bias(a, loss, scale, bias)
    if loss == INFO_NCE and (lse_a is None or lse_b is None):
        raise TypeError("loss=INFO_NCE needs lse_a and lse_b")
    coef = validation.scalar_tensor(coef, a)
    blocks, options = _tiles(a, blocks, BACKWARD_BLOCKS)
    n, d = a.shape
    grad = OUTPUT_ALLOCATOR(n, d, device=a.device, dtype=a.dtype)
    dot_part = OUTPUT_ALLOCATOR(n, device=a.device, dtype=torch.float32)
    sum_part = OUTPUT_ALLOCATOR(n, device=a.device, dtype=torch.float32)
    if loss == SIGLIP:  # no row statistics: unused pointers
        lse_a = lse_b = dot_part
    contrastive_tiles.rows_backward_kernel[(-(-n // blocks.m),)](
        a_ptr=a, b_ptr=b, lse_a_ptr=lse_a, lse_b_ptr=lse_b, grad_ptr=grad, dot_part_ptr=dot_part,
        sum_part_ptr=sum_part, scale_ptr=scale, bias_ptr=bias, coef_ptr=coef, B=n, D=d, LOSS=loss,
        DIAGONAL=diagonal, BLOCK_DG=blocks.dg, **options)
    return grad, dot_part, sum_part


def backward_sides(x: Tensor, y: Tensor, *, loss: str, scale: Tensor | float, coef: Tensor | float,
                   bias: Tensor | float | None = None, lse_x: Tensor | None = None, lse_y: Tensor | None = None,
                   blocks: Blocks | None = None, diagonal: bool = False, need_x: bool = True,
                   need_y: bool = True) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor]:
    """(grad_x or None, grad_y or None, dot_part, sum_part): one backward launch per feature that needs a gradient
    (a locked tower costs nothing), at least one for the scalars' partials, which either side gives alike
    (the y side sums the transposed tile)."""
    common = dict(loss=loss, scale=scale, coef=coef, bias=bias, blocks=blocks, diagonal=diagonal)
    grad_x = grad_y = partials = None
    if need_x or not need_y:
        grad_x, *partials = rows_backward(x, y, lse_a=lse_x, lse_b=lse_y, **common)
    if need_y:
        grad_y, *y_partials = rows_backward(y, x, lse_a=lse_y, lse_b=lse_x, **common)
        partials = partials or y_partials
    return (grad_x if need_x else None), grad_y, partials[0], partials[1]
