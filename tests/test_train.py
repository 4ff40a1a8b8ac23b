"""mmlab.train and mmlab.checkpoint: resume equivalence, accumulation, AMP, clipping, safe checkpoints."""
import json
import math
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

import mmlab.checkpoint as checkpoint
from mmlab.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mmlab.train import TrainConfig, checkpoint_path, fit


def make_model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, 3))


W = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))


def regression_batch(i, n=8):
    g = torch.Generator().manual_seed(1000 + i)
    x = torch.randn(n, 6, generator=g)
    return x, x @ W


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def noisy_batch(i):
    # draws from the global RNGs (torch, NumPy, Python), so resume must restore all three
    x = torch.randn(8, 6) + float(np.random.rand()) + random.random()
    return x, x @ W


def test_trains_and_records_history():
    model = make_model()
    h = fit(model, mse, regression_batch, TrainConfig(steps=40, lr=1e-2, progress=False))
    assert len(h["loss"]) == len(h["lr"]) == len(h["grad_norm"]) == 40
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert h["resumed_from"] is None and h["seconds"] > 0


def test_resume_reproduces_uninterrupted_losses(tmp_path):
    cfg = dict(steps=10, lr=1e-2, progress=False, checkpoint_every=3, clip_grad_norm=1.0)

    def run(model, ckdir, resume=False, crash_at=None):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)
        calls = {"n": 0}

        def loss_fn(m, batch):
            if crash_at is not None and calls["n"] == crash_at:
                raise KeyboardInterrupt("simulated interruption")
            calls["n"] += 1
            return mse(m, batch)
        return fit(model, loss_fn, noisy_batch, TrainConfig(checkpoint_dir=ckdir, **cfg), opt, sched, resume)

    full = run(make_model(dropout=0.2), tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(make_model(dropout=0.2), tmp_path / "b", crash_at=7)  # dies during step 8; last checkpoint at 6
    resumed = run(make_model(seed=5, dropout=0.2), tmp_path / "b", resume=True)  # different init: must be overwritten
    assert resumed["resumed_from"] == 6
    assert resumed["loss"] == full["loss"]
    assert resumed["lr"] == full["lr"]
    assert resumed["grad_norm"] == full["grad_norm"]


def test_resume_with_an_iterable_and_accumulation(tmp_path):
    data = [regression_batch(i, n=4) for i in range(5)]  # cycled: 10 steps x 2 micro-batches = 4 epochs
    cfg = dict(lr=1e-2, progress=False, grad_accum_steps=2, checkpoint_every=4)
    full = fit(make_model(), mse, data, TrainConfig(steps=10, checkpoint_dir=tmp_path / "a", **cfg))
    fit(make_model(), mse, data, TrainConfig(steps=4, checkpoint_dir=tmp_path / "b", **cfg))
    resumed = fit(make_model(), mse, data, TrainConfig(steps=10, checkpoint_dir=tmp_path / "b", **cfg), resume=True)
    assert resumed["resumed_from"] == 4 and resumed["loss"] == full["loss"]


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    h = fit(make_model(), mse, regression_batch,
            TrainConfig(steps=2, progress=False, checkpoint_dir=tmp_path), resume=True)
    assert h["resumed_from"] is None and len(h["loss"]) == 2


def test_grad_accumulation_equals_full_batch():
    full, accum = make_model(), make_model()
    fit(full, mse, lambda i: regression_batch(i, n=8), TrainConfig(steps=5, lr=1e-2, progress=False))

    def half(i):  # micro-batch i = half i % 2 of full batch i // 2
        x, y = regression_batch(i // 2, n=8)
        s = slice(0, 4) if i % 2 == 0 else slice(4, 8)
        return x[s], y[s]
    fit(accum, mse, half, TrainConfig(steps=5, lr=1e-2, grad_accum_steps=2, progress=False))
    for a, b in zip(full.parameters(), accum.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_clipping_bounds_the_update():
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    h = fit(model, lambda m, b: 1000 * mse(m, b), regression_batch,
            TrainConfig(steps=1, clip_grad_norm=0.5, progress=False), optimizer=opt)
    assert h["grad_norm"][0] > 0.5  # the recorded norm is before clipping
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert float(step.norm()) == pytest.approx(0.5, rel=1e-4)


def test_bf16_autocast_runs_on_cpu():
    model = make_model()
    seen = []

    def loss_fn(m, batch):
        out = m(batch[0])
        seen.append(out.dtype)
        return ((out.float() - batch[1]) ** 2).mean()
    h = fit(model, loss_fn, regression_batch, TrainConfig(steps=30, lr=1e-2, amp="bf16", progress=False))
    assert seen[0] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert h["loss"][-1] < h["loss"][0]


def test_fp16_on_cpu_is_a_clear_error():
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        fit(make_model(), mse, regression_batch, TrainConfig(steps=1, amp="fp16", progress=False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_with_grad_scaler_on_gpu(tmp_path):
    model = make_model().cuda()
    h = fit(model, lambda m, b: mse(m, [t.cuda() for t in b]), regression_batch,
            TrainConfig(steps=30, lr=1e-2, amp="fp16", progress=False, checkpoint_dir=tmp_path, checkpoint_every=10))
    assert h["loss"][-1] < h["loss"][0]
    assert load_checkpoint(checkpoint_path(TrainConfig(checkpoint_dir=tmp_path)))["scaler"]["scale"] > 0


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        TrainConfig(checkpoint_every=5)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        TrainConfig(grad_accum_steps=0)
    frozen = make_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(frozen, mse, regression_batch, TrainConfig(steps=1, progress=False))
    with pytest.raises(FloatingPointError, match="nan"):
        fit(make_model(), lambda m, b: mse(m, b) * float("nan"), regression_batch, TrainConfig(steps=1, progress=False))
    with pytest.raises(RuntimeError, match="ran out"):
        fit(make_model(), mse, (regression_batch(i) for i in range(2)), TrainConfig(steps=3, progress=False))


def test_checkpoint_roundtrip_keeps_structure(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "opt": {0: {"exp_avg": torch.ones(2), "step": 3}},
             "betas": (0.9, 0.999), "names": ["a", None], "inf": float("inf")}
    save_checkpoint(tmp_path / "c.safetensors", state)
    back = load_checkpoint(tmp_path / "c.safetensors")
    torch.testing.assert_close(back["w"], state["w"])
    assert back["opt"][0]["step"] == 3 and back["betas"] == (0.9, 0.999) and back["names"] == ["a", None]
    assert back["inf"] == float("inf")
    with pytest.raises(CheckpointError, match="object"):
        save_checkpoint(tmp_path / "d.safetensors", {"f": object()})


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.randn(100)})
    data = path.read_bytes()
    for cut in (len(data) - 7, 30, 3):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="c.safetensors.*truncated or corrupt"):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_resume_from_a_truncated_checkpoint_names_the_file(tmp_path):
    cfg = TrainConfig(steps=2, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    fit(make_model(), mse, regression_batch, cfg)
    path = checkpoint_path(cfg)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checkpoint.safetensors is truncated or corrupt"):
        fit(make_model(), mse, regression_batch, cfg, resume=True)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.ones(4)})

    def dies_halfway(fd):  # the payload is written, the disk fails before it is synced
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.os, "fsync", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": torch.zeros(4)})
    torch.testing.assert_close(load_checkpoint(path)["w"], torch.ones(4))
    assert os.listdir(tmp_path) == ["c.safetensors"]  # no temporary file left behind


def test_default_optimizer_decays_only_weight_matrices():
    model = nn.Sequential(nn.Linear(6, 3), nn.LayerNorm(3))
    before = [p.detach().clone() for p in model.parameters()]
    zero_grad_loss = lambda m, b: 0 * m(b[0]).sum()  # noqa: E731  only weight decay moves the parameters
    fit(model, zero_grad_loss, regression_batch, TrainConfig(steps=1, lr=0.1, weight_decay=0.5, progress=False))
    w, b, ln_w, ln_b = model.parameters()
    torch.testing.assert_close(w.detach(), before[0] * (1 - 0.1 * 0.5))
    for p, p0 in zip((b, ln_w, ln_b), before[1:]):
        assert torch.equal(p.detach(), p0)


def cosine_lrs(lr, steps, warmup, floor):
    return [lr * (s + 1) / warmup if s < warmup else
            lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
            for s in range(steps)]


def test_warmup_cosine_schedule_and_exact_resume(tmp_path):
    sched = dict(steps=10, lr=1e-2, progress=False, schedule="cosine", warmup_steps=3, min_lr_ratio=0.1,
                 checkpoint_every=4)

    def run(ckdir, resume=False, crash_at=None):
        calls = {"n": 0}

        def loss_fn(m, batch):
            if calls["n"] == crash_at:
                raise KeyboardInterrupt("simulated interruption")
            calls["n"] += 1
            return mse(m, batch)
        return fit(make_model(dropout=0.2), loss_fn, noisy_batch, TrainConfig(checkpoint_dir=ckdir, **sched),
                   resume=resume)

    full = run(tmp_path / "a")
    assert full["lr"] == pytest.approx(cosine_lrs(1e-2, 10, 3, 0.1), rel=1e-12)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", crash_at=6)  # last checkpoint at step 4, in the cosine part
    resumed = run(tmp_path / "b", resume=True)
    assert resumed["resumed_from"] == 4
    assert resumed["lr"] == full["lr"] and resumed["loss"] == full["loss"]


def test_constant_schedule_with_warmup_and_scheduler_conflict():
    h = fit(make_model(), mse, regression_batch, TrainConfig(steps=4, lr=1e-2, warmup_steps=2, progress=False))
    assert h["lr"] == pytest.approx([5e-3, 1e-2, 1e-2, 1e-2])
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="either scheduler= or a schedule"):
        fit(model, mse, regression_batch, TrainConfig(steps=2, schedule="cosine", progress=False), opt,
            torch.optim.lr_scheduler.StepLR(opt, step_size=1))
    with pytest.raises(ValueError, match="min_lr_ratio.*cosine"):
        TrainConfig(min_lr_ratio=0.1)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_callbacks_run_after_each_step_before_the_checkpoint(tmp_path):
    seen = []

    def record(step, model, history):
        seen.append((step, len(history["loss"]), history["lr"][-1]))

    def clamp(step, model, history):
        with torch.no_grad():
            model[0].weight.clamp_(-0.25, 0.25)  # 0.25: exact in float32
    cfg = TrainConfig(steps=5, lr=1e-2, progress=False, checkpoint_dir=tmp_path, checkpoint_every=3)
    model = make_model()
    h = fit(model, mse, regression_batch, cfg, callbacks=(record, clamp))
    assert seen == [(s, s, h["lr"][s - 1]) for s in range(1, 6)]
    assert float(model[0].weight.detach().abs().max()) == 0.25  # the hook bit
    saved = load_checkpoint(checkpoint_path(cfg))["model"]["0.weight"]  # saved after the hooks ran
    assert torch.equal(saved, model[0].weight.detach())

    seen.clear()
    fit(make_model(), mse, regression_batch, cfg, resume=True, callbacks=[record])  # nothing left to do
    assert seen == []
    with pytest.raises(TypeError, match="callable"):
        fit(make_model(), mse, regression_batch, cfg, callbacks=[42])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_names_the_step_and_keeps_the_parameters(bad):
    calls = {"n": 0}

    def loss_fn(m, batch):  # 2 micro-batches per step: call 4 is the first of step 3
        calls["n"] += 1
        return mse(m, batch) * (bad if calls["n"] == 5 else 1.0)
    cfg = dict(lr=1e-2, grad_accum_steps=2, progress=False)
    model, reference = make_model(), make_model()
    with pytest.raises(FloatingPointError, match=rf"loss is {bad} at step 3 of 10.*lower the lr"):
        fit(model, loss_fn, regression_batch, TrainConfig(steps=10, **cfg))
    fit(reference, mse, regression_batch, TrainConfig(steps=2, **cfg))
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)  # the bad step did not update


