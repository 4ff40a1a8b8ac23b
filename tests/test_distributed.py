"""mmlab.align.distributed: on gloo, the distributed losses equal one process on the concatenated batch.

Each distributed test spawns W processes with a file:// rendezvous; a collective that hangs fails by the process
group's timeout, and the test itself gives up after DEADLINE seconds. Everything is float64 with tight tolerances.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmlab.align import distributed as dist_loss
from mmlab.align import info_nce, siglip_loss
from mmlab.train import TrainConfig, fit

DEADLINE = 120  # seconds for a whole spawned run
B, D_IN, D = 5, 6, 7  # rows per rank (odd on purpose), input and feature widths
TIGHT = dict(rtol=1e-10, atol=1e-12)


def run_ranks(fn, world: int, tmp_path, *args) -> None:
    """Run fn(rank, world, init_file, *args) in `world` spawned processes; re-raise a worker's failure."""
    init = tmp_path / "rendezvous"
    ctx = torch.multiprocessing.start_processes(fn, args=(world, str(init), *args), nprocs=world, join=False,
                                                start_method="spawn")
    end = time.monotonic() + DEADLINE
    while not ctx.join(timeout=max(1.0, end - time.monotonic())):
        if time.monotonic() > end:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {world} processes did not finish within {DEADLINE} s (a hung collective?)")


def _init(rank: int, world: int, init: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world,
                                         timeout=timedelta(seconds=60))


def _global_batch(world: int):
    g = torch.Generator().manual_seed(0)
    x_img = torch.randn(world * B, D_IN, generator=g, dtype=torch.float64)
    x_txt = torch.randn(world * B, D_IN, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (world * B,), generator=g)  # 3 classes: several positives per row
    return x_img, x_txt, labels[:, None] == labels[None, :]


