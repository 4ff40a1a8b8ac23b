"""Time the InfoNCE forward and backward kernels under several tile configurations (CUDA only).

    python benchmarks/tune_contrastive_blocks.py --B 32768 --d 512

For each `Blocks` configuration: the median ms of the two forward launches (image->text and text->image
log-sum-exps) and of the two backward launches, each checked against a float64 reference first
(relative error of the LSEs and of the gradient). The fastest correct configurations become the
defaults in `mmlab.kernels.launch`; the table printed here is recorded in benchmarks/results/.
"""
from __future__ import annotations

import argparse
import sys

import torch
from bench_contrastive_loss import make_timer, median_ms, unit_features  # sibling script (same folder on sys.path)

from mmlab.kernels import launch
from mmlab.kernels.launch import Blocks

CONFIGS = [
    Blocks(m=64, n=64, d=64, dg=128, num_warps=4),
    Blocks(m=128, n=64, d=64, dg=128, num_warps=8),
    Blocks(m=128, n=128, d=64, dg=128, num_warps=8),
    Blocks(m=64, n=128, d=64, dg=256, num_warps=8),
    Blocks(m=64, n=64, d=64, dg=256, num_warps=8),
    Blocks(m=64, n=64, d=64, dg=512, num_warps=8),
    Blocks(m=32, n=64, d=64, dg=512, num_warps=4),
    Blocks(m=128, n=64, d=64, dg=256, num_warps=8),
    Blocks(m=128, n=128, d=32, dg=128, num_warps=8),
    # few or no register spills when compiled for sm_90 (results/kernel_resources_sm90.md); not yet timed
    Blocks(m=64, n=64, d=64, dg=128, num_warps=8),
    Blocks(m=32, n=64, d=32, dg=512, num_warps=8),
    Blocks(m=32, n=32, d=32, dg=512, num_warps=8),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, default=32768)
    p.add_argument("--d", type=int, default=512)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("tune_contrastive_blocks: needs a CUDA GPU", file=sys.stderr)
        return 2
    b, d = args.B, args.d
    s = torch.tensor(1 / 0.07, device="cuda")  # a 0-d device tensor, like a learnt logit_scale
    one = torch.ones((), device="cuda")  # the backward's grad_out
    info_nce = dict(loss=launch.INFO_NCE, scale=s)
    timer = make_timer("cuda")
    x, y = unit_features(b, d, torch.bfloat16, "cuda", seed=0)
    # float64 reference on a slice of rows (the full B x B float64 matrix would not fit)
    rows = 1024
    logits = s.double() * x[:rows].double() @ y.double().T  # (rows, B)
    ref_lse = torch.logsumexp(logits, dim=1)
    r_full, _ = launch.rows_forward(x, y, blocks=CONFIGS[0], **info_nce)
    c_full, _ = launch.rows_forward(y, x, blocks=CONFIGS[0], **info_nce)
    col_lse = c_full.double()
    ref_g = torch.exp(logits - ref_lse[:, None]) + torch.exp(logits - col_lse[None, :])
    ref_g.diagonal().sub_(2.0)  # the positives, folded into the kernels as in info_nce
    ref_grad = s.double() * ref_g @ y.double()  # (rows, d)
    flops_fwd = 2 * 2 * b * b * d  # two directions, one (B, B, d) product each
    print(f"B={b} d={d} bf16; fwd = 2 launches, bwd = 2 launches")
    print("| m | n | d | dg | warps | fwd ms | fwd TFLOP/s | bwd ms | fwd+bwd ms | lse rel err | grad rel err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for blocks in CONFIGS:
        try:
            r, _ = launch.rows_forward(x, y, blocks=blocks, diagonal=True, **info_nce)
            grad, _, _ = launch.rows_backward(x, y, coef=one, lse_a=r, lse_b=c_full, blocks=blocks, diagonal=True,
                                              **info_nce)
            lse_err = float((r[:rows].double() - ref_lse).norm() / ref_lse.norm())
            grad_err = float((grad[:rows].double() - ref_grad).norm() / ref_grad.norm())
            fwd, _ = median_ms(lambda: (launch.rows_forward(x, y, blocks=blocks, diagonal=True, **info_nce),
                                        launch.rows_forward(y, x, blocks=blocks, **info_nce)), timer)
            bwd, _ = median_ms(lambda: launch.backward_sides(x, y, coef=one, lse_x=r_full, lse_y=c_full,
                                                             blocks=blocks, diagonal=True, **info_nce), timer)
        except Exception as exc:  # e.g. out of shared memory for this tile shape
            print(f"| {blocks.m} | {blocks.n} | {blocks.d} | {blocks.dg} | {blocks.num_warps} | failed: "
                  f"{type(exc).__name__}: {str(exc)[:120]} |||||", flush=True)
            continue
        print(f"| {blocks.m} | {blocks.n} | {blocks.d} | {blocks.dg} | {blocks.num_warps} | {fwd:.2f} | "
              f"{flops_fwd / fwd / 1e9:.0f} | {bwd:.2f} | {fwd + bwd:.2f} | {lse_err:.1e} | {grad_err:.1e} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
