"""The command line: the headless notebook runner, the doctor, and every argument of every command checked
before any work starts (a bad one: one line naming it on stderr, exit status 2, no traceback)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_fusion_bench import synthetic_task

from mmlab.__main__ import main
from mmlab.fusion_bench import cli as bench_cli
from mmlab.fusion_bench import protocol, tuning


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_run_notebooks_reports_pass_and_fail_and_writes_html(tmp_path, capsys):
    _notebook(tmp_path / "00_ok.ipynb", "print(1 + 1)")
    _notebook(tmp_path / "01_broken.ipynb", "raise ValueError('boom')")
    original = (tmp_path / "00_ok.ipynb").read_text()
    code = main(["run-notebooks", "--notebooks", str(tmp_path), "--out", str(tmp_path / "html")])
    out = capsys.readouterr().out
    assert code == 1
    assert "00_ok.ipynb" in out and "pass" in out
    assert "01_broken.ipynb" in out and "FAIL" in out and "boom" in out
    assert "1/2 notebooks passed" in out
    assert (tmp_path / "html" / "00_ok.html").read_text().count("2") > 0
    assert (tmp_path / "00_ok.ipynb").read_text() == original  # executed a copy


def test_doctor_prints_a_verdict(capsys):
    code = main(["doctor", "--skip-kernels"])
    out = capsys.readouterr().out
    assert "torch" in out and "device" in out
    assert ("verdict: READY" in out) == (code == 0)
    assert code == 0, out


def usage_error(argv, capsys) -> str:
    """The one-line error `main(argv)` prints before exiting with status 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m mmlab") and ": error: " in last, err
    return last


@pytest.fixture
def notebooks(tmp_path):
    _notebook(tmp_path / "00_x.ipynb", "raise SystemExit('must not run')")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--timeout", "0"], "--timeout must be a positive integer, got 0"),
    (["--timeout", "-5"], "--timeout must be a positive integer, got -5"),
    (["--timeout", "1.5"], "argument --timeout: invalid int value: '1.5'"),
    (["--notebooks", "{tmp}/nope"], "--notebooks '.*nope' is not a folder"),
    (["--notebooks", "{tmp}/00_x.ipynb"], "--notebooks '.*00_x.ipynb' is not a folder"),
    (["--pattern", ""], "--pattern must be a non-empty glob"),
    (["--pattern", "/abs/*.ipynb"], "--pattern must be a non-empty glob relative to --notebooks"),
    (["--pattern", "9*.ipynb"], "no notebooks matching --pattern '9\\*.ipynb'"),
    (["--out", "{tmp}/00_x.ipynb"], "--out '.*00_x.ipynb' must be a folder, but it is a file"),
    (["--out", "{tmp}/00_x.ipynb/html"], "--out .* cannot be created: .*00_x.ipynb' is not a folder"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_run_notebooks_arguments(notebooks, capsys, args, message):
    argv = ["run-notebooks", "--notebooks", str(notebooks), *[a.format(tmp=notebooks) for a in args]]
    assert re.search(message, usage_error(argv, capsys))
    assert not (notebooks / "html").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_out_folder_is_refused(notebooks, capsys):
    locked = notebooks / "locked"
    locked.mkdir(mode=0o500)
    assert "not writable" in usage_error(["run-notebooks", "--notebooks", str(notebooks), "--out",
                                          str(locked / "html")], capsys)


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: command"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["doctor", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_commands_and_doctor_arguments(capsys, argv, message):
    assert message in usage_error(argv, capsys)


@pytest.fixture
def no_training(monkeypatch):
    """The bench on the synthetic task, with training forbidden: every error must come before it."""
    loaded = []
    monkeypatch.setattr(bench_cli, "load_task", lambda name: loaded.append(name) or synthetic_task())

    def forbidden(*args, **kwargs):
        raise AssertionError("training started before every argument was checked")

    monkeypatch.setattr(bench_cli, "run_protocol", forbidden)
    monkeypatch.setattr(tuning, "train_run", forbidden)
    monkeypatch.setattr(protocol, "train_run", forbidden)
    return loaded


BENCH_ERRORS = [
    (["--trials", "0"], "--trials must be a positive integer, got 0"),
    (["--seeds", "0"], "--seeds must be a positive integer, got 0"),
    (["--seeds", "-2"], "--seeds must be a positive integer, got -2"),
    (["--seeds", "2", "--dropout-seeds", "3"], "--dropout-seeds=3 must not exceed --seeds=2"),
    (["--dropout-seeds", "-1"], "--dropout-seeds must be a non-negative integer, got -1"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--max-steps", "0"], "--max-steps must be a positive integer, got 0"),
    (["--eval-every", "0"], "--eval-every must be a positive integer, got 0"),
    (["--patience", "0"], "--patience must be a positive integer, got 0"),
    (["--jobs", "0"], "--jobs must be a positive integer, got 0"),
    (["--width", "0"], "--width must be a positive integer, got 0"),
    (["--modality-dropout", "1"], r"--modality-dropout must be a finite number in \[0, 1\), got 1.0"),
    (["--modality-dropout", "nan"], "--modality-dropout must be a finite number .* got nan"),
    (["--noise", "-1"], "--noise must be a finite number >= 0, got -1.0"),
    (["--trials", "abc"], "argument --trials: invalid int value: 'abc'"),
    (["--task", "mnist"], "--task: unknown task 'mnist'; available: avdigits, vqa, synergy"),
    (["--task", "vqa", "vqa"], "--task must not list 'vqa' twice"),
    (["--names", "nope"], "--names: unknown fusion 'nope'; available: .*early"),
    (["--names", "late:learned"], "--names: bad option 'learned' in 'late:learned'; expected key=value"),
    (["--names", "early:=3"], "--names: bad option '=3'"),
    (["--names", "early:width=1,width=2"], "--names: option 'width' is given twice"),
    (["--names", "early:foo=1"], "method 'early\\(foo=1\\)' cannot be built .*no option 'foo'"),
    (["--names", "early", "early"], "the methods must not list 'early' twice"),
    (["--out", "{file}/fb"], "--out '.*fb' cannot be created: .* is not a folder"),
    (["--out", "{file}"], "--out .* must be a folder, but it is a file"),
    (["--training", "greedy"], "--training: unknown mode 'greedy'; choose from end_to_end, progressive_frozen"),
    (["--training", "end_to_end", "end_to_end"], "--training must not list 'end_to_end' twice"),
    (["--training", "greedy"], "--training: unknown mode 'greedy'; choose from end_to_end, progressive_frozen"),
    (["--training", "end_to_end", "end_to_end"], "--training must not list 'end_to_end' twice"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("args, message", BENCH_ERRORS)
def test_fusion_bench_arguments(no_training, tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("")
    args = [a.format(file=tmp_path / "file") for a in args]
    argv = ["fusion-bench", "--out", str(tmp_path / "out"), "--no-progress", *args]
    assert re.search(message, usage_error(argv, capsys))
    assert not (tmp_path / "out").exists()
    if "--out" in args or "--task" in args:
        assert no_training == []  # refused before any data is loaded


def test_a_bad_argument_exits_2_from_the_shell():
    run = subprocess.run([sys.executable, "-m", "mmlab", "fusion-bench", "--trials", "0"], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines()[-1] == ("python -m mmlab fusion-bench: error: --trials must be a positive "
                                                   "integer, got 0")
