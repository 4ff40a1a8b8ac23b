"""Contrastive losses across processes (`torch.distributed`): features gathered with gradients, the local-loss
form of open_clip, and SigLIP's ring exchange.

Each of the W ranks holds B pairs of one global batch of N = W·B pairs, rank r holding rows r·B ... (r+1)·B - 1
(every rank must hold the same B). On every rank, `info_nce` and `siglip_loss` return the value that
`mmlab.align.info_nce` / `mmlab.align.siglip_loss` give on the concatenated global batch, and a
`DistributedDataParallel` model trained with them (DDP averages parameter gradients over the ranks) gets the
parameter gradients of one process on the concatenated batch.

Without torch.distributed (not available, or no process group initialised) and with a world size of 1, each
function is the plain loss on its inputs (and `gather_with_grad(x)` is `x`): the same script runs in one process.

Why no gradient is rescaled. Rank r's differentiable loss is L_r, with mean_r L_r = L, the global loss (in the
global form every L_r is L itself). The features of rank r enter every L_q, so the gradient they need is
sum_q dL_q/dx_r = W · dL/dx_r; the backward of `gather_with_grad` (an all-reduce SUM of the gathered gradient,
then rank r's slice) and of the ring exchange (each received gradient sent back to the block's owner) deliver
exactly that sum. DDP then averages, (1/W) · sum_r W · dL/dθ_r = dL/dθ. The logit scale (and bias) enter L_r
directly, and the average of dL_r/ds is dL/ds. The pitfall this avoids: a gather whose backward keeps only the
local slice (`torch.distributed.all_gather`, then the local tensor put back in its place) gives rank r's
features dL_r/dx_r alone. In the global form (every L_r = L) that is a uniform 1/W: after DDP's average the
towers get 1/W of the single-process gradient while the temperature gets all of it (harmless for the direction;
AdamW's update hardly depends on the scale). In the local form it drops the terms where rank r's features are
negatives in the other ranks' rows, so the gradient's direction changes. (open_clip issue #616 asked about the
global case; #894 recounts that the local loss needs the gradient through the gather while the global form
without it is off only by a scale.) `tests/test_distributed.py` checks the global-form factor; lesson 13 shows
both forms.

positive_mask (InfoNCE) is the global (N, N) mask, the same tensor on every rank (each rank uses its rows and
its columns). The ring is a permutation of blocks, so each of its steps is a neighbour exchange (point-to-point
send/recv, on gloo and NCCL alike).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmlab import validation
from mmlab.align.losses import info_nce as info_nce_global
from mmlab.align.losses import siglip_loss as siglip_loss_global

__all__ = ["gather_with_grad", "info_nce", "rank_and_world", "siglip_loss"]


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when torch.distributed is not in use."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _same_rows_everywhere(name: str, x: Tensor, world: int) -> None:
    """A ValueError on every rank unless all ranks hold tensors of one shape (read on the host: CPU tensors only,
    so a GPU is never synchronised; on CUDA the shapes are the caller's contract)."""
    if not validation.on_host(x):
        return
    shape = torch.tensor([x.dim(), *x.shape, *[0] * (8 - x.dim())], dtype=torch.int64)  # (9,)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    torch.distributed.all_gather(shapes, shape)
    if any(not torch.equal(s, shapes[0]) for s in shapes):
        got = [tuple(s[1:1 + int(s[0])].tolist()) for s in shapes]
        raise ValueError(f"{name} must have the same shape on every rank, got {got} (rank order)")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: all-reduce SUM of the gathered gradient, keep this rank's slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        rank, world = rank_and_world()
        parts = [torch.empty_like(x) for _ in range(world)]
        torch.distributed.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = rank, x.shape[0]
        return torch.cat(parts)  # (W·B, ...)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # all_reduce works in place
        torch.distributed.all_reduce(grad, op=torch.distributed.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """The (B, ...) tensors of all ranks concatenated in rank order, (W·B, ...); gradients flow back to each rank.

    Rank r's slice of the gradient is the sum over ranks of what their losses send to rows r·B ... (r+1)·B - 1
    (see the module docstring: with DDP's averaging this gives the single-process gradient). Collective: every
    rank must call it, with tensors of one shape. Without torch.distributed or with one rank: `x` itself."""
    validation.require_tensor("x", x)
    if x.dim() == 0:
        raise ValueError("x must have a batch dimension, got a 0-d tensor")
    _, world = rank_and_world()
    if world == 1:
        return x
    _same_rows_everywhere("x", x, world)
    return _GatherWithGrad.apply(x)


def _global_value(local: Tensor) -> Tensor:
    """`local` with the value mean_r local_r (all-reduced, detached); the gradient stays that of `local`."""
    _, world = rank_and_world()
    mean = local.detach().clone()
    torch.distributed.all_reduce(mean, op=torch.distributed.ReduceOp.SUM)
    return local + (mean / world - local.detach())


def _rows_ce(logits: Tensor, mask_rows: Tensor | None, first: int) -> Tensor:
    """Mean over rows of the (multi-positive) cross-entropy of (B, N) logits: row i's positive is column first + i,
    or the columns of `mask_rows[i]` (target uniform over them), as in `mmlab.align.info_nce`."""
    if mask_rows is None:
        return F.cross_entropy(logits, first + torch.arange(logits.shape[0], device=logits.device))
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (B, N)
    return (-(log_p * mask_rows).sum(dim=1) / mask_rows.sum(dim=1)).mean()


def info_nce(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
             positive_mask: Tensor | None = None, local_loss: bool = True) -> Tensor:
    """Symmetric InfoNCE (CLIP) over the global batch; returns `mmlab.align.info_nce` of the concatenated batch.

    image_features, text_features: this rank's (B, D) rows (normalised by the caller); logit_scale already
    exponentiated. positive_mask: None (pair i <-> i), or the global (N, N) bool mask, N = W·B, identical on
    every rank (row i: image i, column j: text j; each rank uses its rows for image -> text and its columns for
    text -> image). Every rank must call this (collective).

    local_loss=False (the global form): every rank gathers both sides and computes the whole (N, N) loss.
    local_loss=True (open_clip's `local_loss`): rank r computes only its B image rows against all N texts and its
    B text rows against all N images, (B, N) logits instead of (N, N), and the mean over ranks of these local
    losses is the global loss (its value is what is returned; gradients as the module docstring says).
    Not distributed, or one rank: `mmlab.align.info_nce(image_features, text_features, logit_scale, positive_mask)`.
    """
    validation.feature_pair(image_features, text_features)
    validation.scalar("logit_scale", logit_scale, positive=True)
    validation.boolean("local_loss", local_loss)
    rank, world = rank_and_world()
    if world == 1:
        return info_nce_global(image_features, text_features, logit_scale, positive_mask)
    all_img, all_txt = gather_with_grad(image_features), gather_with_grad(text_features)  # (N, D) each
    n, b = all_img.shape[0], image_features.shape[0]
    if positive_mask is not None:
        validation.positive_mask(positive_mask, n, image_features.device)
    if not local_loss:
        return info_nce_global(all_img, all_txt, logit_scale, positive_mask)
    acc = torch.float64 if image_features.dtype == torch.float64 else torch.float32
    scale = validation.scalar_tensor(logit_scale, image_features, acc)
    rows = slice(rank * b, (rank + 1) * b)
    logits_image = scale * image_features.to(acc) @ all_txt.to(acc).T  # (B, N): my images vs every text
    logits_text = scale * text_features.to(acc) @ all_img.to(acc).T  # (B, N): my texts vs every image
    mask_image = None if positive_mask is None else positive_mask[rows]  # (B, N)
    mask_text = None if positive_mask is None else positive_mask[:, rows].T  # (B, N)
    local = (_rows_ce(logits_image, mask_image, rank * b) + _rows_ce(logits_text, mask_text, rank * b)) / 2
    return _global_value(local)


class _Exchange(torch.autograd.Function):
    """Send `x` to rank `to`, receive a tensor of its shape from rank `source`; backward sends the received block's
    gradient back to `source` and receives `x`'s gradient from `to`."""

    @staticmethod
    def forward(ctx, x: Tensor, to: int, source: int) -> Tensor:
        ctx.to, ctx.source = to, source
        return _send_recv([(x, to)], [source])[0]

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _send_recv([(grad, ctx.source)], [ctx.to])[0], None, None


class _ExchangeBoth(torch.autograd.Function):
    """Both directions at once (open_clip's `bidir`): send `to_left` left and `to_right` right; receive
    (from the left, from the right). Backward: the mirror image."""

    @staticmethod
    def forward(ctx, to_left: Tensor, to_right: Tensor, left: int, right: int) -> tuple[Tensor, Tensor]:
        ctx.left, ctx.right = left, right
        return tuple(_send_recv([(to_left, left), (to_right, right)], [left, right]))

    @staticmethod
    def backward(ctx, grad_from_left: Tensor, grad_from_right: Tensor):
        g_left, g_right = _send_recv([(grad_from_left, ctx.left), (grad_from_right, ctx.right)], [ctx.left, ctx.right])
        return g_left, g_right, None, None


def _send_recv(sends: list[tuple[Tensor, int]], sources: list[int]) -> list[Tensor]:
    """Post every send and receive at once (batch_isend_irecv), wait for all; received tensors have the shape of
    the first sent one. A tag per direction keeps the two messages of a bidirectional step apart."""
    dist = torch.distributed
    like = sends[0][0]
    received = [torch.empty_like(like, memory_format=torch.contiguous_format) for _ in sources]
    # tag 0: travelling left (sent to the left neighbour), tag 1: travelling right
    ops = [dist.P2POp(dist.isend, t.contiguous(), peer, tag=i) for i, (t, peer) in enumerate(sends)]
    ops += [dist.P2POp(dist.irecv, buf, peer, tag=1 - i if len(sources) == 2 else 0)
            for i, (buf, peer) in enumerate(zip(received, sources))]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    return received


def _sigmoid_block(img: Tensor, txt: Tensor, scale: Tensor, bias: Tensor, positives: bool) -> Tensor:
    """-sum log sigmoid(z · (s·img·txtᵀ + b)) over a (B, B) block; z = +1 on the diagonal if `positives`, else -1."""
    logits = scale * img @ txt.T + bias  # (B, B)
    z = (2 * torch.eye(img.shape[0], device=img.device, dtype=logits.dtype) - 1) if positives else -1.0
    return -F.logsigmoid(z * logits).sum()


def siglip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float,
                logit_bias: Tensor | float) -> Tensor:
    """SigLIP's sigmoid loss over the global batch by a ring exchange; returns `mmlab.align.siglip_loss` of the
    concatenated batch.

    No rank gathers the batch (Zhai et al., 2023, section 3.3): each keeps its B images and passes text blocks to
    its neighbours, both ways at once (as open_clip's `bidir`), so after ceil((W-1)/2) exchanges every rank has
    scored its images against all W text blocks, computing one (B, B) block of logits at a time (autograd keeps
    every block's log-sigmoid input and every received text block for backward: B x N logits in all, half of the
    local InfoNCE's two (B, N) log-softmaxes; on CPU torch's log-sigmoid also keeps a buffer of its input's size,
    so 2 B x N there). Rank r's
    loss is its blocks' sum divided by B; their mean over ranks is the global loss. Collective: every rank must
    call it, with the same B.
    Not distributed, or one rank: `mmlab.align.siglip_loss` on the inputs.
    """
    rank, world = rank_and_world()
    if world == 1:
        return siglip_loss_global(image_features, text_features, logit_scale, logit_bias)
    validation.feature_pair(image_features, text_features)
    validation.scalar("logit_scale", logit_scale, positive=True)
    validation.scalar("logit_bias", logit_bias)
    _same_rows_everywhere("image_features", image_features, world)
    acc = torch.float64 if image_features.dtype == torch.float64 else torch.float32
    img, txt = image_features.to(acc), text_features.to(acc)
    scale = validation.scalar_tensor(logit_scale, img, acc)
    bias = validation.scalar_tensor(logit_bias, img, acc)
    left, right = (rank - 1) % world, (rank + 1) % world
    total = _sigmoid_block(img, txt, scale, bias, positives=True)
    to_left = to_right = txt
    both_ways, one_way = divmod(world - 1, 2)
    for _ in range(both_ways):
        from_left, from_right = _ExchangeBoth.apply(to_left, to_right, left, right)  # blocks r-k and r+k
        total = total + _sigmoid_block(img, from_left, scale, bias, False) + _sigmoid_block(
            img, from_right, scale, bias, False)
        to_left, to_right = from_right, from_left  # keep them travelling the way they came
    if one_way:
        from_left = _Exchange.apply(to_right, right, left)  # the last block, from the left only
        total = total + _sigmoid_block(img, from_left, scale, bias, False)
    return _global_value(total / img.shape[0])
