"""The test matrices of the engine's tests, built with scipy.sparse (independent of slactl's gallery,
so that a bug there cannot change what the tests check against).

``tests/`` is on ``sys.path`` under pytest (``tests/conftest.py`` is the rootdir conftest of a folder
without ``__init__.py``), so every test folder imports this module as ``problems``.

The builders return the type their tests were written for: ``csr_matrix`` (``poisson2d``,
``convection_diffusion2d``, ...) or ``csr_array`` (``poisson2d_array``, ``symmetric_matrix``, ...).
Each keeps the exact arithmetic its tests have always used, so the matrices are the same to the bit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def laplace1d(n: int) -> sp.csr_matrix:
    """1-D second difference ``tridiag(-1, 2, -1)`` (SPD)."""
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def poisson2d(N: int) -> sp.csr_matrix:
    """5-point Laplacian on an N x N grid (SPD)."""
    T, I = laplace1d(N), sp.identity(N)
    return (sp.kron(T, I) + sp.kron(I, T)).tocsr()


def poisson2d_array(N: int) -> sp.csr_array:
    """``poisson2d`` as a ``csr_array`` (SPD, degenerate eigenvalues by symmetry)."""
    return sp.csr_array(poisson2d(N))


def convection_diffusion2d(N: int, wind: float = 20.0, *, assembled_unscaled: bool = False) -> sp.csr_matrix:
    """-Laplace u + wind * (u_x + u_y), first-order upwind, scaled by h^2 (nonsymmetric, an M-matrix).

    ``assembled_unscaled`` builds the same matrix as h^2 * (L / h^2 + wind * C / h), the way the
    Krylov tests always have: it differs from the default L + wind * h * C only in the last bits.
    """
    h = 1.0 / (N + 1)
    T, I = laplace1d(N), sp.identity(N)
    D = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N))  # backward difference (upwind for wind > 0)
    L = sp.kron(T, I) + sp.kron(I, T)
    C = sp.kron(D, I) + sp.kron(I, D)
    if assembled_unscaled:
        return ((L / h**2 + wind * C / h) * h**2).tocsr()
    return (L + wind * h * C).tocsr()


def convection_dominated2d(k: int, eps: float = 0.05) -> sp.csr_array:
    """Upwind -eps lap u + u_x + 0.5 u_y, not scaled: nonsymmetric, an M-matrix."""
    h = 1.0 / (k + 1)
    lap = poisson2d_array(k) * (eps / h**2)
    d = sp.diags_array([-np.ones(k - 1), np.ones(k)], offsets=[-1, 0]) / h
    e = sp.eye_array(k)
    return sp.csr_array(lap + sp.kron(e, d) + 0.5 * sp.kron(d, e))


def indefinite2d(N: int) -> sp.csr_matrix:
    """Poisson shifted into the middle of a spectral gap (symmetric indefinite, well separated from 0)."""
    P = poisson2d(N)
    ev = np.linalg.eigvalsh(P.toarray())
    k = len(ev) // 8
    sigma = 0.5 * (ev[k] + ev[k + 1])
    while abs(ev[k + 1] - ev[k]) < 1e-6:  # avoid a multiple eigenvalue pair
        k += 1
        sigma = 0.5 * (ev[k] + ev[k + 1])
    return (P - sigma * sp.identity(P.shape[0])).tocsr()


def shifted_poisson2d(k: int, shift: float = 2.3) -> sp.csr_array:
    """Poisson shifted into the middle of its spectrum (symmetric indefinite); 2.0 is an eigenvalue
    for k = 8, hence the default 2.3."""
    a = poisson2d_array(k)
    return sp.csr_array(a - shift * sp.eye_array(a.shape[0]))


def ill_conditioned(k: int) -> sp.csr_array:
    """Anisotropic diffusion (eps = 1e-4) with a diagonal scaled over 6 orders of magnitude (SPD)."""
    t = sp.diags_array([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], offsets=[-1, 0, 1])
    e = sp.eye_array(k)
    a = sp.kron(t, e) + 1e-4 * sp.kron(e, t)
    s = sp.diags_array(np.logspace(0, 3, k * k))
    return sp.csr_array(s @ a @ s)


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


def symmetric_matrix(n: int = 300, seed: int = 0) -> sp.csr_array:
    """Tridiagonal Laplacian + a random symmetric sprinkle + a random diagonal: a simple spectrum."""
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=0.01, random_state=seed + 1)
    return sp.csr_array(laplace1d(n) + (B + B.T) * 0.5 + sp.diags(rng.uniform(0, 1, n)))
