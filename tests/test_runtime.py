import subprocess
import sys

import numpy as np
import pytest
import torch

from mmlab.runtime import pick_device, seed_everything, set_deterministic


def test_seed_everything_repeats_every_generator():
    def draw():
        gen = seed_everything(123)
        return torch.rand(3), np.random.rand(3), torch.rand(3, generator=gen)

    first, second = draw(), draw()
    for a, b in zip(first, second):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("bad", [-1, 1.5, "0"])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_pick_device_defaults_and_errors():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            pick_device("cuda")


def test_set_deterministic_toggles_torch():
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_importing_mmlab_has_no_global_side_effects():
    code = (
        "import torch; before = torch.initial_seed(); "
        "import mmlab, mmlab.runtime, mmlab.data, mmlab.viz; "
        "assert torch.initial_seed() == before; "
        "assert not torch.are_deterministic_algorithms_enabled(); "
        "import sys; assert 'matplotlib' not in sys.modules; print('clean')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "clean", out.stderr
