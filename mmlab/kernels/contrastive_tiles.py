"""Triton kernels shared by the tiled InfoNCE and SigLIP losses (imported by `mmlab.kernels.launch` on first launch).

Both losses are sums over the (B, B) logits l_ij = s * <a_i, b_j>. One program owns BLOCK_M rows
of `a`, walks over `b` in BLOCK_N-row tiles, and builds each (BLOCK_M, BLOCK_N) logit tile from
BLOCK_D-wide slices of the features, so the B x B matrix never exists in memory.

LOSS = "info_nce": forward keeps an online log-sum-exp per row; backward recomputes the tile and
                   turns it into G_ij = exp(l_ij - lse_a_i) + exp(l_ij - lse_b_j) - 2·δ_ij. With
                   DIAGONAL the forward also writes the positives l_ii and the backward includes the
                   -2·δ_ij of their gradient (without it, a caller adds its own positive term).
LOSS = "siglip":   forward sums softplus(-z_ij (l_ij + bias)) per row, z = +1 on the diagonal, -1
                   elsewhere; backward uses G_ij = -z_ij * sigmoid(-z_ij (l_ij + bias)).
The column-wise quantities (text -> image) are the same kernels with a and b swapped.

scale, bias and coef arrive as pointers to 0-d float32 tensors and are read with tl.load, so launching a
kernel never waits for the GPU to produce them.

Addressing: B·D passes 2**31 at large batches (B = 2**20 rows at D = 4096), beyond int32. So a program's first
row is found with an int64 offset (`row0`), the tiles of b by advancing a pointer BLOCK_N rows at a time, and
only offsets within one tile (less than BLOCK·D) are int32, which keeps the kernels' registers for the tiles.
"""
import triton
import triton.language as tl


@triton.jit
def _logit_tile(a_blk, b_blk, amask, bmask, D,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                CAST_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """<a_i, b_j> for a (BLOCK_M, BLOCK_N) tile, fp32 accumulation over D in BLOCK_D slices.

    a_blk, b_blk: pointers to the tile's first row of a and of b (the other rows follow, D apart)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, D, BLOCK_D):
        ks = k0 + tl.arange(0, BLOCK_D)
        kmask = ks < D
        a = tl.load(a_blk + (tl.arange(0, BLOCK_M)[:, None] * D + ks[None, :]),
                    mask=amask[:, None] & kmask[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)
        bt = tl.load(b_blk + (tl.arange(0, BLOCK_N)[None, :] * D + ks[:, None]),
                     mask=kmask[:, None] & bmask[None, :], other=0.0)  # (BLOCK_D, BLOCK_N)
        if CAST_FP32:  # the interpreter's bf16 tl.dot is wrong: multiply in fp32 there
            a = a.to(tl.float32)
            bt = bt.to(tl.float32)
        acc = tl.dot(a, bt, acc, input_precision=PRECISION)  # (BLOCK_M, BLOCK_N)
    return acc


@triton.jit
def rows_forward_kernel(a_ptr, b_ptr, out_ptr, diag_ptr, scale_ptr, bias_ptr, B, D,
                        LOSS: tl.constexpr, DIAGONAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_D: tl.constexpr, CAST_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """out[i] = LSE_j l_ij ("info_nce") or sum_j softplus(-z_ij (l_ij + bias)) ("siglip"), for the rows of a.

    With DIAGONAL, also diag[i] = l_ii = s·<a_i, b_i>, as a row-wise dot after the walk over the tiles.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < B
    row0 = (pid * BLOCK_M).to(tl.int64) * D  # offset of the program's first row, in int64
    scale = tl.load(scale_ptr)
    bias = tl.load(bias_ptr)
    b_blk = b_ptr  # the current tile's first row of b
    run_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for n0 in range(0, B, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < B
        logits = scale * _logit_tile(a_ptr + row0, b_blk, rmask, cmask, D,
                                     BLOCK_M, BLOCK_N, BLOCK_D, CAST_FP32, PRECISION)
        b_blk += BLOCK_N * D
        if LOSS == "info_nce":
            logits = tl.where(cmask[None, :], logits, float("-inf"))
            new_max = tl.maximum(run_max, tl.max(logits, axis=1))
            run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), axis=1)
            run_max = new_max
        else:
            z = tl.where(rows[:, None] == cols[None, :], 1.0, -1.0)
            u = -z * (logits + bias)
            softplus = tl.maximum(u, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(u)))
            run_sum += tl.sum(tl.where(cmask[None, :], softplus, 0.0), axis=1)
    if LOSS == "info_nce":
        result = run_max + tl.log(run_sum)
    else:
        result = run_sum
    tl.store(out_ptr + rows, result, mask=rmask)
    if DIAGONAL:
        diag = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for k0 in range(0, D, BLOCK_D):
            ks = k0 + tl.arange(0, BLOCK_D)
            m = rmask[:, None] & (ks < D)[None, :]
            tile = tl.arange(0, BLOCK_M)[:, None] * D + ks[None, :]
            a = tl.load(a_ptr + row0 + tile, mask=m, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + row0 + tile, mask=m, other=0.0).to(tl.float32)
            diag += tl.sum(a * b, axis=1)
        tl.store(diag_ptr + rows, scale * diag, mask=rmask)


