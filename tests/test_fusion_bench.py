"""The fusion leaderboard: a tiny budget writes valid CSV and markdown; the CLI and variant parsing."""
import csv
import io
from pathlib import Path

import pytest
import torch

from mmlab.fusion import bench
from mmlab.fusion.bench import BenchConfig, Variant, noised, parse_variant, run_bench
from mmlab.fusion.tasks import FusionModel, Split, Task

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_task(n_train=96, n_test=40) -> Task:
    """Two float modalities plus variable-length word ids: class = (a + b) mod 4."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        a, b = torch.randint(4, (n,), generator=g), torch.randint(4, (n,), generator=g)
        image = torch.randn(n, 5, 3, generator=g) + a[:, None, None]
        ids = torch.randint(2, 9, (n, 4), generator=g)
        ids[:, 0] = 2 + b
        lengths = torch.randint(1, 5, (n,), generator=g)
        keep = torch.arange(4)[None] < lengths[:, None]
        ids = ids.masked_fill(~keep, 0)
        return Split({"image": image, "text": ids}, {"image": torch.ones(n, 5, dtype=torch.bool), "text": keep},
                     (a + b) % 4)

    return Task("synthetic", ("image", "text"), {"image": 3, "text": 9}, 4, make(n_train), make(n_test))


TINY = BenchConfig(task="synthetic", seeds=(0, 1), steps=3, batch_size=8, dropout_ps=(0.0, 0.5),
                   latency_repeats=2, latency_batch=8, progress=False)


def test_tiny_bench_writes_valid_csv_and_markdown(tmp_path):
    task = synthetic_task()
    variants = bench.default_variants(task)[:2] + [Variant("early"), parse_variant("late:combine=learned")]
    board = run_bench(variants, TINY, task)
    # baselines train without modality dropout only; the two fusions with both settings
    assert [(r["fusion"], r["modality_dropout"]) for r in board.rows] == [
        ("image only (early)", 0.0), ("text only (early)", 0.0), ("early", 0.0), ("early", 0.5),
        ("late(combine=learned)", 0.0), ("late(combine=learned)", 0.5)]
    assert len(board.runs) == 2 * 6
    md_path, csv_path = board.save(tmp_path / "board")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert len(rows) == 6 and rows[0].keys() == board.rows[0].keys()
    for row in rows:
        assert 0.0 <= float(row["acc_mean"]) <= 1.0 and int(row["seeds"]) == 2
        assert int(row["params"]) > 0 and float(row["mflops_per_sample"]) > 0 and float(row["latency_ms"]) > 0
        for m in ("image", "text"):
            assert 0.0 <= float(row[f"acc_drop_{m}"]) <= 1.0 and 0.0 <= float(row[f"acc_noise_{m}"]) <= 1.0
    md = md_path.read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 6 and all(line.count("|") == table[0].count("|") for line in table)
    assert "drop image" in table[0] and "latency ms/batch" in table[0]
    assert "latency" not in board.to_markdown(latency=False).splitlines()[-1]


def test_cli_main_writes_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "load_task", lambda name: synthetic_task())
    out = tmp_path / "lb"
    assert bench.main(["--names", "early", "gated", "--seeds", "2", "--steps", "2", "--batch-size", "8",
                       "--dropout", "0", "--no-progress", "--out", str(out)]) == 0
    assert (tmp_path / "lb.md").exists() and (tmp_path / "lb.csv").exists()
    rows = list(csv.DictReader(open(tmp_path / "lb.csv")))
    assert [r["fusion"] for r in rows] == ["image only (early)", "text only (early)", "early", "gated"]
    assert "fusion-bench --names early gated" in (tmp_path / "lb.md").read_text()
    assert "wrote" in capsys.readouterr().out


def test_training_beats_chance_on_synthetic_task():
    task = synthetic_task(n_train=512, n_test=256)
    config = BenchConfig(seeds=(0,), steps=150, batch_size=64, lr=1e-2, dropout_ps=(0.0,), progress=False)
    model, _ = bench.train(task, Variant("early"), 0, config)
    acc = bench.accuracy(model, task.test)
    assert acc > 0.6  # chance is 0.25; needs both modalities (a + b mod 4)
    assert bench.accuracy(model, task.test, drop=("image",)) < acc - 0.2


def test_parse_variant_and_errors():
    v = parse_variant("perceiver:n_latents=4,depth=2")
    assert v.fusion == "perceiver" and v.options == {"n_latents": 4, "depth": 2} and "n_latents=4" in v.label
    assert parse_variant("late:combine=learned").options == {"combine": "learned"}
    with pytest.raises(KeyError, match="available"):
        parse_variant("nope")
    with pytest.raises(ValueError, match="key=value"):
        parse_variant("late:learned")
    with pytest.raises(ValueError, match="no modalities"):
        FusionModel(synthetic_task(), "early", modalities=("audio",))


def test_noise_touches_only_one_modality():
    split = synthetic_task().test
    g = torch.Generator().manual_seed(0)
    out = noised(split, "text", 1.0, g)
    assert torch.equal(out.features["image"], split.features["image"])
    changed = out.features["text"] != split.features["text"]
    assert changed.any() and not (changed & ~split.masks["text"]).any()  # padding untouched
    out = noised(split, "image", 1.0, g)
    assert torch.equal(out.features["text"], split.features["text"])
    assert not torch.equal(out.features["image"], split.features["image"])


def test_cli_two_tasks_merge_into_one_csv_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "load_task", lambda name: synthetic_task())
    out = tmp_path / "both"
    bench.main(["--task", "avdigits", "vqa", "--names", "early", "--no-baselines", "--seeds", "1", "--steps", "1",
                "--batch-size", "4", "--dropout", "0", "--no-progress", "--out", str(out)])
    rows = list(csv.DictReader(open(tmp_path / "both.csv")))
    assert len(rows) == 2 and {r["fusion"] for r in rows} == {"early"}
    assert (tmp_path / "both.md").read_text().count("## Fusion leaderboard") == 2


def test_real_tasks_have_the_documented_tokens():
    from mmlab.data.shapes_world import ANSWERS
    from mmlab.fusion.tasks import load_task

    vqa = load_task("vqa", train_size=64, test_size=32)
    assert vqa.modalities == ("image", "text") and vqa.num_classes == len(ANSWERS)
    assert vqa.train.features["image"].shape == (64, 16, 3 * 8 * 8)
    ids, keep = vqa.train.features["text"], vqa.train.masks["text"]
    assert ids.dtype == torch.long and torch.equal(keep, ids != 0) and keep.any(1).all()
    assert int(ids.max()) < vqa.feature_dims["text"] and len(vqa.test) == 32

    av = load_task("avdigits")
    assert av.modalities == ("image", "audio") and av.num_classes == 10
    n = len(av.train)
    assert av.train.features["image"].shape == (n, 16, 4) and av.train.features["audio"].shape == (n, 16, 32)
    for m in av.modalities:  # standardised with train statistics
        x = av.train.features[m]
        assert torch.isfinite(x).all() and abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.1
    assert set(av.test.labels.tolist()) == set(range(10))
    assert load_task("avdigits") is av  # cached
    with pytest.raises(KeyError, match="available: avdigits, vqa"):
        load_task("mnist")


def test_per_name_options_reach_the_fusion(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "load_task", lambda name: synthetic_task())
    bench.main(["--names", "early", "early:width=64", "early:width=16", "--no-baselines", "--seeds", "1",
                "--steps", "2", "--batch-size", "8", "--dropout", "0", "--no-progress", "--out", str(tmp_path / "lb")])
    rows = {r["fusion"]: r for r in csv.DictReader(open(tmp_path / "lb.csv"))}
    assert list(rows) == ["early", "early(width=64)", "early(width=16)"]
    default, explicit, narrow = rows.values()  # early's default width is 64: the same model, trained the same
    assert {k: v for k, v in explicit.items() if k not in ("fusion", "latency_ms", "train_s")} == \
        {k: v for k, v in default.items() if k not in ("fusion", "latency_ms", "train_s")}
    width = 32  # the encoders' token width (--width): early's MLP is LayerNorm(2w), Linear(2w, h), Linear(h, 4)
    assert int(default["fusion_params"]) - int(narrow["fusion_params"]) == (2 * width + 1 + 4) * (64 - 16)


BAD_SETTINGS = [
    ({"seeds": ()}, ValueError, "seeds must list one or more values"),
    ({"seeds": (0, 0)}, ValueError, "seeds must not list 0 twice"),
    ({"seeds": 3}, TypeError, "seeds must be a tuple"),
    ({"seeds": (-1,)}, ValueError, "seeds must be in"),
    ({"seeds": (1.0,)}, TypeError, "seeds must be an int"),
    ({"seeds": ([0],)}, TypeError, "seeds must be an int"),
    ({"steps": 0}, ValueError, "steps must be a positive integer"),
    ({"steps": True}, TypeError, "steps must be a positive integer"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0"),
    ({"lr": "0.1"}, TypeError, "lr must be a real number"),
    ({"weight_decay": -1}, ValueError, "weight_decay"),
    ({"width": 0}, ValueError, "width"),
    ({"dropout_ps": (1.0,)}, ValueError, r"dropout_ps must be a finite number in \[0, 1\)"),
    ({"dropout_ps": (-0.5,)}, ValueError, "dropout_ps"),
    ({"noise": float("inf")}, ValueError, "noise"),
    ({"budget_s": -1}, ValueError, "budget_s must be a finite number > 0"),
    ({"budget_s": 0}, ValueError, "budget_s"),
    ({"latency_batch": 0}, ValueError, "latency_batch"),
    ({"latency_repeats": 0}, ValueError, "latency_repeats"),
    ({"threads": 0}, ValueError, "threads"),
    ({"threads": 1.5}, TypeError, "threads"),
    ({"progress": "no"}, TypeError, "progress must be True or False"),
]


@pytest.mark.parametrize("settings, error, pattern", BAD_SETTINGS)
def test_bench_config_rejects_bad_settings(settings, error, pattern):
    with pytest.raises(error, match=pattern):
        BenchConfig(**settings)


TRAIN_ONE = bench.train  # the tests below forbid bench.train (training) itself


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: parse_variant(3), TypeError, "a fusion variant is a string"),
    (lambda: parse_variant("early:width=1,width=2"), ValueError, "'width' is given twice"),
    (lambda: parse_variant("early:=1"), ValueError, "bad option '=1'"),
    (lambda: parse_variant(":width=1"), KeyError, "unknown fusion ''"),
    (lambda: Variant(3), TypeError, "fusion must be"),
    (lambda: Variant("early", options="width=3"), TypeError, "options must be a dict"),
    (lambda: Variant("early", modalities="image"), TypeError, "modalities must be a sequence of strings"),
    (lambda: Variant("early", modalities=()), ValueError, "modalities"),
    (lambda: bench.merge_leaderboards([]), ValueError, "at least one leaderboard"),
    (lambda: noised(synthetic_task().test, "image", -1.0, torch.Generator()), ValueError, "level"),
    (lambda: bench.latency_ms(None, synthetic_task().test, batch=0, repeats=1), ValueError, "batch"),
    (lambda: bench.latency_ms(None, synthetic_task().test, batch=2, repeats=0), ValueError, "repeats"),
    (lambda: bench.count_flops(None, synthetic_task().test, batch=0), ValueError, "batch"),
    (lambda: TRAIN_ONE(synthetic_task(), Variant("early"), 0, TINY, dropout_p=1.0), ValueError, "dropout_p"),
    (lambda: bench.output_paths(3), TypeError, "out must be a path"),
    (lambda: run_bench([Variant("early", {"nope": 1})], TINY, synthetic_task()), TypeError,
     r"fusion variant 'early\(nope=1\)' cannot be built for task 'synthetic'"),
    (lambda: run_bench(["early", "early"], TINY, synthetic_task()), ValueError, "must not list 'early' twice"),
    (lambda: run_bench([], TINY, synthetic_task()), ValueError, "at least one fusion variant"),
    (lambda: run_bench(["early"], config={"steps": 3}, task=synthetic_task()), TypeError, "BenchConfig"),
    (lambda: run_bench([Variant("early", modalities=("image",))], BenchConfig(dropout_ps=(0.5,)), synthetic_task()),
     ValueError, "nothing to train"),
])
def test_bench_functions_reject_bad_arguments(monkeypatch, call, error, pattern):
    monkeypatch.setattr(bench, "train", lambda *a, **k: pytest.fail("trained before checking its arguments"))
    with pytest.raises(error, match=pattern):
        call()


def test_output_paths_drop_a_known_suffix():
    assert bench.output_paths("out/lb.md") == bench.output_paths("out/lb") == (Path("out/lb.md"), Path("out/lb.csv"))
