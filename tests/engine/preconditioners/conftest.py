"""Fixtures for the preconditioner tests: ``device`` over the CPU and CUDA (skipped without a GPU)."""

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
