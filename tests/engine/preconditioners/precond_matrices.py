"""Small matrices for the preconditioner tests, built with scipy.sparse."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def laplace1d(n: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def poisson2d(N: int) -> sp.csr_matrix:
    T, I = laplace1d(N), sp.identity(N)
    return (sp.kron(T, I) + sp.kron(I, T)).tocsr()


def convection_diffusion2d(N: int, wind: float = 20.0) -> sp.csr_matrix:
    """First-order upwind convection-diffusion (nonsymmetric), scaled by h^2."""
    h = 1.0 / (N + 1)
    T, I = laplace1d(N), sp.identity(N)
    D = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N))
    return (sp.kron(T, I) + sp.kron(I, T) + wind * h * (sp.kron(D, I) + sp.kron(I, D))).tocsr()


def random_sparse(n: int, density: float, seed: int, symmetric: bool = False) -> sp.csr_matrix:
    """A random pattern with a dominant diagonal (nonsymmetric unless asked), permuted rows and
    columns so that the elimination has many irregular levels."""
    rng = np.random.default_rng(seed)
    R = sp.random(n, n, density=density, random_state=seed, format="csr")
    R.data = rng.uniform(-1, 1, R.nnz)
    if symmetric:
        R = R + R.T
    A = R + sp.diags(np.abs(R).sum(axis=1).A1 + 1.0)
    A = A.tocsr()
    A.sort_indices()
    return A
