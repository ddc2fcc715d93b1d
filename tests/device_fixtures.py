"""Fixtures shared by test packages that import them into their conftest: ``device`` over the CPU
and CUDA (skipped without a GPU, marked ``gpu``) and one torch thread per test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
    ]
)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are small: torch's intra-op threads only add synchronization (and on a
    shared 2-core machine, contention that makes each vector operation many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
