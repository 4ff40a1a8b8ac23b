"""An install (`pip install .`, a wheel) ships data/ and finds it; the lookup order; the error if none is found."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mmlab.data import assets
from mmlab.data.assets import AssetError, data_root
from mmlab.data.av_digits import EXPECTED_SHA256, verify_assets

ROOT = Path(__file__).resolve().parents[1]
# what a build never needs; everything else is copied, as in a clean clone
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     ".ruff_cache", ".ipynb_checkpoints")


def _make_data_dir(path: Path) -> Path:
    (path / "av_digits").mkdir(parents=True)
    return path


@pytest.fixture
def locations(tmp_path, monkeypatch):
    """Three empty candidate folders standing in for the clone's data/ and two install prefixes."""
    source, first, second = tmp_path / "clone" / "data", tmp_path / "venv" / "data", tmp_path / "base" / "data"
    monkeypatch.delenv("MMLAB_DATA_DIR", raising=False)
    monkeypatch.setattr(assets, "_source_data_dir", lambda: source)
    monkeypatch.setattr(assets, "_installed_data_dirs", lambda: [first, second])
    return source, first, second


def test_resolution_order(locations, monkeypatch, tmp_path):
    source, first, second = locations
    _make_data_dir(second)
    assert data_root() == second
    (first / "other").mkdir(parents=True)  # a folder without av_digits/ is not a data folder
    assert data_root() == second
    _make_data_dir(first)
    assert data_root() == first
    _make_data_dir(source)
    assert data_root() == source  # a clone reads its own data/, even with an install around
    explicit = tmp_path / "mine"
    explicit.mkdir()
    monkeypatch.setenv("MMLAB_DATA_DIR", str(explicit))
    assert data_root() == explicit  # the variable wins over everything
    assert assets.data_search_path() == [source, first, second]


def test_nothing_found_is_a_clear_error(locations):
    with pytest.raises(AssetError) as err:
        data_root()
    message = str(err.value)
    assert "cannot find mmlab's data folder" in message and "MMLAB_DATA_DIR" in message
    assert all(str(path) in message for path in locations)
    with pytest.raises(AssetError, match="MMLAB_DATA_DIR"):
        verify_assets()  # what the datasets and the doctor call


def test_a_variable_that_is_not_a_folder_is_a_clear_error(locations, monkeypatch, tmp_path):
    _make_data_dir(locations[0])
    monkeypatch.setenv("MMLAB_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(AssetError, match=r"MMLAB_DATA_DIR=.*typo.* is not a folder"):
        data_root()


def test_installed_locations_include_this_environment():
    dirs = assets._installed_data_dirs()
    expected = Path(sysconfig.get_path("data"), "share", "mmlab", "data")
    assert dirs[0] == expected and Path(sys.prefix, "share", "mmlab", "data") in dirs
    assert len(dirs) == len(set(dirs))


def test_this_checkout_reads_its_own_data_folder(monkeypatch):
    monkeypatch.delenv("MMLAB_DATA_DIR", raising=False)
    assert data_root() == ROOT / "data"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the working tree, offline (no build isolation, no index)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    shutil.copytree(ROOT, tree, ignore=_NOT_COPIED, symlinks=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--no-build-isolation",
                    "--no-index", "--quiet", "-w", str(tmp / "dist")], check=True, timeout=300)
    (path,) = (tmp / "dist").glob("mmlab-*.whl")
    return path


def test_wheel_ships_the_checksummed_assets(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (data,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".data")}
        for name, sha in EXPECTED_SHA256.items():
            member = f"{data}/data/share/mmlab/data/av_digits/{name}"
            assert member in names, f"{member} missing from {wheel.name}"
            assert hashlib.sha256(z.read(member)).hexdigest() == sha
        for name in ("MANIFEST.json", "generator.safetensors", "attribute_reader.safetensors",
                     "dual_encoder.safetensors"):  # lesson 15's committed run
            member = f"{data}/data/share/mmlab/data/text_to_image/{name}"
            assert z.read(member) == (ROOT / "data" / "text_to_image" / name).read_bytes(), member
        assert "mmlab/data/assets.py" in names and "mmlab/lab.py" in names
        assert not any(n.startswith(("tests/", "notebooks/", "benchmarks/")) for n in names)


def test_installed_wheel_finds_its_data(wheel, tmp_path):
    """Install the wheel into a fresh environment; its mmlab (not this checkout's) verifies and loads AV-Digits."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=300)
    # mmlab's dependencies come from this environment; a plain path entry, so its .pth files
    # (this checkout's editable install among them) are not run
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    Path(site, "mmlab_test_deps.pth").write_text("\n".join(deps) + "\n")
    script = ("import mmlab.data.assets as a, mmlab.data.av_digits as d\n"
              "print(a.__file__); print(a.data_root())\n"
              "assert all(r['ok'] for r in d.verify_assets()), d.verify_assets(strict=False)\n"
              "print(d.AVDigits('val', size=2)[1]['label'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MMLAB_DATA_DIR", "PYTHONPATH")}
    run = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    module, root, label = run.stdout.split("\n")[:3]
    assert Path(module).resolve().is_relative_to(Path(site).resolve())
    assert Path(root).resolve() == (venv / "share" / "mmlab" / "data").resolve()
    assert 0 <= int(label) <= 9
