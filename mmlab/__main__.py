"""Command line: `python -m mmlab doctor | run-notebooks | fusion-bench | lab | train-clip | search`.

A bad argument of doctor, run-notebooks or fusion-bench is one line naming it and exit status 2 (argparse's
convention), before any work starts; lab hands its arguments to JupyterLab, which checks them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m mmlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check versions, device, kernels and data; print a verdict")
    doctor.add_argument("--skip-kernels", action="store_true", help="skip the Triton kernel check")
    run = commands.add_parser("run-notebooks", help="execute every notebook headless, HTML to --out")
    run.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    run.add_argument("--out", type=Path, default=Path("build"))
    run.add_argument("--pattern", default="*.ipynb", help="glob of notebooks to run, e.g. '0[0-3]*.ipynb'")
    run.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    commands.add_parser("fusion-bench", help="tune and compare fusions over seeds, write a leaderboard (see --help)",
                        add_help=False)
    commands.add_parser("lab", help="open JupyterLab (arguments go to `jupyter lab`; --allow-root added as root)",
                        add_help=False)
    commands.add_parser("train-clip", add_help=False,
                        help="train a small CLIP on Shapes-World, one process or under torchrun (see --help)")
    commands.add_parser("search", add_help=False,
                        help="text and image search over a Shapes-World gallery (see --help)")

    if argv[:1] == ["fusion-bench"]:
        from mmlab.fusion_bench.cli import main as fusion_bench

        return fusion_bench(argv[1:])
    if argv[:1] == ["train-clip"]:
        from mmlab.train_clip import main as train_clip

        return train_clip(argv[1:])
    if argv[:1] == ["search"]:
        from mmlab.search_cli import main as search

        return search(argv[1:])
    if argv[:1] == ["lab"]:
        from mmlab.lab import main as lab

        return lab(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from mmlab.doctor import run_doctor

        return run_doctor(check_kernels_too=not args.skip_kernels)
    from mmlab import validation
    from mmlab.run_notebooks import find_notebooks, run_notebooks

    try:
        validation.positive_int("--timeout", args.timeout)
        find_notebooks(args.notebooks, args.pattern, names=("--notebooks", "--pattern"))
        validation.writable_path("--out", args.out, folder=True)
    except (TypeError, ValueError) as err:
        run.error(str(err))
    return run_notebooks(args.notebooks, args.out, timeout=args.timeout, pattern=args.pattern)


if __name__ == "__main__":
    sys.exit(main())
