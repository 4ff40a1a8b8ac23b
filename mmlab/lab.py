"""`python -m mmlab lab [ARGS...]`: JupyterLab from this environment, as root too.

`make lab` runs `python -m mmlab lab notebooks/`. Every argument goes to `jupyter lab`
unchanged (`--no-browser`, `--port=8889`, `--ip=0.0.0.0`, ...). Jupyter refuses to start
as root ("Running as root is not recommended. Use --allow-root to bypass."), which is the
normal user in Docker images and many cloud notebooks, so `--allow-root` is added when the
effective user id is 0, and only then.
"""
from __future__ import annotations

import os
import subprocess
import sys

ALLOW_ROOT = "--allow-root"


def running_as_root() -> bool:
    """True when the effective user id is 0 (always False where there are no user ids)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def lab_command(args: list[str], as_root: bool | None = None) -> list[str]:
    """The `jupyter lab` command line for `args`, run by this interpreter; `as_root` defaults to the current user."""
    as_root = running_as_root() if as_root is None else as_root
    command = [sys.executable, "-m", "jupyterlab", *args]
    if as_root and not any(a == ALLOW_ROOT or a.startswith("--ServerApp.allow_root") for a in args):
        command.insert(3, ALLOW_ROOT)
    return command


def main(argv: list[str]) -> int:
    """Start JupyterLab; on POSIX the process becomes the server, so signals reach it directly."""
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip() + "\n\n`jupyter lab --help` lists what jupyter accepts.")
        return 0
    command = lab_command(argv)
    sys.stdout.flush()
    if os.name == "posix":
        os.execv(command[0], command)  # does not return
    return subprocess.call(command)
