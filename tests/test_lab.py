"""`make lab`: JupyterLab starts for the current user, root included (Docker, cloud notebooks)."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mmlab import lab
from mmlab.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60


def test_allow_root_is_added_for_root_only():
    assert lab.lab_command(["notebooks/"], as_root=False) == [sys.executable, "-m", "jupyterlab", "notebooks/"]
    assert lab.lab_command(["notebooks/"], as_root=True) == [sys.executable, "-m", "jupyterlab", "--allow-root",
                                                             "notebooks/"]
    for given in (["--allow-root"], ["--ServerApp.allow_root=True"]):  # never twice
        assert lab.lab_command(given, as_root=True).count("--allow-root") == given.count("--allow-root")


@pytest.mark.parametrize("uid", [0, 1000])
def test_root_is_the_effective_user_id_zero(monkeypatch, uid):
    monkeypatch.setattr(lab.os, "geteuid", lambda: uid, raising=False)
    assert lab.running_as_root() is (uid == 0)
    assert ("--allow-root" in lab.lab_command([])) is (uid == 0)


def test_lab_help_is_ours_and_starts_nothing(capsys):
    assert main(["lab", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--allow-root" in out and "jupyter lab --help" in out


def _make_lab_command() -> list[str]:
    """What `make lab` runs (its set-up prerequisite left out), with this interpreter."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "lab"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    lines = [line for line in dry.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"`make -n lab` should print one command, got:\n{dry.stdout}"
    command = shlex.split(lines[0])
    assert command[0] == ".venv/bin/python" and command[1:4] == ["-m", "mmlab", "lab"], command
    return [sys.executable, *command[1:]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_make_lab_serves_http_as_the_current_user(tmp_path):
    command = _make_lab_command()
    port, token = _free_port(), "mmlab-test-token"
    command += ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}"]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    log_path = tmp_path / "lab.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline, status = time.monotonic() + STARTUP_TIMEOUT_S, None
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"`make lab` exited with {server.returncode} before serving (uid {os.getuid()}):\n"
                            f"{log_path.read_text()}")
            try:
                status, body = _get(f"{base}/api/status", token)
            except OSError:  # not listening yet
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"`make lab` did not answer on {base}/api/status within {STARTUP_TIMEOUT_S} s "
                        f"(last status {status}, uid {os.getuid()}):\n{log_path.read_text()}")
        assert "started" in json.loads(body)
        page_status, page = _get(f"{base}/lab", token)
        assert page_status == 200 and b"JupyterLab" in page, (page_status, page[:300])
        assert _get(f"{base}/api/status", None)[0] == 403  # the token is required
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert "Running as root is not recommended" not in log_path.read_text()
