"""Registers, spills and shared memory of the contrastive kernels, compiled for a GPU without one.

    python benchmarks/kernel_resources.py                    # sm_90 (H100/H200), bf16, the tuner's tile configurations
    python benchmarks/kernel_resources.py --dtype fp32       # float32 features (exact "ieee" dots, as launched)

Triton compiles for a named target with the ptxas it ships, so this runs on a CPU-only machine; `ptxas -v`
reports registers and spills per thread. Spills go to local memory: the first thing to look at when a kernel
runs far below the matmul rate. Numbers depend on the Triton version (the GPU image has 3.6). What the numbers
cost in time only a GPU run says (benchmarks/tune_contrastive_blocks.py).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource
from tune_contrastive_blocks import CONFIGS  # sibling script (same folder on sys.path)

from mmlab.kernels import contrastive_tiles as tiles
from mmlab.kernels.launch import BACKWARD_BLOCKS, FORWARD_BLOCKS, INFO_NCE, dot_precision

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def signatures(features: str) -> tuple[dict, dict]:
    """Argument types of the forward and backward kernels for features of Triton type `features`."""
    stats = scalar = "*fp32"  # scale, bias and coef: pointers to 0-d float32 tensors
    forward = {"a_ptr": features, "b_ptr": features, "out_ptr": stats, "diag_ptr": stats,
               "scale_ptr": scalar, "bias_ptr": scalar, "B": "i32", "D": "i32"}
    backward = {"a_ptr": features, "b_ptr": features, "lse_a_ptr": stats, "lse_b_ptr": stats,
                "grad_ptr": features, "dot_part_ptr": stats, "sum_part_ptr": stats,
                "scale_ptr": scalar, "bias_ptr": scalar, "coef_ptr": scalar, "B": "i32", "D": "i32"}
    return forward, backward


def resources(kernel, signature: dict, constants: dict, num_warps: int, capability: int) -> dict[str, int]:
    """Registers per thread, spill stores and loads (bytes per thread) and Triton's shared memory of one kernel:
    Triton writes the PTX, its own ptxas (-v) reports the rest."""
    compiled = triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget("cuda", capability, 32),
                              options={"num_warps": num_warps})
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "kernel.ptx")
        with open(ptx, "w") as f:
            f.write(compiled.asm["ptx"])
        report = subprocess.run([get_ptxas(capability).path, f"-arch=sm_{capability}a", "-v", ptx,
                                 "-o", os.path.join(tmp, "kernel.o")],
                                capture_output=True, text=True, check=True).stderr
    numbers = {key: int(re.search(rf"(\d+) {key}", report).group(1))
               for key in ("registers", "bytes spill stores", "bytes spill loads")}
    return {**numbers, "shared": compiled.metadata.shared}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capability", type=int, default=90, help="CUDA compute capability, e.g. 90 for Hopper")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="bf16", help="feature dtype")
    args = p.parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's current default, stated to silence its warning
    forward_signature, backward_signature = signatures("*" + args.dtype)
    print(f"triton {triton.__version__}, sm_{args.capability}, {args.dtype} features, "
          "InfoNCE with the positives folded in")
    print("| kernel | m | n | d | dg | warps | registers | spill stores (B) | spill loads (B) | shared (B) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = [("forward (default)", tiles.rows_forward_kernel, forward_signature, FORWARD_BLOCKS),
            ("backward (default)", tiles.rows_backward_kernel, backward_signature, BACKWARD_BLOCKS)]
    rows += [("backward", tiles.rows_backward_kernel, backward_signature, blocks)
             for blocks in CONFIGS if blocks != BACKWARD_BLOCKS]
    for name, kernel, signature, b in rows:
        backward = kernel is tiles.rows_backward_kernel
        constants = {"LOSS": INFO_NCE, "DIAGONAL": True, "BLOCK_M": b.m, "BLOCK_N": b.n, "BLOCK_D": b.d,
                     "CAST_FP32": False, "PRECISION": dot_precision(DTYPES[args.dtype]),
                     **({"BLOCK_DG": b.dg} if backward else {})}
        r = resources(kernel, signature, constants, b.num_warps, args.capability)
        print(f"| {name} | {b.m} | {b.n} | {b.d} | {b.dg if backward else ''} | {b.num_warps} | "
              f"{r['registers']} | {r['bytes spill stores']} | {r['bytes spill loads']} | {r['shared']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
