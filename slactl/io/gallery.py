"""A gallery of generated test problems: SciPy CSR plus node coordinates, by name.

Every problem is assembled with vectorized NumPy/SciPy (Kronecker sums, slicing, one COO build),
so a million unknowns take seconds. Grid problems number unknowns with x fastest
(``index = i + n * j``) and place them at the interior points ``(i + 1) h`` of the unit square
(cube), ``h = 1 / (n + 1)``.

=================  ==========================================================  ================
name               problem                                                      ``size``
=================  ==========================================================  ================
poisson2d          5-point Laplacian, Dirichlet (SPD)                           n: n^2 unknowns
poisson3d          7-point Laplacian, Dirichlet (SPD)                           n: n^3 unknowns
anisotropic2d      -u_xx - eps u_yy, 5-point (SPD)                              n: n^2 unknowns
highcontrast2d     -div(k grad u), k in {1, contrast} by blocks (SPD)           n: n^2 unknowns
convdiff2d         -eps lap u + w . grad u, upwind (nonsymmetric M-matrix)      n: n^2 unknowns
rgg_laplacian      graph Laplacian of a random geometric graph + shift (SPD)   n: n nodes
elasticity2d       Q1 plane strain, left side clamped (SPD, rigid-body modes)   n: n x n elements
=================  ==========================================================  ================

Examples
--------
>>> from slactl.io.gallery import generate
>>> p = generate("poisson2d", 4)
>>> p.matrix.shape, p.coordinates.shape
((16, 16), (16, 2))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from slactl.errors import UsageError
from slactl.io.matrix_data import MatrixData


@dataclass
class Problem:
    """A generated matrix and what is known about it.

    ``coordinates`` has one row per unknown (for elasticity, both displacement components of a
    node share its point); ``near_nullspace`` (elasticity: rigid-body modes restricted to the
    free unknowns) has one column per mode.
    """

    name: str
    size: int
    matrix: sp.csr_array
    coordinates: np.ndarray | None = None
    near_nullspace: np.ndarray | None = None
    symmetric: bool = True
    spd: bool = True
    params: dict = field(default_factory=dict)

    def to_matrix_data(self) -> MatrixData:
        """As :class:`MatrixData` for the writers, with the command that makes it as its source."""
        # str values are quoted (shell-safe); numbers print as Python reads them back exactly.
        extra = "".join(f" --param {k}={v!r}" if isinstance(v, str) else f" --param {k}={v}"
                        for k, v in self.params.items())
        return MatrixData(
            self.matrix,
            "real",
            "symmetric" if self.symmetric else "general",
            source=f"slactl gallery {self.name} --size {self.size}{extra}",
        )


@dataclass(frozen=True)
class GalleryEntry:
    name: str
    build: Callable[..., Problem]
    summary: str
    size_meaning: str
    default_size: int


GALLERY: dict[str, GalleryEntry] = {}


def _register(name: str, summary: str, size_meaning: str, default_size: int):
    def wrap(fn: Callable[..., Problem]) -> Callable[..., Problem]:
        GALLERY[name] = GalleryEntry(name, fn, summary, size_meaning, default_size)
        return fn

    return wrap


def names() -> list[str]:
    """Registered problem names."""
    return sorted(GALLERY)


def generate(name: str, size: int | None = None, **params) -> Problem:
    """Build problem ``name`` at ``size`` (see the table in the module docstring).

    Raises
    ------
    UsageError
        Unknown name, non-positive size, unknown parameter, a parameter of the wrong type or not
        finite, or parameters that make the matrix non-finite.
    """
    if name not in GALLERY:
        raise UsageError(f"no gallery problem {name!r}; choose one of {', '.join(names())}")
    entry = GALLERY[name]
    size = entry.default_size if size is None else int(size)
    if size < 1:
        raise UsageError(f"size must be a positive integer, got {size}")
    problem = entry.build(size, **_checked_params(entry, params))
    if problem.matrix.dtype.kind in "fc" and not np.isfinite(problem.matrix.data).all():
        shown = ", ".join(f"{k}={v}" for k, v in problem.params.items()) or "the defaults"
        raise UsageError(f"{name} with {shown} at size {size} has non-finite (NaN or Inf) entries; "
                         "choose parameters of a moderate magnitude")
    return problem


def _checked_params(entry: GalleryEntry, params: dict) -> dict:
    """``params`` checked against the builder's keyword parameters: known names, each of the type
    of its default (a number where a number is expected, an integer for integers), finite numbers,
    a non-negative seed."""
    import inspect
    import math

    accepted = {p.name: p.default for p in list(inspect.signature(entry.build).parameters.values())[1:]}
    out = {}
    for key, value in params.items():
        if key not in accepted:
            known = f"its parameters: {', '.join(accepted)}" if accepted else "it takes none"
            raise UsageError(f"{entry.name} has no parameter {key!r}; {known}")
        default = accepted[key]
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not number:
                raise UsageError(f"{entry.name}: parameter {key} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise UsageError(f"{entry.name}: parameter {key} must be a finite number, got {value}")
            if isinstance(default, int):
                if float(value) != int(value):
                    raise UsageError(f"{entry.name}: parameter {key} must be an integer, got {value}")
                value = int(value)
                if key == "seed" and value < 0:
                    raise UsageError(f"{entry.name}: parameter seed must be a non-negative integer, got {value}")
            else:
                value = float(value)
        out[key] = value
    return out


# ----------------------------------------------------------------------------- helpers
def _second_difference(n: int) -> sp.csr_array:
    """tridiag(-1, 2, -1): the 1-D Dirichlet Laplacian times h^2."""
    return sp.diags_array([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], offsets=[-1, 0, 1], format="csr")


def _grid_points(n: int, dim: int) -> np.ndarray:
    """Interior grid points, x fastest: coordinate k of unknown i0 + n i1 + n^2 i2 is (i_k + 1) h."""
    t = np.arange(1, n + 1, dtype=np.float64) / (n + 1)
    return np.stack([np.tile(np.repeat(t, n**k), n ** (dim - 1 - k)) for k in range(dim)], axis=1)


def _kron_sum(ops: list[sp.csr_array]) -> sp.csr_array:
    """sum_k I x ... x ops[k] x ... x I, with ops[0] acting on the fastest index (x)."""
    sizes = [op.shape[0] for op in ops]
    total = None
    for k, op in enumerate(ops):
        slow = int(np.prod(sizes[k + 1 :], dtype=np.int64))
        fast = int(np.prod(sizes[:k], dtype=np.int64))
        term = sp.kron(sp.kron(sp.eye_array(slow), op), sp.eye_array(fast), format="csr")
        total = term if total is None else total + term
    return sp.csr_array(total)


def _symmetrize(a: sp.csr_array) -> sp.csr_array:
    """Make a numerically symmetric assembly bit-for-bit symmetric ((x + y) / 2 is commutative)."""
    out = sp.csr_array((a + a.T) * 0.5)
    out.sort_indices()
    return out


# ----------------------------------------------------------------------------- problems
@_register("poisson2d", "5-point Laplacian on the unit square, Dirichlet (SPD)", "grid points per side; n^2 unknowns", 64)
def poisson2d(n: int) -> Problem:
    t = _second_difference(n)
    return Problem("poisson2d", n, _kron_sum([t, t]), _grid_points(n, 2))


@_register("poisson3d", "7-point Laplacian on the unit cube, Dirichlet (SPD)", "grid points per side; n^3 unknowns", 16)
def poisson3d(n: int) -> Problem:
    t = _second_difference(n)
    return Problem("poisson3d", n, _kron_sum([t, t, t]), _grid_points(n, 3))


@_register("anisotropic2d", "-u_xx - eps u_yy, 5-point, Dirichlet (SPD)", "grid points per side; n^2 unknowns", 64)
def anisotropic2d(n: int, epsilon: float = 1e-3) -> Problem:
    if not epsilon > 0:
        raise UsageError(f"epsilon must be positive, got {epsilon}")
    t = _second_difference(n)
    a = _kron_sum([t, epsilon * t])
    return Problem("anisotropic2d", n, a, _grid_points(n, 2), params={"epsilon": epsilon})


def _block_coefficient(n: int, contrast: float, blocks: int, seed: int) -> np.ndarray:
    """k[j, i] in {1, contrast}, constant on a blocks x blocks checkerboard of random values."""
    rng = np.random.default_rng(seed)
    high = rng.random((blocks, blocks)) < 0.5
    which = (np.arange(n) * blocks) // n
    return np.where(high[np.ix_(which, which)], contrast, 1.0)


@_register(
    "highcontrast2d",
    "-div(k grad u), k in {1, contrast} on random blocks, harmonic face averages (SPD)",
    "grid points per side; n^2 unknowns",
    64,
)
def highcontrast2d(n: int, contrast: float = 1e6, blocks: int = 8, seed: int = 0) -> Problem:
    if not contrast > 0 or blocks < 1:
        raise UsageError("contrast must be positive and blocks at least 1")
    k = _block_coefficient(n, contrast, blocks, seed)
    kx = 2 * k[:, :-1] * k[:, 1:] / (k[:, :-1] + k[:, 1:])  # faces between x-neighbours
    ky = 2 * k[:-1, :] * k[1:, :] / (k[:-1, :] + k[1:, :])  # faces between y-neighbours
    diag = np.zeros((n, n))
    diag[:, :-1] += kx
    diag[:, 1:] += kx
    diag[:-1, :] += ky
    diag[1:, :] += ky
    # Faces to the Dirichlet boundary carry the node's own coefficient.
    diag[:, 0] += k[:, 0]
    diag[:, -1] += k[:, -1]
    diag[0, :] += k[0, :]
    diag[-1, :] += k[-1, :]
    idx = np.arange(n * n).reshape(n, n)  # idx[j, i] = i + n j
    rows = np.concatenate([idx.ravel(), idx[:, :-1].ravel(), idx[:, 1:].ravel(), idx[:-1, :].ravel(), idx[1:, :].ravel()])
    cols = np.concatenate([idx.ravel(), idx[:, 1:].ravel(), idx[:, :-1].ravel(), idx[1:, :].ravel(), idx[:-1, :].ravel()])
    vals = np.concatenate([diag.ravel(), -kx.ravel(), -kx.ravel(), -ky.ravel(), -ky.ravel()])
    a = sp.csr_array(sp.coo_array((vals, (rows, cols)), shape=(n * n, n * n)))
    a.sort_indices()
    params = {"contrast": contrast, "blocks": blocks, "seed": seed}
    return Problem("highcontrast2d", n, a, _grid_points(n, 2), params=params)


def _upwind(n: int, w: float) -> sp.csr_array:
    """|w| (u_i - u_upstream): first-order upwind difference (times h) for wind component w."""
    shift = -1 if w >= 0 else 1
    return abs(w) * sp.csr_array(sp.eye_array(n) - sp.eye_array(n, k=shift))


@_register(
    "convdiff2d",
    "-eps lap u + w . grad u, first-order upwind, Dirichlet (nonsymmetric)",
    "grid points per side; n^2 unknowns",
    64,
)
def convdiff2d(n: int, epsilon: float = 1e-2, angle: float = np.pi / 6) -> Problem:
    if not epsilon > 0:
        raise UsageError(f"epsilon must be positive, got {epsilon}")
    h = 1.0 / (n + 1)
    t = _second_difference(n)
    wx, wy = np.cos(angle), np.sin(angle)
    a = (epsilon / h**2) * _kron_sum([t, t]) + (1 / h) * _kron_sum([_upwind(n, wx), _upwind(n, wy)])
    a = sp.csr_array(a)
    a.sort_indices()
    params = {"epsilon": epsilon, "angle": angle}
    return Problem("convdiff2d", n, a, _grid_points(n, 2), symmetric=False, spd=False, params=params)


@_register(
    "rgg_laplacian",
    "Laplacian of a random geometric graph in the unit square, plus shift * I (SPD)",
    "nodes",
    4096,
)
def rgg_laplacian(n: int, degree: float = 8.0, shift: float = 1e-2, seed: int = 0) -> Problem:
    from scipy.spatial import cKDTree

    if not shift > 0 or not degree > 0:
        raise UsageError("degree and shift must be positive (the shift makes the Laplacian SPD)")
    points = np.random.default_rng(seed).random((n, 2))
    radius = np.sqrt(degree / (np.pi * n))  # expected degree n pi r^2, away from the boundary
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    w = sp.csr_array(sp.coo_array((np.ones(i.shape[0]), (i, j)), shape=(n, n)))
    deg = np.asarray(w.sum(axis=1)).ravel()
    a = sp.csr_array(sp.diags_array(deg + shift) - w)
    a.sort_indices()
    params = {"degree": degree, "shift": shift, "seed": seed}
    return Problem("rgg_laplacian", n, a, points, params=params)



@_register(
    "elasticity2d",
    "Q1 plane-strain elasticity on the unit square, left side clamped (SPD, rigid-body modes)",
    "elements per side; 2 n (n + 1) unknowns",
    32,
)
def elasticity2d(n: int, E: float = 1e5, nu: float = 0.3, clamp: str = "left") -> Problem:
    """Bilinear (Q1) plane-strain elasticity; unknowns (u_x, u_y) interleaved per node.

    ``clamp="left"`` fixes the nodes at x = 0 (a cantilever: the rigid-body modes are only a
    near-nullspace), ``"all"`` the whole boundary (pyamg's ``linear_elasticity`` convention).
    """
    from slactl.io.elasticity import assemble_q1

    if not (E > 0 and -1 < nu < 0.5):
        raise UsageError(f"need E > 0 and -1 < nu < 0.5, got E={E}, nu={nu}")
    if clamp not in ("left", "all"):
        raise UsageError(f"clamp must be 'left' or 'all', got {clamp!r}")
    a, coords, modes = assemble_q1(n, E, nu, clamp)
    params = {"E": E, "nu": nu, "clamp": clamp}
    return Problem("elasticity2d", n, a, coords, near_nullspace=modes, params=params)
