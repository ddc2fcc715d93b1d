"""Q1 (bilinear) plane-strain elasticity on a structured grid of the unit square.

The element stiffness is integrated with 2 x 2 Gauss points; every element of a uniform grid has
the same one, so the global matrix is one vectorized COO build. Dirichlet nodes are eliminated.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Local nodes counter-clockwise from the lower left, as (xi, eta) reference corners.
_XI = np.array([-1.0, 1.0, 1.0, -1.0])
_ETA = np.array([-1.0, -1.0, 1.0, 1.0])


def lame(E: float, nu: float) -> tuple[float, float]:
    """(lambda, mu) for plane strain."""
    return E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))


def q1_stiffness(lam: float, mu: float, h: float = 1.0) -> np.ndarray:
    """8 x 8 element stiffness of an h x h square; dofs (x0, y0, x1, y1, ...), nodes CCW.

    In 2-D the stiffness of a square element does not depend on h (B scales as 1/h, the area
    as h^2); ``h`` is kept for clarity.
    """
    d = np.array([[lam + 2 * mu, lam, 0.0], [lam, lam + 2 * mu, 0.0], [0.0, 0.0, mu]])
    k = np.zeros((8, 8))
    g = 1 / np.sqrt(3.0)
    for xi in (-g, g):
        for eta in (-g, g):
            dndx = _XI * (1 + _ETA * eta) / 4 * (2 / h)  # dN/dxi * dxi/dx
            dndy = _ETA * (1 + _XI * xi) / 4 * (2 / h)
            b = np.zeros((3, 8))
            b[0, 0::2] = dndx
            b[1, 1::2] = dndy
            b[2, 0::2] = dndy
            b[2, 1::2] = dndx
            k += b.T @ d @ b * (h * h / 4)  # Gauss weight 1, det J = h^2 / 4
    return (k + k.T) / 2  # exactly symmetric, so the assembled matrix is too


def _element_dofs(n: int) -> np.ndarray:
    """(n^2, 8) global dofs of each element; node id = i + (n + 1) j, dof = 2 node + component."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    base = (i + (n + 1) * j).ravel()
    nodes = np.stack([base, base + 1, base + n + 2, base + n + 1], axis=1)
    return np.stack([2 * nodes, 2 * nodes + 1], axis=2).reshape(-1, 8).astype(np.int64)


def assemble_q1(n: int, E: float, nu: float, clamp: str) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
    """(stiffness on the free dofs, point of each free dof, rigid-body modes on the free dofs)."""
    h = 1.0 / n
    ke = q1_stiffness(*lame(E, nu), h)
    dofs = _element_dofs(n)
    rows = np.repeat(dofs, 8, axis=1).ravel()
    cols = np.tile(dofs, (1, 8)).ravel()
    vals = np.tile(ke.ravel(), dofs.shape[0])
    ndof = 2 * (n + 1) ** 2
    a = sp.csr_array(sp.coo_array((vals, (rows, cols)), shape=(ndof, ndof)))
    del rows, cols, vals
    t = np.arange(n + 1) * h
    x, y = np.tile(t, n + 1), np.repeat(t, n + 1)
    if clamp == "none":  # the singular free-floating body (its kernel is the rigid-body modes)
        fixed = np.zeros(x.shape, dtype=bool)
    else:
        fixed = x == 0 if clamp == "left" else (x == 0) | (x == 1) | (y == 0) | (y == 1)
    free = np.flatnonzero(np.repeat(~fixed, 2))
    a = a[free][:, free]
    a = sp.csr_array((a + a.T) * 0.5)  # summation order can differ by one ulp between (i,j), (j,i)
    a.sort_indices()
    modes = np.zeros((ndof, 3))
    modes[0::2, 0] = 1  # translation in x
    modes[1::2, 1] = 1  # translation in y
    modes[0::2, 2] = -y  # rotation about the origin
    modes[1::2, 2] = x
    coords = np.repeat(np.stack([x, y], axis=1), 2, axis=0)
    return a, coords[free], modes[free]