def test_resume_checks_the_config(tmp_path):
    base = dict(lr=1e-2, progress=False, checkpoint_dir=tmp_path, checkpoint_every=2)
    fit(make_model(), mse, regression_batch, TrainConfig(steps=4, **base))
    model = make_model(seed=3)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"lr 0\.01 -> 0\.02, .*seed 0 -> 1"):
        fit(model, mse, regression_batch, TrainConfig(steps=4, **{**base, "lr": 2e-2}, seed=1), resume=True)
    with pytest.raises(ValueError, match="steps=3 is below the step 4"):
        fit(model, mse, regression_batch, TrainConfig(steps=3, **base), resume=True)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # untouched
    # more steps, the folder spelt differently, another progress and save interval: the same run, extended
    longer = TrainConfig(steps=6, lr=1e-2, progress=True, checkpoint_dir=f"{tmp_path}/.", checkpoint_every=0)
    h = fit(model, mse, regression_batch, longer, resume=True)
    assert h["resumed_from"] == 4 and len(h["loss"]) == 6

    cosine = dict(base, checkpoint_dir=tmp_path / "cos", schedule="cosine")
    fit(make_model(), mse, regression_batch, TrainConfig(steps=4, **cosine))
    with pytest.raises(ValueError, match="steps 4 -> 8"):  # steps sets the cosine's length
        fit(make_model(), mse, regression_batch, TrainConfig(steps=8, **cosine), resume=True)


