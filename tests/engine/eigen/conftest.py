"""Fixtures for the eigen tests: one torch thread (small problems), a CPU/CUDA device fixture and
test matrices built with SciPy (independent of slactl's gallery)."""

from __future__ import annotations

import pytest
import scipy.sparse as sp
import torch

from problems import symmetric_matrix


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
    ]
)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="session")
def sym300() -> sp.csr_array:
    return symmetric_matrix(300)
