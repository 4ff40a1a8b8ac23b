"""The fusion benchmark protocol: selection reads no test data, runs resume, statistics match scipy and a hand
computation, search spaces are checked before training, and a tiny protocol writes valid outputs."""
import csv
import io
import json
import math

import pytest
import torch

from mmlab.fusion import Fusion, IntRange, register_fusion, unregister_fusion
from mmlab.fusion_bench import (
    Method,
    ProtocolConfig,
    RunSettings,
    Split,
    Task,
    TuningSettings,
    default_methods,
    paired_difference,
    parse_method,
    protocol,
    run_protocol,
    t_interval,
    train_run,
    training,
    tune,
    tuning,
)
from mmlab.fusion_bench.measure import accuracy, noised
from mmlab.fusion_bench.stats import mean_std
from mmlab.fusion_bench.synergy import single_reader_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_task(n_train=96, n_val=48, n_test=40) -> Task:
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

    return Task("synthetic", ("image", "text"), {"image": 3, "text": 9}, 4, make(n_train), make(n_val), make(n_test),
                by_construction={"image": "a alone: 0.25", "text": "b alone: 0.25"})


TINY = ProtocolConfig(trials=2, seeds=2, dropout_seeds=1, max_steps=6, batch_size=8, eval_every=2, patience=1,
                      latency_repeats=1, latency_batch=8, progress=False)


def poisoned(task: Task) -> Task:
    """The same task with a test split no honest selection could survive reading: NaN features, shuffled ids
    out of the vocabulary, labels out of range."""
    test = task.test
    bad = Split({"image": torch.full_like(test.features["image"], float("nan")),
                 "text": torch.full_like(test.features["text"], 10**6)}, test.masks, torch.full_like(test.labels, -7))
    return Task(task.name, task.modalities, task.feature_dims, task.num_classes, task.train, task.val, bad)


def test_selection_never_reads_the_test_split():
    task = synthetic_task()
    settings = TuningSettings(trials=3, startup_trials=2, max_steps=6)
    run = RunSettings(batch_size=8, eval_every=2, patience=1)
    for method in (Method("early"), Method("late"), Method("late", training="progressive_frozen")):
        clean = tune(task, method, settings, run)
        dirty = tune(poisoned(task), method, settings, run)
        assert clean["params"] == dirty["params"] and clean["val"] == dirty["val"]
        assert [t["val"] for t in clean["trials"]] == [t["val"] for t in dirty["trials"]]
        assert [t["curve"] for t in clean["trials"]] == [t["curve"] for t in dirty["trials"]]
    with pytest.raises(Exception):  # the poison is real: reading it fails
        accuracy(Method("early").build(poisoned(task), 8), poisoned(task).test)


def test_tuning_is_seeded_and_samples_the_declared_space():
    task = synthetic_task()
    settings, run = TuningSettings(trials=3, startup_trials=3, max_steps=6), RunSettings(batch_size=8, eval_every=2)
    a, b = tune(task, Method("lmf"), settings, run), tune(task, Method("lmf"), settings, run)
    assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
    for t in a["trials"]:
        assert set(t["params"]) == {"lr", "weight_decay", "steps", "rank", "width"}
        assert 2 <= t["params"]["rank"] <= 8 and 16 <= t["params"]["width"] <= 128 and 2 <= t["params"]["steps"] <= 6
    assert a["val"] == max(t["val"] for t in a["trials"])
    fixed = Method("lmf", {"rank": 3})  # a fixed option is not tuned
    assert "rank" not in fixed.space(6) and fixed.label == "lmf(rank=3)"


def test_early_stopping_keeps_the_best_validation_parameters():
    task = synthetic_task(n_train=256)
    params = {"lr": 1e-2, "weight_decay": 0.0, "steps": 120}
    result = train_run(task, Method("early"), params, 0, RunSettings(batch_size=32, eval_every=10, patience=2))
    steps = [s for s, _ in result.curve]
    assert steps == list(range(10, result.steps_run + 1, 10))
    assert result.best_val == max(v for _, v in result.curve)
    assert result.best_step == next(s for s, v in result.curve if v == result.best_val)
    assert accuracy(result.model, task.val) == result.best_val  # the returned model is the best-val one
    if result.steps_run < 120:  # stopped early: `patience` checks after the best, all past half the schedule
        assert result.steps_run >= 60 and len([s for s in steps if s > max(result.best_step, 59)]) == 2
    assert accuracy(result.model, task.test) > 0.5  # chance 0.25; needs both modalities