class Towers(nn.Module):
    """Two linear towers, normalised, a learnable log scale and (for SigLIP) bias, float64. Like DualEncoder, the
    forward returns the scale and bias too, so that DDP sees every parameter used by the loss."""

    def __init__(self, kind: str = "local"):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.image = nn.Linear(D_IN, D, bias=False, dtype=torch.float64)
        self.text = nn.Linear(D_IN, D, bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.image.weight.copy_(torch.randn(D, D_IN, generator=g, dtype=torch.float64))
            self.text.weight.copy_(torch.randn(D, D_IN, generator=g, dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor(-3.0, dtype=torch.float64)) if kind == "siglip" else None

    def forward(self, x_img, x_txt):
        return (F.normalize(self.image(x_img), dim=-1), F.normalize(self.text(x_txt), dim=-1), self.log_scale.exp(),
                self.bias)


def _loss(kind, img, txt, s, bias, mask=None, distributed=True):
    if kind == "siglip":
        return (dist_loss.siglip_loss if distributed else siglip_loss)(img, txt, s, bias)
    if not distributed:
        return info_nce(img, txt, s, mask)
    return dist_loss.info_nce(img, txt, s, positive_mask=mask, local_loss=kind == "local")


def _single_process(kind, x_img, x_txt, mask):
    model = Towers(kind)
    loss = _loss(kind, *model(x_img, x_txt), mask, distributed=False)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def _ddp_mean_grads(model):
    """What DDP does: every parameter's gradient averaged over the ranks."""
    world = torch.distributed.get_world_size()
    out = {}
    for n, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad.clone()
            torch.distributed.all_reduce(g)
            out[n] = g / world
    return out


def _naive_gather(x):
    """The pitfall: all_gather without autograd, the local tensor put back in its slot (grad only locally)."""
    parts = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, x)
    parts[torch.distributed.get_rank()] = x
    return torch.cat(parts)


def _check_losses(rank, world, kinds):
    x_img, x_txt, mask = _global_batch(world)
    rows = slice(rank * B, (rank + 1) * B)
    for kind, masked in kinds:
        m = mask if masked else None
        want, want_grads = _single_process(kind, x_img, x_txt, m)
        model = Towers(kind)
        loss = _loss(kind, *model(x_img[rows], x_txt[rows]), m)
        torch.testing.assert_close(loss.detach(), want, **TIGHT, msg=f"{kind} mask={masked}: value on rank {rank}")
        loss.backward()
        grads = _ddp_mean_grads(model)
        assert grads.keys() == want_grads.keys()
        for n in grads:
            torch.testing.assert_close(grads[n], want_grads[n], **TIGHT, msg=f"{kind} mask={masked}: grad of {n}")


def _check_gather_and_pitfall(rank, world):
    x = torch.arange(6.0, dtype=torch.float64).reshape(2, 3).add(10 * rank).requires_grad_()
    gathered = dist_loss.gather_with_grad(x)
    torch.testing.assert_close(gathered.detach(), torch.cat([torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
                                                             + 10 * r for r in range(world)]))
    weights = torch.arange(gathered.numel(), dtype=torch.float64).reshape(gathered.shape) * (rank + 1)
    (gathered * weights).sum().backward()  # rank q's loss weights the rows by (q + 1)
    base = torch.arange(gathered.numel(), dtype=torch.float64).reshape(gathered.shape)[rank * 2:(rank + 1) * 2]
    torch.testing.assert_close(x.grad, base * sum(q + 1 for q in range(world)))  # summed over the ranks' losses

    # the pitfall: a gather that keeps only the local gradient leaves the towers with 1/W of the gradient
    x_img, x_txt, _ = _global_batch(world)
    _, want = _single_process("global", x_img, x_txt, None)
    model = Towers()
    rows = slice(rank * B, (rank + 1) * B)
    img, txt, s, _ = model(x_img[rows], x_txt[rows])
    info_nce(_naive_gather(img), _naive_gather(txt), s).backward()
    grads = _ddp_mean_grads(model)
    torch.testing.assert_close(grads["image.weight"], want["image.weight"] / world, **TIGHT)
    torch.testing.assert_close(grads["log_scale"], want["log_scale"], **TIGHT)  # ... but the scale gets all of it

    # bad inputs are errors on every rank (no rank is left waiting in a collective)
    with pytest.raises(ValueError, match="same shape on every rank"):
        dist_loss.gather_with_grad(torch.zeros(2 + rank, 3))
    feats = F.normalize(torch.randn(B, D, dtype=torch.float64), dim=-1)
    with pytest.raises(ValueError, match=rf"positive_mask must have shape \({world * B}, {world * B}\)"):
        dist_loss.info_nce(feats, feats, 10.0, positive_mask=torch.eye(B, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape on every rank"):
        dist_loss.siglip_loss(feats[:B - rank], feats[:B - rank], 10.0, -5.0)


def _check_ddp_fit_step(rank, world, kind):
    # SGD, not Adam: Adam's first steps hardly depend on the gradient's scale, so they would hide a factor W
    x_img, x_txt, mask = _global_batch(world)
    rows = slice(rank * B, (rank + 1) * B)
    m = mask if kind != "siglip" else None

    config = TrainConfig(steps=2, progress=False)
    ddp = nn.parallel.DistributedDataParallel(Towers(kind))
    fit(ddp, lambda mod, batch: _loss(kind, *mod(*batch), m), [(x_img[rows], x_txt[rows])], config,
        optimizer=torch.optim.SGD(ddp.parameters(), lr=0.5))
    single = Towers(kind)
    fit(single, lambda mod, batch: _loss(kind, *mod(*batch), m, distributed=False), [(x_img, x_txt)], config,
        optimizer=torch.optim.SGD(single.parameters(), lr=0.5))
    moved = 0.0
    for (n, p), q, p0 in zip(ddp.module.named_parameters(), single.parameters(), Towers(kind).parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), **TIGHT, msg=f"{kind}: {n} after 2 SGD steps")
        moved = max(moved, float((q - p0).abs().max()))
    assert moved > 1e-3  # the steps changed the parameters


def _two_ranks(rank, world, init):
    _init(rank, world, init)
    _check_losses(rank, world, [("global", False), ("global", True), ("local", False), ("local", True),
                                ("siglip", False)])  # the ring: one one-way exchange
    _check_gather_and_pitfall(rank, world)
    for kind in ("local", "global", "siglip"):
        _check_ddp_fit_step(rank, world, kind)
    torch.distributed.destroy_process_group()


def _four_ranks(rank, world, init):
    _init(rank, world, init)
    _check_losses(rank, world, [("local", True), ("siglip", False)])  # the ring: one two-way, one one-way exchange
    torch.distributed.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    """InfoNCE (global and local forms, with and without a positive mask) and SigLIP: values and DDP-averaged
    gradients; gather_with_grad's gradient sums and the naive gather's 1/W; bad inputs; two DDP steps through fit."""
    run_ranks(_two_ranks, 2, tmp_path)


def test_four_processes_equal_one(tmp_path):
    run_ranks(_four_ranks, 4, tmp_path)



def test_one_process_is_the_plain_loss():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=-1)
    mask = torch.eye(6, dtype=torch.bool) | torch.eye(6, dtype=torch.bool).roll(1, 0)
    assert not torch.distributed.is_initialized()
    assert dist_loss.rank_and_world() == (0, 1)
    assert dist_loss.gather_with_grad(img) is img
    for local in (True, False):
        assert torch.equal(dist_loss.info_nce(img, txt, 10.0, mask, local_loss=local), info_nce(img, txt, 10.0, mask))
    assert torch.equal(dist_loss.siglip_loss(img, txt, 10.0, -5.0), siglip_loss(img, txt, 10.0, -5.0))


@pytest.mark.parametrize("call, error, match", [
    (lambda x: dist_loss.gather_with_grad([1, 2]), TypeError, "x must be a torch.Tensor"),
    (lambda x: dist_loss.gather_with_grad(torch.tensor(1.0)), ValueError, "batch dimension"),
    (lambda x: dist_loss.info_nce(x, x, 10.0, local_loss=1), TypeError, "local_loss must be True or False"),
    (lambda x: dist_loss.info_nce(x, x[:3], 10.0), ValueError, "batch mismatch"),
    (lambda x: dist_loss.info_nce(x, x, -1.0), ValueError, "logit_scale must be positive"),
    (lambda x: dist_loss.info_nce(x, x, 10.0, torch.ones(4, 4)), TypeError, "positive_mask must be a bool"),
    (lambda x: dist_loss.siglip_loss(x, x.int(), 10.0, 0.0), TypeError, "floating point"),
    (lambda x: dist_loss.siglip_loss(x, x, 10.0, "b"), TypeError, "logit_bias"),
])
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.randn(4, 3))
