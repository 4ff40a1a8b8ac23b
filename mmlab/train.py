"""A small generic training loop: progress bar, mixed precision, gradient accumulation and clipping,
and checkpoints that resume exactly.

    history = fit(model, loss_fn, batches, TrainConfig(steps=200, lr=1e-3))

`loss_fn(model, batch) -> scalar loss`. `batches` is either a callable `i -> batch` (called with the
micro-batch index `i = step * grad_accum_steps + k`, so `i == step` without accumulation) or an
iterable, cycled when it runs out (a list, a DataLoader). A resumed run reproduces the uninterrupted
run's losses exactly when the batches are a function of their index (a callable, or an iterable whose
order does not depend on the global RNG): model, optimizer, scheduler, grad scaler, step, history and
every RNG state (Python, NumPy, torch CPU and CUDA) are restored from the checkpoint.

The default optimizer is AdamW over `mmlab.optim.parameter_groups` (no weight decay on biases, norms,
embeddings, token/position tables and scalars), with an optional warm-up + cosine lr schedule
(`TrainConfig(schedule="cosine", warmup_steps=..., min_lr_ratio=...)`).

`grad_cache_step` (GradCache, Gao et al., 2021) gives a contrastive loss's full-batch gradient from chunks that
fit in memory; inside `fit`, pass `loss_fn_backward=True` (see its docstring).
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from mmlab.optim import SCHEDULES, lr_factor, parameter_groups
from mmlab.runtime import seed_everything

CHECKPOINT_NAME = "checkpoint.safetensors"
AMP_MODES = ("none", "bf16", "fp16")
# TrainConfig fields a resumed run may change; every other one must equal the checkpoint's.
MAY_CHANGE_ON_RESUME = ("steps", "progress", "checkpoint_dir", "checkpoint_every")


@dataclass
class TrainConfig:
    """Settings of `fit`. `steps` counts optimizer steps; each consumes `grad_accum_steps` micro-batches.

    `schedule`: "constant" or "cosine" (CLIP's: down to `min_lr_ratio * lr` at the end), after a linear
    warm-up over `warmup_steps` steps (see `mmlab.optim.lr_factor`). On resume only `steps` (at least
    the checkpoint's step; fixed under "cosine", whose length it sets), `progress`, `checkpoint_dir` and
    `checkpoint_every` may differ from the checkpoint's config.
    """
    steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = None
    amp: str = "none"  # "none" | "bf16" (CPU and GPU) | "fp16" (GPU only, with a GradScaler)
    checkpoint_dir: str | Path | None = None
    checkpoint_every: int = 0  # save every N steps (and at the end) when > 0 and checkpoint_dir is set
    progress: bool = True
    seed: int = 0
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        v = validation
        v.positive_int("steps", self.steps)
        v.finite_float("lr", self.lr, 0, low_open=True)
        v.finite_float("weight_decay", self.weight_decay, 0)
        v.positive_int("grad_accum_steps", self.grad_accum_steps)
        if self.clip_grad_norm is not None:
            v.finite_float("clip_grad_norm", self.clip_grad_norm, 0, low_open=True)
        v.one_of("amp", self.amp, AMP_MODES)
        if self.checkpoint_dir is not None:
            v.as_path("checkpoint_dir", self.checkpoint_dir)
        v.non_negative_int("checkpoint_every", self.checkpoint_every)
        if self.checkpoint_every > 0 and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every > 0 needs a checkpoint_dir")
        v.boolean("progress", self.progress)
        v.non_negative_int("seed", self.seed)
        v.one_of("schedule", self.schedule, SCHEDULES)
        v.non_negative_int("warmup_steps", self.warmup_steps)
        v.finite_float("min_lr_ratio", self.min_lr_ratio, 0, 1)
        if self.min_lr_ratio and self.schedule != "cosine":
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio} needs schedule='cosine'")


def checkpoint_path(config: TrainConfig) -> Path:
    """Where `fit` keeps the latest checkpoint for this config."""
    if config.checkpoint_dir is None:
        raise ValueError("config.checkpoint_dir is not set")
    return Path(config.checkpoint_dir) / CHECKPOINT_NAME


# ---- RNG state -------------------------------------------------------------------------------

def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, in a checkpoint-friendly form."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `get_rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].to(torch.uint8))
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise ValueError(f"checkpoint has RNG states for {len(state['cuda'])} GPUs, this machine has "
                             f"{torch.cuda.device_count()}")
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])


# ---- pieces of the loop ----------------------------------------------------------------------

def _device_type(model: nn.Module) -> str:
    p = next(model.parameters(), None)
    if p is None:
        raise ValueError("the model has no parameters to train")
    return p.device.type


def _autocast(amp: str, device_type: str):
    if amp == "none":
        return nullcontext()
    if amp == "fp16" and device_type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA GPU (the model is on {device_type!r}); "
                         "use amp='bf16' on CPU, or amp='none'")
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _batch_source(batches: Iterable | Callable[[int], Any], start: int) -> Callable[[], Any]:
    """A function returning the next micro-batch, starting at micro-batch index `start`."""
    if callable(batches) and not hasattr(batches, "__iter__"):
        counter = iter(range(start, 2**62))
        return lambda: batches(next(counter))
    if not hasattr(batches, "__iter__"):
        raise TypeError(f"batches must be an iterable or a callable index -> batch, got {type(batches).__name__}")
    one_shot = iter(batches) is batches  # a generator or iterator cannot be cycled
    state: dict[str, Iterator] = {"it": iter(batches)}
    served = 0

    def next_batch() -> Any:
        nonlocal served
        try:
            item = next(state["it"])
        except StopIteration:
            if one_shot or served == 0:
                raise RuntimeError(f"batches ran out after {served} micro-batches; pass a list, a DataLoader "
                                   "or a callable index -> batch so that it can be cycled") from None
            state["it"] = iter(batches)
            item = next(state["it"])
        served += 1
        return item

    for _ in range(start):  # skip what a resumed run already consumed
        next_batch()
    return next_batch


def _check_loss(loss: Any, needs_grad: bool = True) -> Tensor:
    """The loss as a 0-d tensor; checks what the host knows without reading its value."""
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise TypeError(f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
                        f"{tuple(getattr(loss, 'shape', ()))}")
    if needs_grad and not loss.requires_grad:
        raise ValueError("the loss does not require grad: are all the parameters frozen?")
    return loss.reshape(())


def _grad_norm(params: list[Tensor], clip: float | None) -> Tensor:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        raise ValueError("no trainable parameter received a gradient: does the loss depend on them?")
    return torch.nn.utils.clip_grad_norm_(grads, clip if clip is not None else float("inf"))


def _read_step(losses: list[Tensor], norm: Tensor, step: int, steps: int) -> tuple[float, float]:
    """(mean loss, grad norm) of optimizer step `step` (1-based): the step's one read of device values."""
    *values, norm_value = torch.stack([*losses, norm.to(losses[0].device)]).tolist()
    loss = sum(values) / len(values)
    if not math.isfinite(loss):
        raise FloatingPointError(f"the loss is {loss} at step {step} of {steps} (mean over its micro-batches); "
                                 "lower the lr, set clip_grad_norm, or check the inputs and the loss_fn")
    return loss, norm_value


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def _save(path: Path, model: nn.Module, optimizer, scheduler, scaler, step: int, history: dict,
          config: TrainConfig) -> None:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": get_rng_state(),
        "history": {k: history[k] for k in ("loss", "lr", "grad_norm")},
        "config": _config_dict(config),
    }
    save_checkpoint(path, state)


def _check_same_run(saved: dict[str, Any], config: TrainConfig, step: int, path: Path) -> None:
    """A ValueError unless `config` continues the run saved in `path` (see TrainConfig)."""
    new = _config_dict(config)
    fixed = [k for k in new if k not in MAY_CHANGE_ON_RESUME or (k == "steps" and config.schedule == "cosine")]
    changed = [f"{k} {saved.get(k)!r} -> {new[k]!r}" for k in fixed if saved.get(k) != new[k]]
    if changed:
        raise ValueError(f"{path} was saved with other settings; resuming would change {', '.join(changed)}. "
                         "Resume with the saved settings (TrainConfig says which may change) or start a new "
                         "run in another checkpoint_dir")
    if config.steps < step:
        raise ValueError(f"config.steps={config.steps} is below the step {step} of checkpoint {path}")


def _restore(path: Path, config: TrainConfig, model: nn.Module, optimizer, scheduler, scaler) -> tuple[int, dict]:
    """Load the checkpoint at `path` into the model, optimizer, scheduler, scaler and the global RNGs.

    Returns (its step, its history lists). A `config` that does not continue that run, or a checkpoint of
    another model shape (a CheckpointError naming the keys), is a ValueError raised before anything is loaded."""
    state = load_checkpoint(path)
    step = int(state["step"])
    _check_same_run(state["config"], config, step, path)
    if scheduler is not None and state["scheduler"] is None:
        raise ValueError(f"{path} was saved without a scheduler but one was passed")
    load_model_state(model, state["model"], path)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return step, {k: list(state["history"][k]) for k in ("loss", "lr", "grad_norm")}


# ---- the loop --------------------------------------------------------------------------------

def fit(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batches: Iterable | Callable[[int], Any],
        config: TrainConfig, optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None, resume: bool = False,
        callbacks: Iterable[Callable[[int, nn.Module, dict], Any]] = (),
        loss_fn_backward: bool = False) -> dict[str, Any]:
    """Train `model` for `config.steps` optimizer steps; return the history.

    Seeds Python, NumPy and torch with `config.seed` first (`mmlab.runtime.seed_everything`: dropout and
    any random batches repeat). Batches go to `loss_fn` as they come: move them to the model's device
    there (or in `batches`). Default optimizer: AdamW(lr, weight_decay) over
    `mmlab.optim.parameter_groups(model, weight_decay)`. `scheduler` is stepped once per optimizer step;
    without one, a schedule set in `config` (warm-up, cosine) runs as a LambdaLR over the optimizer's lr
    (passing both is a ValueError). Each of `callbacks` is called as `callback(step, model, history)`
    after every optimizer step, with `step` the number of steps done (1-based) and that step already in
    `history`, before any checkpoint of it is saved: the place for a model's post-step hook (CLIP clips
    its temperature after every step).

    With `resume=True` the latest checkpoint in `config.checkpoint_dir` (if there is one) is loaded and
    training continues from its step; a config that changes the run is a ValueError (see TrainConfig).
    The loss is read on the host once per optimizer step: a NaN or inf loss stops training with a
    FloatingPointError naming the step, before that step changes the parameters.

    `loss_fn_backward=True`: `loss_fn` has already back-propagated its loss into the parameters' `.grad` and
    returns it detached, as a loss_fn that calls `grad_cache_step` does; fit then calls no backward itself
    (with `grad_accum_steps=k` it divides the summed gradients by k, as it otherwise divides each loss by k).
    Not with amp="fp16", whose GradScaler must scale the loss before backward.

    History: per step "loss" (mean over micro-batches), "lr" (used by that step), "grad_norm" (before
    clipping; inf on a step the fp16 scaler skipped), plus "resumed_from" (step or None) and "seconds"
    (wall time of this call).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"every callback must be callable as callback(step, model, history), got {cb!r}")
    validation.boolean("loss_fn_backward", loss_fn_backward)
    if loss_fn_backward and config.amp == "fp16":
        raise ValueError("loss_fn_backward=True cannot be used with amp='fp16' (the GradScaler must scale the loss "
                         "before backward); use amp='bf16' or 'none'")
    device_type = _device_type(model)
    _autocast(config.amp, device_type)  # validates amp before any work
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    if optimizer is None:
        optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)
    if config.schedule != "constant" or config.warmup_steps:
        if scheduler is not None:
            raise ValueError("pass either scheduler= or a schedule in TrainConfig (schedule, warmup_steps), not both")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(
            i, config.steps, config.schedule, config.warmup_steps, config.min_lr_ratio))
    scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None

    seed_everything(config.seed)
    history: dict[str, Any] = {"loss": [], "lr": [], "grad_norm": [], "resumed_from": None}
    start = 0
    ckpt = checkpoint_path(config) if config.checkpoint_dir is not None else None
    if resume:
        if ckpt is None:
            raise ValueError("resume=True needs config.checkpoint_dir")
        if ckpt.exists():
            start, saved = _restore(ckpt, config, model, optimizer, scheduler, scaler)
            history.update(saved, resumed_from=start)
    next_batch = _batch_source(batches, start * config.grad_accum_steps)

    from tqdm.auto import tqdm
    bar = tqdm(total=config.steps, initial=start, disable=not config.progress, desc="train", leave=True)
    t0 = time.perf_counter()
    model.train()
    try:
        for done in range(start + 1, config.steps + 1):  # done = optimizer steps finished after this one
            optimizer.zero_grad(set_to_none=True)
            losses = []
            for _ in range(config.grad_accum_steps):
                batch = next_batch()
                with _autocast(config.amp, device_type):
                    loss = _check_loss(loss_fn(model, batch), needs_grad=not loss_fn_backward)
                losses.append(loss.detach())
                if not loss_fn_backward:
                    scaled = loss.float() / config.grad_accum_steps
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
            if loss_fn_backward and config.grad_accum_steps > 1:
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(config.grad_accum_steps)
            if scaler is not None:
                scaler.unscale_(optimizer)
            loss_value, norm = _read_step(losses, _grad_norm(params, config.clip_grad_norm), done, config.steps)
            lr = float(optimizer.param_groups[0]["lr"])
            if scaler is not None:
                scaler.step(optimizer)  # skipped (and the scale lowered) if any gradient is inf/nan
                scaler.update()
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            history["loss"].append(loss_value)
            history["lr"].append(lr)
            history["grad_norm"].append(norm)
            for cb in callbacks:
                cb(done, model, history)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
            if ckpt is not None and config.checkpoint_every > 0 and (
                    done % config.checkpoint_every == 0 or done == config.steps):
                _save(ckpt, model, optimizer, scheduler, scaler, done, history, config)
    finally:
        bar.close()
    history["seconds"] = time.perf_counter() - t0
    return history


# ---- GradCache -------------------------------------------------------------------------------

def _capture_rng() -> tuple[Tensor, list[Tensor]]:
    """The torch CPU generator state and, once CUDA is in use, every GPU's (CUDA is not initialised for this)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return torch.get_rng_state(), cuda


def _restore_rng(state: tuple[Tensor, list[Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])


@contextmanager
def _replay_rng(state: tuple[Tensor, list[Tensor]]):
    """Run the block from the generator states `state`, then put back the states it found."""
    now = _capture_rng()
    _restore_rng(state)
    try:
        yield
    finally:
        _restore_rng(now)


def _chunks(name: str, inputs: Any, chunk_size: int) -> list[Any]:
    """A tensor, or a dict of tensors of one length, split along dim 0 into pieces of `chunk_size` rows."""
    if isinstance(inputs, Tensor):
        if inputs.dim() == 0 or inputs.shape[0] == 0:
            raise ValueError(f"{name} must have a non-empty batch dimension, got shape {tuple(inputs.shape)}")
        return list(inputs.split(chunk_size))
    if not isinstance(inputs, Mapping) or not inputs:
        raise TypeError(f"{name} must be a tensor or a non-empty dict of tensors, got {type(inputs).__name__}")
    for key, value in inputs.items():
        validation.require_tensor(f"{name}[{key!r}]", value)
    lengths = {key: (value.shape[0] if value.dim() else 0) for key, value in inputs.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"{name}'s tensors must share one non-empty batch dimension, got lengths {lengths}")
    pieces = {key: value.split(chunk_size) for key, value in inputs.items()}
    return [{key: pieces[key][i] for key in inputs} for i in range(len(next(iter(pieces.values()))))]


def _encode(name: str, encode: Callable[[Any], Tensor], chunk: Any, rows: int) -> Tensor:
    out = encode(chunk)
    if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != rows:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{name} must return a tensor with one row per input row ({rows}), got {got}")
    return out


def _rows(chunk: Any) -> int:
    return chunk.shape[0] if isinstance(chunk, Tensor) else next(iter(chunk.values())).shape[0]


def grad_cache_step(encode_a: Callable[[Any], Tensor], encode_b: Callable[[Any], Tensor], inputs_a: Any,
                    inputs_b: Any, loss_fn: Callable[[Tensor, Tensor], Tensor], chunk_size: int) -> Tensor:
    """Back-propagate `loss_fn(encode_a(inputs_a), encode_b(inputs_b))` chunk by chunk (GradCache, Gao et al.,
    2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"); return the loss, detached.

    1. Encode every chunk of `chunk_size` rows without autograd, saving the generator states (torch CPU, and
       every GPU once CUDA is in use) before each chunk.  2. Compute the loss on the concatenated features,
       detached and marked requires_grad, and back-propagate it: the feature gradients (and the gradients of
       anything `loss_fn` uses directly, such as a temperature) are now known.  3. Re-encode each chunk with
       autograd, from its saved generator states, and back-propagate its slice of the feature gradient.

    Memory held for backward: in step 2 the loss graph on the (N, D) features (freed by its backward), in step 3
    the graph of one chunk of one side at a time, throughout the (N, D) features and their gradients; compute:
    one more forward pass. After the call every `.grad` holds what `loss_fn(za, zb).backward()` accumulates,
    where za and zb are the chunks' features of step 1 concatenated. With no random layers, and provided no
    layer mixes examples across the batch (no BatchNorm in train mode, which would normalise each chunk with its
    own statistics), that is `loss_fn(encode_a(inputs_a), encode_b(inputs_b)).backward()` (up to float
    rounding), exactly the big batch's gradient. With dropout it is the same except that each chunk draws its own
    dropout masks (a full-batch forward would draw others of the same distribution), and step 3 replays exactly
    the masks of step 1. The generator states after the call are those after step 1, as after a forward pass.
    Layers with state that a forward changes (BatchNorm's running statistics) are updated twice.

    inputs_a, inputs_b: tensors or dicts of tensors (e.g. input_ids and attention_mask), split along dim 0; their
    lengths may differ. encode_a, encode_b: inputs -> (rows, ...) features. loss_fn: (za, zb) -> scalar tensor.
    """
    validation.require_callable("encode_a", encode_a)
    validation.require_callable("encode_b", encode_b)
    validation.require_callable("loss_fn", loss_fn)
    validation.positive_int("chunk_size", chunk_size)
    sides = [("encode_a", encode_a, _chunks("inputs_a", inputs_a, chunk_size)),
             ("encode_b", encode_b, _chunks("inputs_b", inputs_b, chunk_size))]
    cached = []
    for name, encode, chunks in sides:  # 1. no-grad forward, one RNG snapshot per chunk
        states, feats = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(_capture_rng())
                feats.append(_encode(name, encode, chunk, _rows(chunk)))
        cached.append((states, torch.cat(feats).detach().requires_grad_()))  # (N, D)
    (_, za), (_, zb) = cached
    loss = loss_fn(za, zb)  # 2. the loss on the cached features
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise TypeError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
    loss.backward()
    for (name, encode, chunks), (states, z) in zip(sides, cached):  # 3. replay each chunk with its cached gradient
        if z.grad is None:
            continue  # the loss does not depend on this side
        start = 0
        for chunk, state in zip(chunks, states):
            rows = _rows(chunk)
            with _replay_rng(state):
                out = _encode(name, encode, chunk, rows)
            if not out.requires_grad:
                raise ValueError(f"{name}'s output does not require grad: are its parameters frozen?")
            out.backward(z.grad[start:start + rows])
            start += rows
    return loss.detach()