@triton.jit
def rows_backward_kernel(a_ptr, b_ptr, lse_a_ptr, lse_b_ptr, grad_ptr, dot_part_ptr, sum_part_ptr,
                         scale_ptr, bias_ptr, coef_ptr, B, D,
                         LOSS: tl.constexpr, DIAGONAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_DG: tl.constexpr,
                         CAST_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """grad_a[i] = coef * s * sum_j G_ij b_j, written BLOCK_DG columns at a time (tiles recomputed per chunk).

    Also per row: dot_part[i] = coef * sum_j G_ij <a_i, b_j> (for d/ds) and sum_part[i] = coef * sum_j G_ij
    (for d/dbias), accumulated during the first chunk's walk over the tiles only.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < B
    row0 = (pid * BLOCK_M).to(tl.int64) * D  # offset of the program's first row, in int64
    scale = tl.load(scale_ptr)
    bias = tl.load(bias_ptr)
    coef = tl.load(coef_ptr)
    if LOSS == "info_nce":
        lse_a = tl.load(lse_a_ptr + rows, mask=rmask, other=0.0)
    dot_part = tl.zeros((BLOCK_M,), dtype=tl.float32)
    sum_part = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for g0 in range(0, D, BLOCK_DG):
        gs = g0 + tl.arange(0, BLOCK_DG)
        gmask = gs < D
        grad = tl.zeros((BLOCK_M, BLOCK_DG), dtype=tl.float32)
        b_blk = b_ptr  # the current tile's first row of b
        for n0 in range(0, B, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            cmask = cols < B
            dots = _logit_tile(a_ptr + row0, b_blk, rmask, cmask, D,
                               BLOCK_M, BLOCK_N, BLOCK_D, CAST_FP32, PRECISION)
            logits = scale * dots
            if LOSS == "info_nce":
                lse_b = tl.load(lse_b_ptr + cols, mask=cmask, other=0.0)
                g = tl.exp(logits - lse_a[:, None]) + tl.exp(logits - lse_b[None, :])
                if DIAGONAL:
                    g -= tl.where(rows[:, None] == cols[None, :], 2.0, 0.0)
            else:
                z = tl.where(rows[:, None] == cols[None, :], 1.0, -1.0)
                g = -z * tl.sigmoid(-z * (logits + bias))
            g = tl.where(rmask[:, None] & cmask[None, :], g, 0.0) * coef  # (BLOCK_M, BLOCK_N)
            if g0 == 0:  # the same for every chunk: one walk gives them
                dot_part += tl.sum(g * dots, axis=1)
                sum_part += tl.sum(g, axis=1)
            bg = tl.load(b_blk + (tl.arange(0, BLOCK_N)[:, None] * D + gs[None, :]),
                         mask=cmask[:, None] & gmask[None, :], other=0.0)  # (BLOCK_N, BLOCK_DG)
            if CAST_FP32:
                bg = bg.to(tl.float32)
            else:
                g = g.to(bg.dtype)
            grad = tl.dot(g, bg, grad, input_precision=PRECISION)  # (BLOCK_M, BLOCK_DG)
            b_blk += BLOCK_N * D
        grad = grad * scale
        tl.store(grad_ptr + row0 + (tl.arange(0, BLOCK_M)[:, None] * D + gs[None, :]),
                 grad.to(grad_ptr.dtype.element_ty), mask=rmask[:, None] & gmask[None, :])
    tl.store(dot_part_ptr + rows, dot_part, mask=rmask)
    tl.store(sum_part_ptr + rows, sum_part, mask=rmask)
