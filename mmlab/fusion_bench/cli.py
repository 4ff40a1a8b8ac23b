"""`python -m mmlab fusion-bench`: the tuned, multi-seed fusion benchmark (see `mmlab.fusion_bench.protocol`).

Every method (the unimodal baselines, late fusion and the SimBaMM-style late-fusion transformer included) gets
the same number of tuning trials; selection and early stopping read the validation split; the selected
configuration is read on test at every seed. Writes OUT/fusion_leaderboard.{md,csv,json} and three plots;
each finished trial and seed is kept under OUT/runs, so a rerun of the same command continues.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from mmlab import validation
from mmlab.fusion_bench.methods import TRAINING_MODES, default_methods, parse_method
from mmlab.fusion_bench.protocol import ProtocolConfig, check_config, run_protocol
from mmlab.fusion_bench.tasks import TASKS, load_task

# the command-line option that sets each ProtocolConfig field, named in error messages
OPTIONS = {"trials": "--trials", "seeds": "--seeds", "dropout_seeds": "--dropout-seeds",
           "modality_dropout": "--modality-dropout", "max_steps": "--max-steps", "batch_size": "--batch-size",
           "width": "--width", "eval_every": "--eval-every", "patience": "--patience", "noise": "--noise",
           "jobs": "--jobs", "startup_trials": "--startup-trials", "sampler_seed": "--sampler-seed",
           "first_seed": "--first-seed"}


def build_parser() -> argparse.ArgumentParser:
    d = ProtocolConfig()
    parser = argparse.ArgumentParser(prog="python -m mmlab fusion-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", nargs="+", default=list(TASKS), help=f"tasks (default: all of {', '.join(TASKS)})")
    parser.add_argument("--names", nargs="+", default=None,
                        help="fusions to compare besides the unimodal baselines, e.g. early late:combine=learned "
                             "(options after ':' are held fixed; default: every registered fusion)")
    parser.add_argument("--training", nargs="+", default=["end_to_end"],
                        help="how each multimodal method is trained, one row per mode: " + ", ".join(TRAINING_MODES)
                        + " (progressive: each modality's encoder trained alone first; the unimodal baselines are "
                        "always end to end)")
    parser.add_argument("--trials", type=int, default=d.trials, help="tuning trials per method (the same for all)")
    parser.add_argument("--seeds", type=int, default=d.seeds, help="seeds of the selected configuration")
    parser.add_argument("--dropout-seeds", type=int, default=d.dropout_seeds,
                        help="seeds trained with modality dropout (multimodal methods)")
    parser.add_argument("--modality-dropout", type=float, default=d.modality_dropout)
    parser.add_argument("--max-steps", type=int, default=d.max_steps, help="cap on the tuned schedule length")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--width", type=int, default=d.width, help="token width of the modality encoders")
    parser.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between validation checks")
    parser.add_argument("--patience", type=int, default=d.patience, help="checks without improvement before stopping")
    parser.add_argument("--startup-trials", type=int, default=d.startup_trials)
    parser.add_argument("--sampler-seed", type=int, default=d.sampler_seed)
    parser.add_argument("--first-seed", type=int, default=d.first_seed, help="seeds run from here")
    parser.add_argument("--noise", type=float, default=d.noise, help="test-time noise std (standardised features)")
    parser.add_argument("--jobs", type=int, default=1, help="processes (one torch thread each)")
    parser.add_argument("--out", type=Path, default=Path("fusion_bench"), help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def plan(args: argparse.Namespace):
    """(config, tasks, methods per task, output folder), every argument checked (a TypeError or ValueError
    naming the option) and every method built once: all of it before any training."""
    settings = {k: getattr(args, k) for k in OPTIONS}
    check_config({**vars(ProtocolConfig()), **settings}, OPTIONS)
    validation.distinct("--task", args.task)
    for name in args.task:
        if name not in TASKS:
            raise ValueError(f"--task: unknown task {name!r}; available: {', '.join(TASKS)}")
    validation.writable_path("--out", args.out, folder=True)
    try:
        chosen = [parse_method(spec) for spec in args.names] if args.names else None
    except (KeyError, ValueError) as err:  # KeyError: an unknown fusion name
        raise ValueError(f"--names: {err.args[0]}") from None
    for mode in validation.distinct("--training", args.training):
        if mode not in TRAINING_MODES:
            raise ValueError(f"--training: unknown mode {mode!r}; choose from {', '.join(TRAINING_MODES)}")
    config = ProtocolConfig(**settings, progress=not args.no_progress)
    tasks = [load_task(name) for name in args.task]
    methods = {t.name: default_methods(t, chosen, args.training) for t in tasks}
    from mmlab.fusion_bench.methods import check_methods

    for t in tasks:
        check_methods(methods[t.name], t, config.width)
    return config, tasks, methods, args.out


def main(argv: Sequence[str] | None = None) -> int:
    """A bad argument is one line naming it and exit status 2, before any training."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config, tasks, methods, out = plan(args)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    command = shlex.join(["python", "-m", "mmlab", "fusion-bench", *argv])
    result = run_protocol(tasks, methods, config, out, command=command)
    paths = result.save(out)
    print(result.to_markdown())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
