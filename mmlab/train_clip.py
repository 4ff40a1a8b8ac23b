"""`python -m mmlab train-clip`: a small CLIP (or SigLIP) run on Shapes-World, in one process or under torchrun.

    python -m mmlab train-clip --out runs/clip --steps 60
    torchrun --nproc_per_node=2 -m mmlab train-clip --out runs/clip2 --steps 60
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        -m mmlab train-clip --out runs/clip8        (the same command on every machine, node_rank 0, 1, ...)

Under torchrun (WORLD_SIZE > 1) each process joins the default process group (NCCL on CUDA, gloo on CPU), wraps
the DualEncoder in DistributedDataParallel and takes its slice of every global batch of `--batch-size` pairs:
rank r encodes rows r·b ... (r+1)·b - 1, b = batch_size / world size. The loss is `mmlab.align.distributed`'s
(InfoNCE, local-loss form unless `--global-loss`, with the global positive mask over the 48 shape/colour/size
classes, as in lesson 06; or SigLIP's ring), so the run follows the single-process run on the whole batch.
Training goes through `mmlab.train.fit`: each rank checkpoints its own state (RNG included) under
`OUT/rank<r>/` every `--checkpoint-every` steps, and `--resume` continues from there (the run's settings and
world size are kept in `OUT/run.json` and must match). Rank 0 prints the loss and, at the end, test Recall@K,
and writes the per-step losses, gradient norms (of the DDP-averaged gradient, before clipping) and the recall to
`OUT/history.json`.

A bad argument is one line naming it and exit status 2, before any process group or training starts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmlab import validation
from mmlab.align import distributed
from mmlab.align.model import DualEncoder, clamp_logit_scale
from mmlab.align.shapes_recipe import CompactVocabulary, attribute_classes, tiny_dual_encoder
from mmlab.data import ShapesWorld
from mmlab.evaluate import recall_at_k
from mmlab.runtime import pick_device, seed_everything
from mmlab.train import TrainConfig, fit

RUN_FILE = "run.json"
HISTORY_FILE = "history.json"  # rank 0, at the end: per-step losses and gradient norms (all steps) and test recall
MAX_LEN = 24
# settings a resumed run must share with the saved one (steps may grow; fit checks its own config too)
KEPT_ON_RESUME = ("world_size", "batch_size", "loss", "global_loss", "train_size", "lr", "seed", "dim")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmlab train-clip", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for run.json and the checkpoints")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps (default 60)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch: pairs per step over all ranks")
    parser.add_argument("--loss", choices=("info_nce", "siglip"), default="info_nce")
    parser.add_argument("--global-loss", action="store_true",
                        help="InfoNCE: every rank computes the whole (N, N) loss instead of its rows (local loss)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=1000, help="training scenes (4 captions each)")
    parser.add_argument("--dim", type=int, default=32, help="tower width (multiple of 4; 2 layers, 4 heads)")
    parser.add_argument("--checkpoint-every", type=int, default=20, help="0: no checkpoints")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--resume", action="store_true", help="continue from OUT's checkpoints")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return parser


def _world_from_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun sets them; (0, 0, 1) in a plain process."""
    values = []
    for name, default in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)):
        raw = os.environ.get(name, str(default))
        try:
            values.append(int(raw))
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    return tuple(values)


def check_args(args: argparse.Namespace, world: int) -> dict[str, Any]:
    """The run's settings as a dict; a TypeError/ValueError naming the first bad argument."""
    v = validation
    for name in ("steps", "batch_size", "train_size", "log_every"):
        v.positive_int(f"--{name.replace('_', '-')}", getattr(args, name))
    v.non_negative_int("--checkpoint-every", args.checkpoint_every)
    v.non_negative_int("--seed", args.seed)
    v.finite_float("--lr", args.lr, 0, low_open=True)
    if args.dim <= 0 or args.dim % 4:
        raise ValueError(f"--dim must be a positive multiple of 4 (4 heads), got {args.dim}")
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} must be divisible by the world size {world}")
    if args.batch_size > args.train_size:
        raise ValueError(f"--batch-size {args.batch_size} is larger than --train-size {args.train_size}")
    if args.global_loss and args.loss != "info_nce":
        raise ValueError("--global-loss applies to --loss info_nce only (SigLIP's ring has no global form)")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA GPU")
    v.writable_path("--out", args.out, folder=True)
    settings = {k: getattr(args, k) for k in KEPT_ON_RESUME if k != "world_size"}
    settings["world_size"] = world
    run_file = args.out / RUN_FILE
    if args.resume and run_file.exists():
        saved = json.loads(run_file.read_text())
        changed = [f"{k} {saved.get(k)!r} -> {settings[k]!r}" for k in KEPT_ON_RESUME if saved.get(k) != settings[k]]
        if changed:
            raise ValueError(f"--resume: {run_file} was saved with other settings ({', '.join(changed)})")
    elif not args.resume and any(args.out.glob("rank*/checkpoint.safetensors")):
        raise ValueError(f"--out {args.out} already holds checkpoints; pass --resume or another --out")
    return settings


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write through a temporary in the same folder, then os.replace: a failed write leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


def shapes_clip_data(train_size: int) -> dict[str, Any]:
    """Shapes-World train/test scenes, captions as ids in the compact vocabulary of the training captions
    (`shapes_recipe.CompactVocabulary`), 4 caption rows per training scene."""
    train = ShapesWorld("train", size=train_size, with_audio=False).batch(range(train_size))
    test = ShapesWorld("test", size=200, with_audio=False).batch(range(200))
    captions = [c for caps in train["captions"] for c in caps]
    vocab = CompactVocabulary(captions, max_length=MAX_LEN)
    enc = vocab(captions, padding="max_length")
    test_enc = vocab([caps[0] for caps in test["captions"]], padding="max_length")
    return {"image": train["image"], "ids": enc["input_ids"], "mask": enc["attention_mask"],
            "classes": attribute_classes(train), "vocab": len(vocab),
            "test_image": test["image"], "test_ids": test_enc["input_ids"], "test_mask": test_enc["attention_mask"]}


