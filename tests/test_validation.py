"""mmlab.validation's checks of plain arguments (numbers, flags, names, callables, modules, paths) and of
class-index and plottable tensors: what each accepts, and the error type and message of what it refuses."""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from mmlab import validation as v


@pytest.mark.parametrize("kwargs, value, expected", [
    ({}, 3, 3.0), ({}, np.float32(0.5), 0.5), ({}, np.int64(2), 2.0), ({"low": 0}, 0, 0.0),
    ({"low": 0, "high": 1, "high_open": True}, 0.999, 0.999), ({"low": 0, "low_open": True}, 1e-300, 1e-300),
])
def test_finite_float_accepts(kwargs, value, expected):
    got = v.finite_float("x", value, **kwargs)
    assert got == expected and type(got) is float


@pytest.mark.parametrize("kwargs, value, error, message", [
    ({}, True, TypeError, "x must be a real number, got bool True"),
    ({}, "1", TypeError, "x must be a real number, got str '1'"),
    ({}, torch.tensor(1.0), TypeError, "x must be a real number, got Tensor"),
    ({}, None, TypeError, "x must be a real number, got NoneType None"),
    ({}, math.nan, ValueError, "x must be a finite number, got nan"),
    ({}, -math.inf, ValueError, "x must be a finite number, got -inf"),
    ({"low": 0}, -0.5, ValueError, "x must be a finite number >= 0, got -0.5"),
    ({"low": 0, "low_open": True}, 0, ValueError, "x must be a finite number > 0, got 0"),
    ({"high": 1}, 2, ValueError, "x must be a finite number <= 1, got 2"),
    ({"high": 1, "high_open": True}, 1.0, ValueError, "x must be a finite number < 1, got 1.0"),
    ({"low": 0, "high": 1, "high_open": True}, 1.5, ValueError, r"x must be a finite number in \[0, 1\), got 1.5"),
    ({"low": 0, "high": 1, "low_open": True}, 0, ValueError, r"x must be a finite number in \(0, 1\], got 0"),
    ({"low": 0, "high": 1}, math.inf, ValueError, r"in \[0, 1\], got inf"),
])
def test_finite_float_refuses(kwargs, value, error, message):
    with pytest.raises(error, match=message):
        v.finite_float("x", value, **kwargs)


def test_boolean_callable_and_module():
    assert v.boolean("flag", True) is True and v.boolean("flag", False) is False
    for bad in (0, 1, "yes", None, np.bool_(True)):
        with pytest.raises(TypeError, match="flag must be True or False, got"):
            v.boolean("flag", bad)
    assert v.require_callable("fn", len) is len
    with pytest.raises(TypeError, match="fn must be callable, got int"):
        v.require_callable("fn", 3)
    lin = nn.Linear(1, 1)
    assert v.require_module("model", lin) is lin
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        v.require_module("model", lambda x: x)


def test_str_list():
    assert v.str_list("names", "a") == ["a"]
    assert v.str_list("names", ("a", "b")) == ["a", "b"]
    assert v.str_list("names", (s for s in "ab"), single=False) == ["a", "b"]
    for bad, error, message in [
        ("ab", TypeError, "names must be a sequence of strings, not one string 'ab'"),
        (3, TypeError, "names must be a string or a sequence of strings, got int"),
        ({"a": 1}, TypeError, "names must be a string or a sequence of strings, got dict"),
        (["a", 3], TypeError, "names must hold strings only, got int 3"),
        ([], ValueError, r"names must be one or more non-empty strings, got \[\]"),
        (["a", ""], ValueError, "names must be one or more non-empty strings"),
    ]:
        with pytest.raises(error, match=message):
            v.str_list("names", bad, single=False)


