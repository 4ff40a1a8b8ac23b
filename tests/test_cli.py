"""The command line: the headless notebook runner and the doctor."""
import nbformat
import pytest

from mmlab.__main__ import main


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


def test_run_notebooks_errors_on_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        main(["run-notebooks", "--notebooks", str(tmp_path)])


def test_doctor_prints_a_verdict(capsys):
    code = main(["doctor", "--skip-kernels"])
    out = capsys.readouterr().out
    assert "torch" in out and "device" in out
    assert ("verdict: READY" in out) == (code == 0)
    assert code == 0, out