def build_model(vocab_size: int, dim: int, loss: str) -> DualEncoder:
    """The lessons' tiny dual encoder (`shapes_recipe.tiny_dual_encoder`) at width `dim`, a `dim`-d joint space."""
    return tiny_dual_encoder(vocab_size, max_length=MAX_LEN, dim=dim, loss=loss, embed_dim=dim)


def global_batch_rows(step: int, seed: int, batch_size: int, train_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scene indices, caption rows) of global batch `step`: the same on every rank, whatever the world size."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randperm(train_size, generator=g)[:batch_size]
    return idx, idx * 4 + torch.randint(0, 4, (batch_size,), generator=g)


def _batches(data: dict[str, Any], settings: dict[str, Any], rank: int, world: int, device: torch.device):
    b = settings["batch_size"] // world

    def batch(step: int) -> dict[str, Any]:
        idx, rows = global_batch_rows(step, settings["seed"], settings["batch_size"], settings["train_size"])
        classes = data["classes"][idx]
        mine = slice(rank * b, (rank + 1) * b)
        ids, mask = data["ids"][rows[mine]], data["mask"][rows[mine]]
        length = int(mask.sum(1).max())
        return {"image": data["image"][idx[mine]].to(device),
                "text": {"input_ids": ids[:, :length].to(device), "attention_mask": mask[:, :length].to(device)},
                "positive": (classes[:, None] == classes[None, :]).to(device)}  # (N, N): the global mask
    return batch


def _loss_fn(settings: dict[str, Any]):
    def loss_fn(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        out = model(batch["image"], batch["text"])
        if settings["loss"] == "siglip":
            return distributed.siglip_loss(out["image"], out["text"], out["logit_scale"], out["logit_bias"])
        return distributed.info_nce(out["image"], out["text"], out["logit_scale"], positive_mask=batch["positive"],
                                    local_loss=not settings["global_loss"])
    return loss_fn


@torch.no_grad()
def _test_recall(model: DualEncoder, data: dict[str, Any], device: torch.device) -> dict[str, float]:
    model.eval()
    img = model.encode_image(data["test_image"].to(device))
    txt = model.encode_text({"input_ids": data["test_ids"].to(device), "attention_mask": data["test_mask"].to(device)})
    return recall_at_k(img.cpu(), txt.cpu(), ks=(1, 5))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rank, local_rank, world = _world_from_env()
        settings = check_args(args, world)
    except (TypeError, ValueError) as err:
        parser.error(str(err))  # exit 2, before any work
    if args.device == "auto":
        device = pick_device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                             timeout=timedelta(minutes=5))
    try:
        return _train(args, settings, rank, world, device)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def _train(args: argparse.Namespace, settings: dict[str, Any], rank: int, world: int, device: torch.device) -> int:
    if rank == 0:
        _write_json(args.out / RUN_FILE, settings)
        backend = ("nccl" if device.type == "cuda" else "gloo") if world > 1 else "not distributed"
        form = "" if settings["loss"] == "siglip" or world == 1 else " global" if settings["global_loss"] else " local"
        print(f"train-clip: {world} process(es) on {device.type} ({backend}), global batch "
              f"{settings['batch_size']} = {world} x {settings['batch_size'] // world}, loss {settings['loss']}"
              f"{form}",
              flush=True)
    data = shapes_clip_data(settings["train_size"])
    seed_everything(settings["seed"])
    model = build_model(data["vocab"], settings["dim"], settings["loss"]).to(device)
    trained: nn.Module = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def log(step: int, _: nn.Module, history: dict) -> None:
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            print(f"step {step:4d}/{args.steps}  loss {history['loss'][-1]:.4f}  "
                  f"scale {float(model.logit_scale().detach()):.2f}", flush=True)

    config = TrainConfig(steps=args.steps, lr=settings["lr"], seed=settings["seed"], progress=False,
                         checkpoint_dir=args.out / f"rank{rank}" if args.checkpoint_every else None,
                         checkpoint_every=args.checkpoint_every)
    history = fit(trained, _loss_fn(settings), _batches(data, settings, rank, world, device), config,
                  resume=args.resume and args.checkpoint_every > 0, callbacks=(clamp_logit_scale, log))
    if rank == 0:
        if history["resumed_from"] is not None:
            print(f"resumed from step {history['resumed_from']}")
        r = _test_recall(model, data, device)
        ran = args.steps - (history["resumed_from"] or 0)
        print(f"done: step {args.steps} ({ran} trained by this call in {history['seconds']:.1f} s); "
              f"test (200 scenes, first caption) "
              f"i2t R@1 {r['i2t@1']:.2f} R@5 {r['i2t@5']:.2f} | t2i R@1 {r['t2i@1']:.2f} R@5 {r['t2i@5']:.2f} "
              f"(chance R@1 0.005, R@5 0.025)", flush=True)
        _write_json(args.out / HISTORY_FILE, {"world_size": world, "loss": history["loss"], "lr": history["lr"],
                                             "grad_norm": [float(g) for g in history["grad_norm"]],
                                             "resumed_from": history["resumed_from"], "test_recall": r})
    return 0


if __name__ == "__main__":
    sys.exit(main())
