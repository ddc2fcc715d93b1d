"""The Krylov tests' problem catalog: matrices of ``problems`` (tests/problems.py) with their structure
and a reference solution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import problems
import slactl


def convection_diffusion2d(N: int, wind: float = 20.0) -> sp.csr_matrix:
    """The Krylov tests' convection-diffusion: ``problems.convection_diffusion2d`` with its rounding."""
    return problems.convection_diffusion2d(N, wind, assembled_unscaled=True)


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
        ("poisson", problems.poisson2d(16), "spd"),
        ("ill_conditioned", problems.laplace1d(300), "spd"),
        ("convection_diffusion", convection_diffusion2d(16), "general"),
        ("indefinite", problems.indefinite2d(12), "symmetric"),
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