def test_paths(tmp_path):
    assert v.as_path("p", str(tmp_path)) == tmp_path
    with pytest.raises(TypeError, match="p must be a path .*, got int 3"):
        v.as_path("p", 3)
    file = tmp_path / "f.txt"
    file.write_text("")
    assert v.writable_path("out", tmp_path / "new" / "deeper" / "f.md") == tmp_path / "new" / "deeper" / "f.md"
    assert v.writable_path("out", file) == file
    assert v.writable_path("out", tmp_path / "new", folder=True) == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # checked, nothing written
    with pytest.raises(ValueError, match="out '.*f.txt' must be a folder, but it is a file"):
        v.writable_path("out", file, folder=True)
    with pytest.raises(ValueError, match="out '.*' must be a file, but it is a folder"):
        v.writable_path("out", tmp_path)
    with pytest.raises(ValueError, match="out '.*f.txt/x.md' cannot be created: '.*f.txt' is not a folder"):
        v.writable_path("out", file / "x.md")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_writable_path_sees_permissions(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="out '.*locked/x.md' is not writable"):
        v.writable_path("out", locked / "x.md")


def test_class_indices():
    for value in ([0, 2, 1], np.array([0, 2, 1]), torch.tensor([0, 2, 1], dtype=torch.int32)):
        y = v.class_indices("labels", value, 3)
        assert y.dtype == torch.long and y.tolist() == [0, 2, 1]
    assert v.class_indices("labels", []).shape == (0,)
    for bad, error, message in [
        ([0.0, 1.0, 2.0], TypeError, "labels must be integer class indices, got torch.float32"),
        ([True, False, True], TypeError, "labels must be integer class indices, got torch.bool"),
        ("ab", TypeError, "labels must be integer class indices .*got str"),
        ([[0]], ValueError, r"labels must have shape \(N,\), got \(1, 1\)"),
        ([0, 1], ValueError, r"labels must have shape \(3,\), got \(2,\)"),
        ([0, -1, 2], ValueError, "labels must be non-negative class indices, got -1"),
    ]:
        with pytest.raises(error, match=message):
            v.class_indices("labels", bad, None if "N," in message else 3)


def test_floating_tensor():
    x = torch.rand(2, 3)
    assert v.floating_tensor("x", x, 2, "(R, C)") is x
    assert v.floating_tensor("x", torch.rand(1, 2, 3), (2, 3), "(C, H, W)").ndim == 3
    for bad, error, message in [
        ([[1.0]], TypeError, "x must be a torch.Tensor, got list"),
        (torch.rand(3), ValueError, r"x must be \(R, C\), got shape \(3,\)"),
        (torch.ones(2, 2, dtype=torch.long), TypeError, "x must be floating point, got torch.int64"),
        (torch.ones(0, 2), ValueError, r"x is empty: shape \(0, 2\)"),
        (torch.tensor([[1.0, math.nan]]), ValueError, "x contains NaN or inf"),
    ]:
        with pytest.raises(error, match=message):
            v.floating_tensor("x", bad, 2, "(R, C)")


def test_item_index():
    assert v.item_index(2, 5) == 2 and v.item_index(-1, 5) == 4
    assert v.item_index(np.int64(3), 5) == 3 and v.item_index(torch.tensor(1), 5) == 1
    for bad, error, message in [(5, IndexError, "index 5 is out of range for 5 items"),
                                (-6, IndexError, "index -6 is out of range"),
                                (True, TypeError, "index must be an int, got bool True"),
                                (1.0, TypeError, "index must be an int, got float 1.0"),
                                ("0", TypeError, "index must be an int, got str '0'")]:
        with pytest.raises(error, match=message):
            v.item_index(bad, 5)


def test_distinct():
    assert v.distinct("xs", (x for x in (1, 2.5, "a"))) == [1, 2.5, "a"]
    with pytest.raises(ValueError, match=r"xs must not list 1.0 twice \(at positions 0 and 1\)"):
        v.distinct("xs", [1, 1.0])
    with pytest.raises(ValueError, match=r"xs must not list \[0\] twice"):
        v.distinct("xs", [[0], [0]])  # unhashable items too