def test_flipped_bit_fails_the_digest(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"model": {"w": torch.randn(100), "b": torch.zeros(3)}})
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    key = next(k for k in header if k.endswith("/model/w"))
    data[8 + header_len + header[key]["data_offsets"][0] + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="c.safetensors is corrupt: tensor 'model/w' fails its SHA-256"):
        load_checkpoint(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_save_removes_stale_temporaries_and_respects_the_umask(tmp_path):
    path = tmp_path / "c.safetensors"
    (tmp_path / ".c.safetensors.0123abcd.tmp").write_bytes(b"left by a killed save")
    (tmp_path / ".other.safetensors.0123abcd.tmp").write_bytes(b"another target's")
    old = os.umask(0o027)
    try:
        save_checkpoint(path, {"w": torch.ones(2)})
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == [".other.safetensors.0123abcd.tmp", "c.safetensors"]
    assert path.stat().st_mode & 0o777 == 0o640


def test_resuming_another_model_shape_names_the_file_and_the_keys(tmp_path):
    cfg = TrainConfig(steps=2, lr=1e-2, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    fit(make_model(), mse, regression_batch, cfg)
    wider = nn.Sequential(nn.Linear(6, 20), nn.GELU(), nn.Dropout(0.0), nn.Linear(20, 3))
    before = [p.detach().clone() for p in wider.parameters()]
    with pytest.raises(CheckpointError, match=rf"checkpoint {tmp_path}/checkpoint.safetensors does not fit this "
                       r"Sequential: other shapes for 0.weight \(16, 6\) in the file vs \(20, 6\) in the model, "
                       r"0.bias \(16,\) in the file vs \(20,\) in the model, 3.weight \(3, 16\)"):
        fit(wider, mse, regression_batch, cfg, resume=True)
    assert all(torch.equal(p, b) for p, b in zip(wider.parameters(), before))  # untouched
    renamed = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 3))  # no Dropout: layer 3 is now 2
    with pytest.raises(CheckpointError, match=r"checkpoint.safetensors does not fit this Sequential: "
                       r"missing keys 2.weight, 2.bias; unexpected keys 3.weight, 3.bias"):
        fit(renamed, mse, regression_batch, cfg, resume=True)


