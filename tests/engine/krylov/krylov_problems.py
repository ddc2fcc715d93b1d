"""Small test problems built with scipy.sparse, with their structure and a reference solution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import slactl


def laplace1d(n: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def poisson2d(N: int) -> sp.csr_matrix:
    """5-point Laplacian on an N x N grid (SPD)."""
    T, I = laplace1d(N), sp.identity(N)
    return (sp.kron(T, I) + sp.kron(I, T)).tocsr()


def convection_diffusion2d(N: int, wind: float = 20.0) -> sp.csr_matrix:
    """-Laplace u + wind * (u_x + u_y), first-order upwind (nonsymmetric, an M-matrix)."""
    h = 1.0 / (N + 1)
    T, I = laplace1d(N), sp.identity(N)
    D = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N))  # backward difference (upwind for wind > 0)
    A = (sp.kron(T, I) + sp.kron(I, T)) / h**2 + wind * (sp.kron(D, I) + sp.kron(I, D)) / h
    return (A * h**2).tocsr()


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


@dataclass
class Problem:
    name: str
    A: sp.csr_matrix
    structure: str  # "spd", "symmetric", "general"
    cond: float

    def matrix(self, dtype=torch.float64, device="cpu") -> slactl.SparseMatrix:
        return slactl.SparseMatrix.from_scipy(self.A, dtype=dtype, device=device)

    def rhs(self, k: int | None = None, dtype=torch.float64, device="cpu", seed: int = 0) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        n = self.A.shape[0]
        b = rng.standard_normal((n,) if k is None else (n, k))
        return torch.from_numpy(b).to(dtype=dtype, device=device)

    def reference(self, b: torch.Tensor) -> np.ndarray:
        """scipy's sparse direct solve (SuperLU), in float64 / complex128."""
        rhs = b.detach().cpu().numpy().astype(np.complex128 if b.is_complex() else np.float64)
        return spla.spsolve(self.A.tocsc().astype(rhs.dtype), rhs).reshape(rhs.shape)


def _cond(A: sp.csr_matrix) -> float:
    return float(np.linalg.cond(A.toarray()))


def catalog() -> dict[str, Problem]:
    out = {}
    for name, A, structure in [
        ("poisson", poisson2d(16), "spd"),
        ("ill_conditioned", laplace1d(300), "spd"),
        ("convection_diffusion", convection_diffusion2d(16), "general"),
        ("indefinite", indefinite2d(12), "symmetric"),
    ]:
        out[name] = Problem(name, A, structure, _cond(A))
    return out


# Which catalog entries each method must solve.
SUITS = {
    "cg": ("spd",),
    "minres": ("spd", "symmetric"),
    "gmres": ("spd", "symmetric", "general"),
    "bicgstab": ("spd", "general"),
}
