"""Small linear systems for the solve tests, built with SciPy (independent of slactl's gallery)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def poisson2d(k: int) -> sp.csr_array:
    t = sp.diags_array([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], offsets=[-1, 0, 1])
    e = sp.eye_array(k)
    return sp.csr_array(sp.kron(t, e) + sp.kron(e, t))


def convection_diffusion(k: int, eps: float = 0.05) -> sp.csr_array:
    """Upwind -eps lap u + u_x + 0.5 u_y: nonsymmetric, an M-matrix."""
    h = 1.0 / (k + 1)
    lap = poisson2d(k) * (eps / h**2)
    d = sp.diags_array([-np.ones(k - 1), np.ones(k)], offsets=[-1, 0]) / h
    e = sp.eye_array(k)
    return sp.csr_array(lap + sp.kron(e, d) + 0.5 * sp.kron(d, e))


def symmetric_indefinite(k: int) -> sp.csr_array:
    """Poisson shifted into the middle of its spectrum."""
    a = poisson2d(k)
    return sp.csr_array(a - 2.3 * sp.eye_array(a.shape[0]))  # 2.0 is an eigenvalue for k = 8


def ill_conditioned(k: int) -> sp.csr_array:
    """Anisotropic diffusion (eps = 1e-4) with a diagonal scaled over 6 orders of magnitude."""
    t = sp.diags_array([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], offsets=[-1, 0, 1])
    e = sp.eye_array(k)
    a = sp.kron(t, e) + 1e-4 * sp.kron(e, t)
    s = sp.diags_array(np.logspace(0, 3, k * k))
    return sp.csr_array(s @ a @ s)


SYSTEMS = {
    "spd": (poisson2d(9), "spd"),
    "nonsymmetric": (convection_diffusion(9), "general"),
    "indefinite": (symmetric_indefinite(8), "symmetric"),
    "illcond": (ill_conditioned(7), "spd"),
}

# Which methods apply to which structure.
METHODS_FOR = {
    "spd": ["direct", "cg", "minres", "gmres", "bicgstab"],
    "symmetric": ["direct", "minres", "gmres"],
    "general": ["direct", "gmres", "bicgstab"],
}
