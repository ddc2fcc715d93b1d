"""Test matrices for the eigen tests, built with SciPy (independent of slactl's gallery)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def symmetric_matrix(n: int = 300, seed: int = 0) -> sp.csr_array:
    """Tridiagonal Laplacian + a random symmetric sprinkle + a random diagonal: a simple spectrum."""
    rng = np.random.default_rng(seed)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    B = sp.random(n, n, density=0.01, random_state=seed + 1)
    return sp.csr_array(T + (B + B.T) * 0.5 + sp.diags(rng.uniform(0, 1, n)))


def spd_matrix(n: int = 20) -> sp.csr_array:
    """2D Poisson on an n x n grid (SPD, degenerate eigenvalues by symmetry)."""
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    return sp.csr_array(sp.kron(T, sp.eye(n)) + sp.kron(sp.eye(n), T))
