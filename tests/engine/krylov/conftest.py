"""Fixtures for the Krylov tests: a ``device`` parametrized over the CPU and CUDA (skipped without a
GPU) and the problem catalog (built with scipy, independent of slactl's io / gallery)."""

from __future__ import annotations

import krylov_problems
import pytest
from device_fixtures import _one_thread, device  # noqa: F401  (shared fixtures)


@pytest.fixture(scope="session")
def catalog() -> dict:
    return krylov_problems.catalog()
