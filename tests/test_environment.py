"""The three descriptions of the stack (pyproject.toml, constraints.txt, environment.yml) agree."""
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _toml():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pyproject():
    return _toml()["project"]


def _pins():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = Version(version)
    return pins


def _requirements():
    project = _pyproject()
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("mmlab")]
    return reqs


def test_every_requirement_is_pinned_and_the_pin_satisfies_it():
    pins = _pins()
    for req in _requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is required by pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]}, outside {req}"


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    assert _pins()["torch"] == Version("2.13.0")


def test_environment_yml_installs_the_same_stack():
    text = (ROOT / "environment.yml").read_text()
    assert "-c constraints.txt" in text
    assert "-e .[dev]" in text
    python = re.search(r"python=(\d+\.\d+)", text).group(1)
    assert SpecifierSet(_pyproject()["requires-python"]).contains(Version(python))


def test_makefile_installs_the_same_extras_with_the_same_constraints():
    text = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt -e '.[dev]'" in text


def test_running_python_is_supported():
    assert SpecifierSet(_pyproject()["requires-python"]).contains(Version(".".join(map(str, sys.version_info[:3]))))


def _make_dry_run(target):
    """The commands `make TARGET` runs, its set-up prerequisite left out."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", target], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return [shlex.split(line) for line in dry.stdout.splitlines() if line.strip()]


def test_make_test_lints_then_runs_every_test():
    lint, tests = _make_dry_run("test")
    assert lint == [".venv/bin/ruff", "check", "."]
    assert tests[:2] == ["OMP_NUM_THREADS=1", ".venv/bin/pytest"] and "--nbval" in tests


def test_lint_and_hang_guard_are_configured():
    config = _toml()
    assert config["tool"]["ruff"]["line-length"] == 120
    assert {"E", "F"} <= set(config["tool"]["ruff"]["lint"]["select"])
    assert 60 <= int(config["tool"]["pytest"]["ini_options"]["timeout"]) <= 3600
    dev = [Requirement(r).name for r in _pyproject()["optional-dependencies"]["dev"]]
    assert "ruff" in dev and "pytest-timeout" in dev


def test_ci_runs_only_the_readme_test_command():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "make test"
    assert "make test" in (ROOT / "README.md").read_text()
