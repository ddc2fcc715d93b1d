"""Fixtures for the Krylov tests: a ``device`` parametrized over the CPU and CUDA (skipped without a
GPU) and the problem catalog (built with scipy, independent of slactl's io / gallery)."""

from __future__ import annotations

import pytest
import torch

import krylov_problems


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
    ]
)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="session")
def catalog() -> dict:
    return krylov_problems.catalog()
