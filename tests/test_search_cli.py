"""`python -m mmlab search`: a run end to end (train, index, text and image queries, grid), the cached index
reused by the same model and refused for another, and every bad argument one line with exit status 2."""
import pytest
from test_cli import usage_error as any_usage_error  # tests/ is on sys.path (no package, pytest's prepend mode)

from mmlab.__main__ import main


def usage_error(argv, capsys) -> str:
    last = any_usage_error(argv, capsys)
    assert last.startswith("python -m mmlab search: error: "), last
    return last


@pytest.mark.parametrize("argv, message", [
    (["--k", "0"], r"--k must be in \[1, 1000\], got 0"),
    (["--gallery-size", "20", "--k", "21"], r"--k must be in \[1, 20\], got 21"),
    (["--gallery-size", "0"], r"--gallery-size must be in \[1, 100000\], got 0"),
    (["--gallery-size", "10", "--image", "10"], r"--image must be in \[0, 9\], got 10"),
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--text", " "], "--text must not be empty"),
    (["--checkpoint", "no/such/model.safetensors"], "--checkpoint 'no/such/model.safetensors' is not a file"),
    (["--grid", "hits.jpg"], "--grid must name a .png file"),
    (["--kind", "ivf"], "argument --kind: invalid choice: 'ivf'"),
    (["--k", "two"], "argument --k: invalid int value: 'two'"),
])
def test_bad_arguments_exit_2_before_work(argv, message, capsys):
    import re

    assert re.search(message, usage_error(["search", *argv], capsys))


def test_search_end_to_end_with_a_cached_index(tmp_path, capsys, one_thread):
    common = ["search", "--gallery-size", "60", "--k", "3", "--index", str(tmp_path / "gallery.safetensors"),
              "--grid", str(tmp_path / "grid.png")]
    assert main([*common, "--steps", "3", "--text", "a small red circle", "--image", "2",
                 "--save-checkpoint", str(tmp_path / "model.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "model: trained 3 steps" in out and "index: 60 gallery images encoded (exact" in out
    assert '"a small red circle"' in out and "image #2 (" in out
    image_hits = out.split("image #2 (")[1].splitlines()
    assert image_hits[1].split()[1:3] == ["#2", "1.000"]  # the query image is its own best hit
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main([*common, "--checkpoint", str(tmp_path / "model.safetensors"), "--text", "a big blue square"]) == 0
    out = capsys.readouterr().out
    assert "model: loaded" in out and "index: loaded 60 items" in out and '"a big blue square"' in out

    # another model (another seed) must not reuse the cached features
    line = usage_error([*common, "--steps", "2", "--seed", "1"], capsys)
    assert "gallery.safetensors was built by model 'sha256:" in line and "expected 'sha256:" in line


def test_a_checkpoint_of_another_kind_is_a_clear_error(tmp_path, capsys):
    from mmlab.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other.safetensors", {"weights": {}})
    line = usage_error(["search", "--checkpoint", str(tmp_path / "other.safetensors")], capsys)
    assert "other.safetensors is not a Shapes-World dual encoder" in line
