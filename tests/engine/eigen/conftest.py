"""Fixtures for the eigen tests: one torch thread (small problems), a CPU/CUDA device fixture and
test matrices built with SciPy (independent of slactl's gallery)."""

from __future__ import annotations

import pytest
import scipy.sparse as sp

from device_fixtures import _one_thread, device  # noqa: F401  (shared fixtures)
from problems import symmetric_matrix


@pytest.fixture(scope="session")
def sym300() -> sp.csr_array:
    return symmetric_matrix(300)