def test_a_long_key_mismatch_is_cut_short():
    from mmlab.checkpoint import load_model_state

    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(4)])  # 8 keys
    with pytest.raises(CheckpointError, match=r"missing keys 0.weight, 0.bias, 1.weight, 1.bias, 2.weight "
                                              r"\(and 3 more\)$"):
        load_model_state(model, {}, "ckpt.safetensors")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_killed_save_leaves_no_temporaries_after_the_next_save(tmp_path):
    """A process SIGKILLed in the middle of a save leaves its temporary file (and the previous checkpoint);
    the next save to that path removes the temporary."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.zeros(3)})
    writer = ("import os, sys, time, torch\nimport mmlab.checkpoint as c\n"
              "def stall(fd):\n    print('writing', flush=True)\n    time.sleep(60)\n"
              "c.os.fsync = stall  # stop inside the save, after the payload is written\n"
              "c.save_checkpoint(sys.argv[1], {'w': torch.randn(1000)})\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(list(tmp_path.glob(".c.safetensors.*.tmp"))) == 1  # the killed save's temporary
    torch.testing.assert_close(load_checkpoint(path)["w"], torch.zeros(3))  # the previous checkpoint survived
    save_checkpoint(path, {"w": torch.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
    torch.testing.assert_close(load_checkpoint(path)["w"], torch.ones(2))
