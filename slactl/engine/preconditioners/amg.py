"""Smoothed-aggregation algebraic multigrid: a pyamg hierarchy applied as a V-cycle in torch.

Setup (once): :func:`pyamg.smoothed_aggregation_solver` builds the levels ``A_l, P_l, R_l`` on the
CPU (pyamg's defaults: symmetric strength, standard aggregation, Jacobi-smoothed prolongation);
they are moved to the matrix's device as :class:`~slactl.engine.matrix.SparseMatrix`, where the
largest eigenvalue of each ``D_l^{-1} A_l`` is estimated by 15 Arnoldi / Lanczos steps.

Apply (any device, no host synchronization): one V-cycle. pyamg's own default smoother, symmetric
Gauss-Seidel, is sequential; it is **replaced** by a polynomial smoother made only of SpMVs and
vector operations:

* ``"chebyshev"`` (default): Chebyshev iteration of degree ``d`` (default 2) on the Jacobi-scaled
  ``D^{-1} A`` for the interval ``[0.1 lambda_max, 1.1 lambda_max]`` (PETSc's default smoothing
  bounds: the smoother damps the upper part of the spectrum, the coarse grid the rest);
* ``"jacobi"``: ``d`` sweeps of damped Jacobi with ``omega = 4 / (3 lambda_max)``.

Pre- and post-smoothing use the same polynomial and the coarsest level is solved exactly (dense
Cholesky, or LU when Cholesky fails), so for symmetric ``A`` the V-cycle is a symmetric operator
(suitable for CG). ``transpose()`` is the V-cycle of the transposed hierarchy (``A_l^T``,
``P = R_l^T``, ``R = P_l^T``), which is exactly the transposed operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from slactl.engine.krylov.operator import MatrixOperator
from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners.base import Preconditioner
from slactl.errors import BackendUnavailableError, DtypeError, StructureError, UsageError

SMOOTHERS = ("chebyshev", "jacobi")


@dataclass
class Level:
    """One level of the hierarchy: ``A`` and, except on the coarsest, ``P`` (to this level from the
    next) and ``R`` (to the next); ``inv_diag = 1 / diag(A)``; ``lambda_max`` of ``D^{-1} A``."""

    A: SparseMatrix
    P: SparseMatrix | None
    R: SparseMatrix | None
    inv_diag: torch.Tensor
    lambda_max: float

    def __post_init__(self) -> None:
        self._ops = [MatrixOperator(M) if M is not None else None for M in (self.A, self.P, self.R)]

    def matvec(self, which: int, x: torch.Tensor) -> torch.Tensor:
        return self._ops[which].matvec(x)

    def scale(self, r: torch.Tensor) -> torch.Tensor:
        return r * (self.inv_diag if r.dim() == 1 else self.inv_diag[:, None])


def cycle_options(smoother: str, degree: int) -> tuple[str, int]:
    """Validated smoother name and degree of the V-cycle (shared by every AMG set-up)."""
    if smoother not in SMOOTHERS:
        raise UsageError(f"smoother must be one of {SMOOTHERS}, got {smoother!r}")
    if int(degree) < 1:
        raise UsageError(f"degree must be a positive integer, got {degree}")
    return smoother, int(degree)


def _import_pyamg() -> Any:
    try:
        import pyamg
    except ImportError as exc:  # pragma: no cover - exercised only without pyamg
        raise BackendUnavailableError(
            "the AMG preconditioner builds its hierarchy with pyamg, which is not installed: "
            "pip install pyamg (or pip install 'slactl[amg]')"
        ) from exc
    return pyamg


class AMG(Preconditioner):
    """Smoothed-aggregation AMG V-cycle (pyamg hierarchy, torch smoother and cycle).

    Parameters
    ----------
    A : SparseMatrix, optional
        Real, square, nonzero diagonal; set up at once when given.
    smoother : {"chebyshev", "jacobi"}
        The polynomial smoother replacing pyamg's Gauss-Seidel (see the module docstring).
    degree : int
        Chebyshev degree, or number of Jacobi sweeps (SpMVs per smoothing step).
    max_levels, max_coarse : int
        Passed to pyamg; the coarsest level (at most ``max_coarse`` rows) is solved densely.
    symmetry : {"hermitian", "symmetric", "nonsymmetric"}, optional
        pyamg's ``symmetry``; by default ``"symmetric"`` when ``A == A^T`` else ``"nonsymmetric"``.
    fused_cycle : bool
        On CUDA with Triton, apply the V-cycle to a vector with fused SpMV + smoother kernels
        (:mod:`slactl.engine.preconditioners.fused_cycle`); False keeps the torch cycle.
    **pyamg_options
        Further keywords of :func:`pyamg.smoothed_aggregation_solver` (``strength``, ``smooth``...).

    Raises
    ------
    BackendUnavailableError
        Without pyamg ("pip install pyamg").

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> from slactl.engine.krylov import cg
    >>> from slactl.engine.preconditioners import AMG
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(64, 64))
    >>> A = slactl.SparseMatrix.from_scipy(sp.kron(T, sp.eye(64)) + sp.kron(sp.eye(64), T))
    >>> res = cg(A, torch.ones(64 * 64, dtype=torch.float64), preconditioner=AMG(A))
    >>> res.converged, res.iterations < 30
    (True, True)
    """

    name = "amg"

    def __init__(
        self,
        A: SparseMatrix | None = None,
        *,
        smoother: str = "chebyshev",
        degree: int = 2,
        max_levels: int = 10,
        max_coarse: int = 500,
        symmetry: str | None = None,
        fused_cycle: bool = True,
        **pyamg_options: Any,
    ):
        self.smoother, self.degree = cycle_options(smoother, degree)
        self.fused_cycle = bool(fused_cycle)
        self.options = dict(pyamg_options, max_levels=max_levels, max_coarse=max_coarse)
        self.symmetry = symmetry
        self.levels: list[Level] = []
        self.hierarchy: Any = None
        super().__init__(A)

    # ----------------------------------------------------------------------------- setup
    def _setup(self, A: SparseMatrix) -> None:
        pyamg = _import_pyamg()
        if A.dtype.is_complex:
            raise DtypeError("AMG takes a real matrix; use ilu0 or jacobi for a complex one")
        S = A.to_scipy().astype(np.float64)
        # A symmetry the caller already established (auto-dispatch has) is not checked again.
        self.symmetric = self.symmetry in ("symmetric", "hermitian") if self.symmetry else A.is_symmetric(tol=1e-10)
        symmetry = self.symmetry or ("symmetric" if self.symmetric else "nonsymmetric")
        rng_state = np.random.get_state()  # pyamg's spectral estimates draw from the global RNG
        np.random.seed(0)
        try:
            ml = pyamg.smoothed_aggregation_solver(S, symmetry=symmetry, **self.options)
        finally:
            np.random.set_state(rng_state)
        self.hierarchy = ml
        self.levels = [
            self._level(lv.A, getattr(lv, "P", None), getattr(lv, "R", None), A, last=i == len(ml.levels) - 1)
            for i, lv in enumerate(ml.levels)
        ]
        self._factor_coarse()
        self.positive_definite = self.symmetric and self._coarse[0] == "cholesky"

    def _level(self, Al: Any, P: Any, R: Any, A: SparseMatrix, last: bool) -> Level:
        d = Al.diagonal()
        if (d == 0).any():
            i = int(np.flatnonzero(d == 0)[0])
            raise StructureError(f"AMG's smoother needs a nonzero diagonal; a level matrix has a zero at row {i}")
        conv = lambda M: SparseMatrix.from_scipy(M, dtype=A.dtype, device=A.device)  # noqa: E731
        inv = torch.from_numpy(1.0 / d).to(device=A.device, dtype=A.dtype)
        Ad = conv(Al)
        lam = 0.0 if last else _lambda_max(Ad, inv, self.symmetric)
        return Level(Ad, None if last else conv(P), None if last else conv(R), inv, lam)

    def _factor_coarse(self) -> None:
        Ac = self.levels[-1].A.to_dense()
        L, info = torch.linalg.cholesky_ex(Ac)
        if self.symmetric and int(info) == 0:
            self._coarse = ("cholesky", L)
        else:
            self._coarse = ("lu",) + tuple(torch.linalg.lu_factor(Ac))

    @property
    def operator_complexity(self) -> float:
        """Total nonzeros of all levels over those of ``A``."""
        return sum(lv.A.nnz for lv in self.levels) / self.levels[0].A.nnz

    # ----------------------------------------------------------------------------- apply
    def _apply(self, r: torch.Tensor) -> torch.Tensor:
        return self._cycle(0, r)

    def _cycle(self, l: int, b: torch.Tensor) -> torch.Tensor:
        if l == 0 and getattr(self, "fused_cycle", True):
            fused = self._fused_cycle(b)
            if fused is not None:
                return fused(0, b)
        if l == len(self.levels) - 1:
            return self._coarse_solve(b)
        lv = self.levels[l]
        x = self._smooth(lv, b, None)  # pre-smoothing from x = 0
        r = b - lv.matvec(0, x)
        x = x + lv.matvec(1, self._cycle(l + 1, lv.matvec(2, r)))  # coarse-grid correction
        return self._smooth(lv, b, x)  # post-smoothing

    def _fused_cycle(self, b: torch.Tensor) -> Any:
        """The fused Triton cycle of this hierarchy (:mod:`.fused_cycle`) where it applies to
        ``b``, else None; rebuilt when the levels change (a new set-up, a transpose)."""
        from slactl.engine.preconditioners import fused_cycle

        interpret = getattr(self, "_interpret_fused", False)
        if not fused_cycle.available(self, b, interpret=interpret):
            return None
        plan = getattr(self, "_fused_plan", None)
        if plan is None or plan.levels is not self.levels:
            plan = self._fused_plan = fused_cycle.FusedCycle(self)
        return plan

    def _coarse_solve(self, b: torch.Tensor) -> torch.Tensor:
        rhs = b[:, None] if b.dim() == 1 else b
        if self._coarse[0] == "cholesky":
            x = torch.cholesky_solve(rhs, self._coarse[1])
        else:
            x = torch.linalg.lu_solve(self._coarse[1], self._coarse[2], rhs)
        return x[:, 0] if b.dim() == 1 else x

    def _smooth(self, lv: Level, b: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        if self.smoother == "jacobi":
            omega = 4.0 / (3.0 * lv.lambda_max)
            for _ in range(self.degree):
                res = b if x is None else b - lv.matvec(0, x)
                x = omega * lv.scale(res) if x is None else x + omega * lv.scale(res)
            return x
        return _chebyshev(lv, b, x, self.degree)

    def transpose(self) -> "AMG":
        """The V-cycle of the transposed hierarchy: exactly ``M^T`` (``self`` when A is symmetric)."""
        if self.symmetric:
            return self
        t = type(self).__new__(type(self))
        t.__dict__.update(self.__dict__)
        t.levels = [
            Level(lv.A.T, None if lv.R is None else lv.R.T, None if lv.P is None else lv.P.T, lv.inv_diag, lv.lambda_max)
            for lv in self.levels
        ]
        t._factor_coarse()
        return t._adopt(self)


def _lambda_max(A: SparseMatrix, inv_diag: torch.Tensor, symmetric: bool, steps: int = 15) -> float:
    """Largest eigenvalue (modulus) of ``D^{-1} A`` by ``steps`` Arnoldi steps on the device.

    For symmetric ``A`` with a positive diagonal the similar symmetric ``D^{-1/2} A D^{-1/2}`` is
    used (Arnoldi is then Lanczos with full reorthogonalization, and the largest Ritz value
    approaches lambda_max from below, hence the 1.1 safety factor of the smoothers). The start
    vector is drawn from a fixed seed, so the setup is deterministic.
    """
    op = MatrixOperator(A)
    n = A.shape[0]
    m = min(steps, n)
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(n, generator=gen, dtype=torch.float64).to(device=A.device, dtype=A.dtype)
    if symmetric and bool((inv_diag > 0).all()):
        s = inv_diag.sqrt()
        return _lanczos_max(lambda x: s * op.matvec(s * x), v, m)
    apply = lambda x: inv_diag * op.matvec(x)  # noqa: E731
    V = torch.zeros((m + 1, n), dtype=A.dtype, device=A.device)
    H = torch.zeros((m + 1, m), dtype=torch.float64)
    V[0] = v / torch.linalg.vector_norm(v)
    k = m
    for j in range(m):
        w = apply(V[j])
        for _ in range(2):  # classical Gram-Schmidt, twice
            h = V[: j + 1] @ w
            w = w - V[: j + 1].T @ h
            H[: j + 1, j] += h.double().cpu()
        H[j + 1, j] = float(torch.linalg.vector_norm(w))
        if H[j + 1, j] <= 1e-12 * H[: j + 2, j].abs().max():  # invariant subspace: exact
            k = j + 1
            break
        V[j + 1] = w / H[j + 1, j].item()
    return float(torch.linalg.eigvals(H[:k, :k]).abs().max())


def _lanczos_max(apply, v: torch.Tensor, m: int, dot=torch.dot) -> float:
    """Largest Ritz value of ``m`` plain Lanczos steps (symmetric operator).

    No reorthogonalization: lost orthogonality only duplicates converged Ritz values ("ghosts"),
    and the largest one still approaches lambda_max from below. One matvec and three vector
    operations per step, instead of a Gram-Schmidt sweep over the whole basis. ``dot`` is the
    inner product (a global one for a distributed operator).
    """
    v = v / float(dot(v, v)) ** 0.5
    v_prev = torch.zeros_like(v)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    for _ in range(m):
        w = apply(v) - beta * v_prev
        alpha = float(dot(w, v))
        w = w - alpha * v
        alphas.append(alpha)
        beta = max(float(dot(w, w)), 0.0) ** 0.5
        if beta <= 1e-12 * max(abs(alpha), 1e-300):  # invariant subspace: the Ritz values are exact
            break
        betas.append(beta)
        v_prev, v = v, w / beta
    k = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[: k - 1], dtype=torch.float64)
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(T).max())


def _chebyshev(lv: Level, b: torch.Tensor, x: torch.Tensor | None, degree: int) -> torch.Tensor:
    """Chebyshev iteration of ``degree`` steps for ``A x = b`` preconditioned by ``D^{-1}``, with
    the eigenvalues of ``D^{-1} A`` taken in ``[0.1 lmax, 1.1 lmax]`` (Saad, Alg. 12.1): the
    residual polynomial is the scaled Chebyshev polynomial, smallest on that interval."""
    hi = 1.1 * lv.lambda_max
    lo = 0.1 * lv.lambda_max
    theta, delta = (hi + lo) / 2, (hi - lo) / 2
    sigma = theta / delta
    rho = 1.0 / sigma
    r = lv.scale(b if x is None else b - lv.matvec(0, x))  # preconditioned residual
    d = r / theta
    x = d if x is None else x + d
    for _ in range(degree - 1):
        rho_new = 1.0 / (2.0 * sigma - rho)
        r = r - lv.scale(lv.matvec(0, d))
        d = (rho_new * rho) * d + (2.0 * rho_new / delta) * r
        x = x + d
        rho = rho_new
    return x