def test_progressive_training_starts_from_the_unimodal_encoders():
    task = synthetic_task()
    params, run = {"lr": 1e-2, "weight_decay": 0.0, "steps": 20}, RunSettings(batch_size=16, eval_every=5, patience=2)
    alone = {m: train_run(task, Method("early", modalities=(m,)), params, 0, run).model for m in task.modalities}
    frozen = train_run(task, Method("late", training="progressive_frozen"), params, 0, run).model
    tuned = train_run(task, Method("late", training="progressive_finetune"), params, 0, run).model
    torch.manual_seed(0)
    untrained = Method("late").build(task, run.width)
    for m in task.modalities:
        solo = alone[m].encoders[m].state_dict()
        assert all(torch.equal(v, solo[k]) for k, v in frozen.encoders[m].state_dict().items())  # as trained alone
        assert not all(torch.equal(v, solo[k]) for k, v in tuned.encoders[m].state_dict().items())  # trained further
        assert not all(torch.equal(v, solo[k]) for k, v in untrained.encoders[m].state_dict().items())
    fresh = untrained.fusion.state_dict()
    assert not all(torch.equal(v, fresh[k]) for k, v in frozen.fusion.state_dict().items())  # the fusion trained
    labels = [m.label for m in default_methods(task, ["late"], ["end_to_end", "progressive_frozen"])]
    assert labels == ["image only", "text only", "late", "late [progressive, frozen]"]
    with pytest.raises(ValueError, match="sees one modality: progressive training"):
        Method("early", modalities=("image",), training="progressive_frozen")
    with pytest.raises(ValueError, match="unknown training 'greedy'"):
        Method("late", training="greedy")
    with pytest.raises(TypeError, match="not one string"):
        default_methods(task, ["late"], "progressive_frozen")


def test_a_progressive_row_is_compared_with_its_end_to_end_counterpart():
    from mmlab.fusion_bench import BenchResult

    def record(method, accs, unimodal=False, training="end_to_end"):
        seeds = [{"seed": i, "modality_dropout": 0.0, "acc": a, "val": a, "best_step": 10, "seconds": 1.0}
                 for i, a in enumerate(accs)]
        return {"task": "t", "method": method, "fusion": "early" if unimodal else "late", "unimodal": unimodal,
                "training": training, "selection": {"val": max(accs), "params": {"lr": 0.01}}, "seeds": seeds,
                "cost": {"params": 1, "mflops_per_sample": 0.1, "latency_ms": 0.1}}

    records = [record("a only", [0.5, 0.6, 0.7], unimodal=True), record("late", [0.6, 0.7, 0.7]),
               record("late [progressive, frozen]", [0.8, 0.7, 0.9], training="progressive_frozen")]
    meta = {"config": vars(TINY), "command": "c", "machine": "m", "versions": "v", "date": "d", "wall_s": 1.0,
            "tasks": {"t": {"train": 1, "val": 1, "test": 1, "num_classes": 2, "chance": 0.5, "information": "",
                            "by_construction": {}, "modalities": ["a", "b"]}}}
    result = BenchResult(records, meta)
    rows = {r["method"]: r for r in result.rows()}
    progressive = rows["late [progressive, frozen]"]
    assert progressive["vs_end_to_end"] == "late"
    assert progressive["vs_end_to_end_mean"] == pytest.approx((0.2 + 0.0 + 0.2) / 3)
    assert rows["late"]["vs_end_to_end"] == "" and math.isnan(rows["late"]["vs_end_to_end_mean"])
    assert "Δ vs end to end" in result.to_markdown()
    assert "Δ vs end to end" not in BenchResult(records[:2], meta).to_markdown()  # no progressive rows, no column


def _untimed(result) -> list[dict]:
    """The rows without the wall-clock columns (latency, training seconds), which differ between runs."""
    return [{k: v for k, v in r.items() if k not in ("latency_ms", "train_s_mean")} for r in result.rows()]


def _count_training(monkeypatch):
    calls = []
    real = training.train_run

    def counted(*args, **kwargs):
        calls.append(args[1].label)
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning, "train_run", counted)
    monkeypatch.setattr(protocol, "train_run", counted)
    return calls


