"""`python -m mmlab train-clip`: bad arguments (one line, exit 2, nothing written), resume, and two processes
(env:// rendezvous, as torchrun sets it) following the one-process run."""
from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest
import torch

from mmlab.__main__ import main

TINY = ["--train-size", "48", "--batch-size", "8", "--dim", "8", "--log-every", "1"]


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["train-clip", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m mmlab train-clip: error: "), err
    return last


ERRORS = [
    (["--steps", "0"], {}, "--steps must be a positive integer, got 0"),
    (["--batch-size", "6"], {"WORLD_SIZE": "4"}, "--batch-size 6 must be divisible by the world size 4"),
    (["--batch-size", "100", "--train-size", "50"], {}, "--batch-size 100 is larger than --train-size 50"),
    (["--lr", "nan"], {}, "--lr must be a finite number > 0, got nan"),
    (["--dim", "6"], {}, "--dim must be a positive multiple of 4"),
    (["--loss", "siglip", "--global-loss"], {}, "--global-loss applies to --loss info_nce only"),
    (["--loss", "clip"], {}, "argument --loss: invalid choice: 'clip'"),
    (["--checkpoint-every", "-1"], {}, "--checkpoint-every must be a non-negative integer"),
    ([], {"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE must be an integer, got 'two'"),
    (["--out", "{file}/run"], {}, "--out '.*run' cannot be created: .* is not a folder"),
]


@pytest.mark.parametrize("args, env, message", ERRORS)
def test_bad_arguments(tmp_path, capsys, monkeypatch, args, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "file").write_text("")
    args = [a.format(file=tmp_path / "file") for a in args]
    argv = ["--out", str(tmp_path / "run"), *args] if "--out" not in args else args
    assert re.search(message, usage_error(argv, capsys))
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_no_out_is_an_error(capsys):
    assert "the following arguments are required: --out" in usage_error([], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(tmp_path, capsys):
    assert "--device cuda was requested" in usage_error(["--out", str(tmp_path), "--device", "cuda"], capsys)


def history(out):
    return json.loads((out / "history.json").read_text())


def test_trains_resumes_exactly_and_guards_its_folder(tmp_path, capsys, monkeypatch, one_thread):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train-clip", "--out", str(full), "--steps", "4", "--checkpoint-every", "2", *TINY]) == 0
    out = capsys.readouterr().out
    assert "1 process(es) on cpu (not distributed)" in out and "step    4/4" in out and "test (200 scenes" in out
    assert main(["train-clip", "--out", str(cut), "--steps", "2", "--checkpoint-every", "2", *TINY]) == 0
    assert main(["train-clip", "--out", str(cut), "--steps", "4", "--checkpoint-every", "2", "--resume", *TINY]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    assert history(cut)["loss"] == history(full)["loss"]  # bit for bit: RNG and optimizer restored
    assert len(history(full)["loss"]) == 4 and history(full)["loss"][-1] < history(full)["loss"][0]

    # a second run into the same folder, or a resume with other settings, is refused before training
    assert "already holds checkpoints" in usage_error(["--out", str(full), "--steps", "4", *TINY], capsys)
    changed = ["--out", str(full), "--steps", "6", "--resume", *TINY[:-4], "--dim", "12", "--log-every", "1"]
    assert "dim 8 -> 12" in usage_error(changed, capsys)


def test_siglip_runs(tmp_path, capsys, monkeypatch, one_thread):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert main(["train-clip", "--out", str(tmp_path), "--steps", "2", "--loss", "siglip", *TINY]) == 0
    assert "loss siglip" in capsys.readouterr().out and len(history(tmp_path)["loss"]) == 2


def _rank(rank, world, port, argv):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert main(argv) == 0


def test_two_processes_follow_one(tmp_path, monkeypatch, one_thread):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    argv = ["train-clip", "--steps", "3", "--checkpoint-every", "0", *TINY]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = torch.multiprocessing.start_processes(_rank, args=(2, port, [*argv, "--out", str(tmp_path / "two")]),
                                                nprocs=2, join=False, start_method="spawn")
    end = time.monotonic() + 180
    while not ctx.join(timeout=max(1.0, end - time.monotonic())):
        if time.monotonic() > end:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two train-clip processes did not finish in 180 s")
    one, two = history(tmp_path / "one"), history(tmp_path / "two")
    assert two["world_size"] == 2 and one["world_size"] == 1
    torch.testing.assert_close(torch.tensor(two["loss"]), torch.tensor(one["loss"]), rtol=1e-5, atol=1e-5)
    # equal losses could hide a uniform gradient scale (AdamW's update hardly depends on it): compare the norms too
    torch.testing.assert_close(torch.tensor(two["grad_norm"]), torch.tensor(one["grad_norm"]), rtol=1e-4, atol=1e-6)
