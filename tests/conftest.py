"""Test-wide setup.

Triton kernels run on CPU tensors under the Triton interpreter, which must be switched on
before any kernel is defined, so it is set here, before the tests import mmlab.kernels.
On a machine with CUDA the real kernels are tested instead.
"""
import os

import pytest
import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids thread contention on a busy CPU (5x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