def test_a_rerun_continues_where_an_interrupted_run_stopped(tmp_path, monkeypatch):
    task = synthetic_task()
    methods = {task.name: default_methods(task, ["late"])}
    calls = _count_training(monkeypatch)
    full = run_protocol([task], methods, TINY, out=tmp_path / "a")
    per_study = TINY.trials + TINY.seeds
    assert len(calls) == 2 * per_study + (per_study + TINY.dropout_seeds)
    calls.clear()
    again = run_protocol([task], methods, TINY, out=tmp_path / "a")
    assert calls == [] and again.rows() == full.rows()  # everything was stored: nothing retrained

    run_protocol([task], methods, TINY, out=tmp_path / "b")  # "interrupt" b: drop one trial and one seed
    runs = tmp_path / "b" / "runs" / "synthetic"
    (runs / "late" / "trial_001.json").unlink()
    (runs / "image_only" / "seed_1_md0.json").unlink()
    calls.clear()
    resumed = run_protocol([task], methods, TINY, out=tmp_path / "b")
    assert sorted(calls) == ["image only", "late"]
    assert _untimed(resumed) == _untimed(full)  # identical to the uninterrupted run

    other = ProtocolConfig(**{**vars(TINY), "trials": 3})
    with pytest.raises(ValueError, match="another protocol .*trials 2 -> 3"):
        run_protocol([task], methods, other, out=tmp_path / "a")


def test_tiny_protocol_writes_markdown_csv_json_and_plots(tmp_path):
    task = synthetic_task()
    result = run_protocol([task], {task.name: default_methods(task, ["late", "gated"])}, TINY)
    paths = result.save(tmp_path, plots=True)
    assert sorted(p.name for p in paths) == sorted(
        ["fusion_leaderboard.md", "fusion_leaderboard.csv", "fusion_leaderboard.json",
         "fusion_leaderboard_accuracy.png", "fusion_leaderboard_learning_curves.png",
         "fusion_leaderboard_accuracy_vs_flops.png"])
    rows = list(csv.DictReader(io.StringIO((tmp_path / "fusion_leaderboard.csv").read_text())))
    assert [(r["method"], float(r["modality_dropout"])) for r in rows] == [
        ("image only", 0.0), ("text only", 0.0), ("late", 0.0), ("late", 0.5), ("gated", 0.0), ("gated", 0.5)]
    for r in rows:
        assert 0 <= float(r["acc_mean"]) <= 1 and int(r["params"]) > 0 and float(r["mflops_per_sample"]) > 0
    gated = next(r for r in result.rows() if r["method"] == "gated" and r["modality_dropout"] == 0.0)
    accs = [s["acc"] for s in result.records[3]["seeds"] if s["modality_dropout"] == 0.0]
    late = [s["acc"] for s in result.records[2]["seeds"] if s["modality_dropout"] == 0.0]
    assert gated["acc_mean"] == pytest.approx(sum(accs) / 2) and gated["vs_late"] == "late"
    assert gated["vs_late_mean"] == pytest.approx((accs[0] - late[0] + accs[1] - late[1]) / 2)
    ref = max(result.records[:2], key=lambda r: sum(s["val"] for s in r["seeds"]))
    assert gated["vs_unimodal"] == ref["method"]  # the reference is chosen on validation
    md = (tmp_path / "fusion_leaderboard.md").read_text()
    assert "image alone, by construction: a alone: 0.25" in md and "Modality-dropout training" in md
    table = [line for line in md.splitlines() if line.startswith("| image only")]
    assert len(table) == 1
    saved = json.loads((tmp_path / "fusion_leaderboard.json").read_text())
    assert len(saved["records"]) == 4 and saved["meta"]["config"]["trials"] == 2


def test_two_jobs_give_the_same_results_as_one(tmp_path):
    task = synthetic_task()
    methods = {task.name: default_methods(task, ["late"])[1:]}
    config = ProtocolConfig(**{**vars(TINY), "trials": 1, "seeds": 1, "dropout_seeds": 0})
    one = run_protocol([task], methods, config)
    two = run_protocol([task], methods, ProtocolConfig(**{**vars(config), "jobs": 2}), out=tmp_path)
    assert _untimed(one) == _untimed(two)


def test_t_interval_matches_a_hand_computation_and_scipy():
    from scipy import stats

    mean, low, high = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # s = sqrt(10 / 4) = 1.5811; t_{0.975, 4} = 2.7764 (tables); half-width 2.7764 * 1.5811 / sqrt(5) = 1.9632
    assert mean == 3.0 and low == pytest.approx(3 - 1.9632, abs=1e-4) and high == pytest.approx(3 + 1.9632, abs=1e-4)
    values = [0.71, 0.69, 0.74, 0.70, 0.66]
    ref = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 5, scale=stats.sem(values))
    assert t_interval(values)[1:] == pytest.approx(ref, rel=1e-12)
    assert mean_std([2.0])[1] == 0.0 and all(math.isnan(x) for x in t_interval([2.0])[1:])


