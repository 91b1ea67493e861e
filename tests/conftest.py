"""Fixtures shared by every test file (the repository's conftest.py sets EDUDIFF_FAST/EDUDIFF_DATA)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The tests' tensors are small: one intra-op thread is faster than two, and it avoids OpenMP
    spin-waits that make a busy 2-core machine 10x slower. Restored after each test."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