def test_paired_difference_matches_the_paired_t_test():
    from scipy import stats

    a, b = [0.80, 0.82, 0.79, 0.85, 0.81], [0.78, 0.80, 0.80, 0.81, 0.77]
    d = paired_difference(a, b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert d["mean"] == pytest.approx(0.022) and (d["low"], d["high"]) == pytest.approx((ci.low, ci.high))
    assert d["excludes_zero"] == (ci.low > 0) and d["n"] == 5
    assert paired_difference([0.5, 0.6, 0.7], [0.5, 0.5, 0.8])["excludes_zero"] is False
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 2.0])


def test_single_reader_accuracy_by_hand():
    known = torch.tensor([0, 0, 0, 1, 1, 2])
    labels = torch.tensor([1, 1, 0, 0, 1, 0])
    assert single_reader_accuracy(known, labels) == pytest.approx((2 + 1 + 1) / 6)


def test_search_spaces_are_checked_before_training():
    class Tiny(Fusion):
        def __init__(self, input_dims, output_dim, width: int = 8):
            super().__init__(input_dims, output_dim)

    with pytest.raises(ValueError, match="search_space names option 'depth', which the fusion does not take"):
        register_fusion("tiny_bad_space", search_space={"depth": IntRange(1, 2)})(Tiny)
    with pytest.raises(TypeError, match="must be an IntRange, FloatRange or Choice"):
        register_fusion("tiny_bad_space", search_space={"width": (8, 16)})(Tiny)
    register_fusion("tiny_space", search_space={"width": IntRange(4, 8)})(Tiny)
    try:
        assert Method("tiny_space").space(10)["width"] == IntRange(4, 8)
        with pytest.raises(ValueError, match="'heads', which the fusion does not take"):
            Method("tiny_space", search_space={"heads": IntRange(1, 2)})
        with pytest.raises(ValueError, match="option 'lr', which the fusion does not take"):
            Method("early", search_space={"lr": IntRange(1, 2)})  # lr is tuned for every method, not per fusion
    finally:
        unregister_fusion("tiny_space")
    with pytest.raises(ValueError, match="IntRange.high"):
        IntRange(4, 2)


def test_methods_and_options():
    task = synthetic_task()
    methods = default_methods(task, ["late", "simbamm"])
    assert [m.label for m in methods] == ["image only", "text only", "late", "simbamm"]
    assert methods[0].unimodal and not methods[2].unimodal
    assert parse_method("perceiver:n_latents=4,depth=2").options == {"n_latents": 4, "depth": 2}
    with pytest.raises(KeyError, match="available"):
        parse_method("nope")
    with pytest.raises(ValueError, match="key=value"):
        parse_method("late:learned")
    with pytest.raises(ValueError, match="must be a positive integer"):
        ProtocolConfig(trials=0)
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        ProtocolConfig(seeds=0)
    with pytest.raises(ValueError, match="dropout_seeds=3 must not exceed seeds=2"):
        ProtocolConfig(seeds=2, dropout_seeds=3)


def test_noise_touches_only_one_modality():
    split = synthetic_task().test
    g = torch.Generator().manual_seed(0)
    out = noised(split, "text", 1.0, g)
    assert torch.equal(out.features["image"], split.features["image"])
    changed = out.features["text"] != split.features["text"]
    assert changed.any() and not (changed & ~split.masks["text"]).any()  # padding untouched


def test_real_tasks_state_what_each_modality_alone_achieves():
    from mmlab.data.shapes_world import ANSWERS
    from mmlab.fusion_bench import load_task

    vqa = load_task("vqa", train_size=64, val_size=32, test_size=32)
    assert vqa.modalities == ("image", "text") and vqa.num_classes == len(ANSWERS)
    assert vqa.train.features["image"].shape == (64, 16, 3 * 8 * 8) and len(vqa.val) == 32
    assert "most frequent training answer" in vqa.by_construction["text"]
    syn = load_task("synergy")
    assert syn.num_classes == 2 and (len(syn.train), len(syn.val), len(syn.test)) == (1257, 269, 271)
    for m in syn.modalities:
        assert syn.by_construction[m].startswith("chance (0.5)")
        reader = float(syn.by_construction[m].rsplit("scores ", 1)[1].split()[0])
        assert 0.5 <= reader < 0.56  # balanced by design: a perfect one-modality reader is near chance
    assert abs(float(syn.train.labels.float().mean()) - 0.5) < 0.03
    with pytest.raises(KeyError, match="available: avdigits, vqa, synergy"):
        load_task("mnist")
