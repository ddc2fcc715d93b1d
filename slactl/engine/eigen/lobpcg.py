"""LOBPCG (Knyazev 2001) for the smallest eigenpairs of a symmetric operator, with soft locking.

Written once against a :class:`~slactl.engine.krylov.operator.LinearOperator`: the matrix is touched
only through ``op.matvec`` and every inner product (the Gram matrices ``X^H Y`` of the blocks) goes
through ``op.reduce``, so the same code runs on the CPU, on CUDA and, with an all-reducing
operator, distributed.

Each iteration builds the basis ``S = [X, W, P]`` (Ritz vectors, preconditioned residuals of the
active columns, previous directions), orthonormalizes it robustly and solves the small
Rayleigh-Ritz problem ``S^H A S c = theta c``. Robustness follows Hetmaniuk & Lehoucq (2006) and
Duersch et al. (2018): ``P`` is formed from the ``W``/``P`` part of the Ritz coefficients (so it is
nearly orthogonal to ``X``), ``P`` and ``W`` are each projected against the blocks before them
twice, and each block is orthonormalized by Cholesky-QR applied twice, falling back to an
eigendecomposition of the Gram matrix that drops numerically dependent directions when Cholesky
fails or the Gram matrix is ill-conditioned. Soft locking: converged columns stay in ``X`` (and in
the Rayleigh-Ritz problem) but contribute no new ``W``/``P`` directions.

Stopping rule (per wanted column ``i``): ``||A x_i - theta_i x_i|| <= rtol * max(|theta_i|,
sqrt(eps) * ||A||_est)``, where ``||A||_est`` is the largest Ritz value magnitude seen, verified at
the end with a fresh matvec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from slactl.engine.krylov.operator import LinearOperator, as_operator
from slactl.errors import ShapeError, UsageError


@dataclass
class LOBPCGResult:
    """What :func:`lobpcg` returns.

    Attributes
    ----------
    eigenvalues : Tensor ``[k]``
        Ascending (descending with ``largest=True``).
    eigenvectors : Tensor ``[n, k]``
        Orthonormal columns.
    residual_norms : Tensor ``[k]``
        ``||A x_i - theta_i x_i||`` from a fresh matvec.
    tolerance : Tensor ``[k]``
        The per-column threshold of the stopping rule.
    converged : bool
    iterations : int
    history : Tensor ``[iterations + 1, k]``
        Residual norms of the wanted columns per iteration.
    extra_eigenvalues, extra_eigenvectors, extra_residual_norms : Tensor
        The guard columns (block size beyond ``k``): ``extra_eigenvalues[0]`` estimates the next
        eigenvalue after the wanted ones.
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residual_norms: torch.Tensor
    tolerance: torch.Tensor
    converged: bool
    iterations: int
    history: torch.Tensor
    extra_eigenvalues: torch.Tensor
    extra_eigenvectors: torch.Tensor
    extra_residual_norms: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class _Negated(LinearOperator):
    """``-A`` with ``A``'s reduction (largest eigenvalues of A = smallest of -A)."""

    def __init__(self, op: LinearOperator):
        super().__init__(op.shape, op.dtype, op.device)
        self.op = op

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return -self.op.matvec(x)

    def reduce(self, local: torch.Tensor) -> torch.Tensor:
        return self.op.reduce(local)


def _gram(op: LinearOperator, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``X^H Y`` summed over every process's rows."""
    return op.reduce(X.mH @ Y)


def _sym(T: torch.Tensor) -> torch.Tensor:
    return (T + T.mH) / 2


def _orthonormalize(op: LinearOperator, U: torch.Tensor, AU: torch.Tensor | None = None):
    """Orthonormal columns spanning ``U`` (dependent directions dropped), and ``A`` times them.

    Cholesky-QR twice; where Cholesky fails or the Gram matrix is too ill-conditioned for it, the
    eigendecomposition ``G = Q D Q^H`` is used instead and directions with ``D`` below
    ``eps^0.6 * max(D)`` are dropped (they are rounding noise, not new directions).
    """
    eps = torch.finfo(U.real.dtype if U.is_complex() else U.dtype).eps
    for _ in range(2):
        if U.shape[1] == 0:
            break
        # Unit columns first, so the Gram matrix measures dependence, not scale.
        norms = torch.sqrt(op.reduce((U.conj() * U).real.sum(0)))
        keep = norms > 0
        if not bool(keep.all()):
            U, norms = U[:, keep], norms[keep]
            AU = AU[:, keep] if AU is not None else None
            if U.shape[1] == 0:
                break
        U = U / norms
        AU = AU / norms if AU is not None else None
        G = _sym(_gram(op, U, U))
        L, info = torch.linalg.cholesky_ex(G)
        d = torch.diagonal(L).real if int(info) == 0 else None
        if d is not None and bool(d.min() > eps ** 0.25 * d.max()):
            T = torch.linalg.solve_triangular(L.mH, torch.eye(L.shape[0], dtype=L.dtype, device=L.device), upper=True)
        else:
            D, Q = torch.linalg.eigh(G)
            good = D > eps ** 0.6 * D.max()
            T = Q[:, good] / torch.sqrt(D[good])
        U = U @ T
        AU = AU @ T if AU is not None else None
    return U, AU


def _project_out(op: LinearOperator, blocks, U: torch.Tensor, AU: torch.Tensor | None):
    """``U - Q (Q^H U)`` for each orthonormal block ``(Q, AQ)`` (and the same on ``AU``)."""
    for Q, AQ in blocks:
        if Q is None or Q.shape[1] == 0:
            continue
        c = _gram(op, Q, U)
        U = U - Q @ c
        if AU is not None:
            AU = AU - AQ @ c
    return U, AU


def lobpcg(
    A: Any,
    k: int,
    *,
    X0: torch.Tensor | None = None,
    rtol: float | None = None,
    maxiter: int | None = None,
    preconditioner: Any = None,
    largest: bool = False,
    guard: int | None = None,
    callback: Callable[[int, float], Any] | None = None,
    seed: int = 0,
) -> LOBPCGResult:
    """The ``k`` smallest (or largest) eigenpairs of a symmetric (Hermitian) operator by LOBPCG.

    Parameters
    ----------
    A : LinearOperator, SparseMatrix, tensor or scipy.sparse matrix
        Symmetric; only ``matvec`` and the operator's ``reduce`` are used.
    k : int
        Number of wanted eigenpairs, ``1 <= k`` and ``k + guard <= n``.
    X0 : Tensor ``[n, j]``, optional
        Initial block; missing columns are filled with random ones.
    rtol : float, optional
        Stopping rule ``||A x - theta x|| <= rtol * max(|theta|, sqrt(eps) ||A||_est)``
        (default ``1e-8`` in float64, ``1e-4`` in float32).
    maxiter : int, optional
        Iteration limit (default ``max(200, min(n, 2000))``).
    preconditioner : object with ``apply(r)`` or callable, optional
        Symmetric positive definite approximation of ``A^{-1}`` (for ``largest=True``: of
        ``(-A)^{-1}``, the operator LOBPCG then works on); AMG suits SPD matrices.
    largest : bool
        Largest algebraic eigenvalues (LOBPCG on ``-A``), returned in descending order.
    guard : int, optional
        Extra block columns that speed up convergence (default ``min(n - k, max(2, min(k, 8)))``).
    callback : callable, optional
        ``callback(iteration, worst_relative_residual)`` once per iteration.
    seed : int
        Seed of the random initial block (deterministic runs).

    Returns
    -------
    LOBPCGResult
        Never raises for non-convergence; check ``result.converged``.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(100, 100))
    >>> res = lobpcg(slactl.SparseMatrix.from_scipy(T), 3, rtol=1e-10)
    >>> res.converged
    True
    >>> exact = 2 - 2 * torch.cos(torch.arange(1, 4, dtype=torch.float64) * torch.pi / 101)
    >>> bool(torch.allclose(res.eigenvalues, exact, rtol=1e-10))
    True
    """
    op = as_operator(A)
    n = op.shape[0]
    if op.shape[0] != op.shape[1]:
        raise ShapeError(f"LOBPCG needs a square operator, got {op.shape[0]}x{op.shape[1]}")
    if not 1 <= k <= n:
        raise UsageError(f"k must lie in [1, n = {n}], got {k}")
    work = _Negated(op) if largest else op
    rdtype = torch.empty((), dtype=op.dtype).real.dtype
    eps = torch.finfo(rdtype).eps
    if rtol is None:
        rtol = 1e-8 if rdtype == torch.float64 else 1e-4
    guard = min(n - k, max(2, min(k, 8))) if guard is None else min(int(guard), n - k)
    m = k + guard
    maxiter = max(200, min(n, 2000)) if maxiter is None else int(maxiter)
    M = _as_preconditioner(preconditioner)

    gen = torch.Generator(device="cpu").manual_seed(seed)
    X = torch.randn(n, m, generator=gen, dtype=rdtype).to(device=op.device, dtype=op.dtype)
    if X0 is not None:
        if X0.dim() == 1:
            X0 = X0[:, None]
        if X0.shape[0] != n:
            raise ShapeError(f"X0 must have shape [{n}, j], got {tuple(X0.shape)}")
        j = min(m, X0.shape[1])
        X[:, :j] = X0[:, :j].to(device=op.device, dtype=op.dtype)

    X, AX, theta, anorm = _restart_block(work, X, m, gen)
    P = AP = None
    history: list[torch.Tensor] = []
    converged = False
    it = 0
    for it in range(0, maxiter + 1):
        R = AX - X * theta
        rn = torch.sqrt(work.reduce((R.conj() * R).real.sum(0)))
        anorm = max(anorm, float(theta.abs().max()))
        tol = rtol * torch.clamp(theta.abs(), min=math.sqrt(eps) * anorm)
        done = rn <= tol
        history.append(rn[:k])
        if callback is not None:
            callback(it, float((rn[:k] / tol[:k]).max()) * rtol)
        if bool(done[:k].all()):
            # Verify with a fresh matvec (AX was carried through linear combinations).
            X, AX, theta, anorm = _restart_block(work, X, m, gen, anorm)
            R = AX - X * theta
            rn = torch.sqrt(work.reduce((R.conj() * R).real.sum(0)))
            tol = rtol * torch.clamp(theta.abs(), min=math.sqrt(eps) * anorm)
            if bool((rn[:k] <= tol[:k]).all()):
                converged = True
                break
            P = AP = None
            done = rn <= tol
        if it == maxiter or not bool(torch.isfinite(rn).all()):
            break
        active = ~done
        W = M(R[:, active])
        if P is not None:
            P, AP = _project_out(work, [(X, AX)], P, AP)
            P, AP = _project_out(work, [(X, AX)], P, AP)
            P, AP = _orthonormalize(work, P, AP)
        W, _ = _project_out(work, [(X, None), (P, None)], W, None)
        W, _ = _project_out(work, [(X, None), (P, None)], W, None)
        W, _ = _orthonormalize(work, W)
        W, _ = _project_out(work, [(X, None), (P, None)], W, None)
        AW = work.matvec(W)
        blocks = [X, W] + ([P] if P is not None else [])
        ablocks = [AX, AW] + ([AP] if AP is not None else [])
        S, AS = torch.cat(blocks, 1), torch.cat(ablocks, 1)
        theta_all, C = torch.linalg.eigh(_sym(_gram(work, S, AS)))
        anorm = max(anorm, float(theta_all.abs().max()))
        Cx = C[:, :m]
        # New directions: the W/P part of the Ritz coefficients of the active columns.
        Cp = Cx[m:, active]
        P, AP = S[:, m:] @ Cp, AS[:, m:] @ Cp
        X, AX, theta = S @ Cx, AS @ Cx, theta_all[:m]
        if it % 20 == 19:
            # Refresh X's orthonormality and A X: rounding accumulates in the carried products.
            X, AX, theta, anorm = _restart_block(work, X, m, gen, anorm)
            P = AP = None

    sign = -1.0 if largest else 1.0
    R = AX - X * theta
    rn = torch.sqrt(work.reduce((R.conj() * R).real.sum(0)))
    tol = rtol * torch.clamp(theta.abs(), min=math.sqrt(eps) * anorm)
    return LOBPCGResult(
        eigenvalues=sign * theta[:k], eigenvectors=X[:, :k], residual_norms=rn[:k], tolerance=tol[:k],
        converged=converged, iterations=it, history=torch.stack(history),
        extra_eigenvalues=sign * theta[k:], extra_eigenvectors=X[:, k:], extra_residual_norms=rn[k:],
        info={"block_size": m, "norm_estimate": anorm, "rtol": rtol},
    )


def _restart_block(op: LinearOperator, X: torch.Tensor, m: int, gen: torch.Generator, anorm: float = 0.0):
    """Orthonormalize ``X`` (refilling dropped columns at random), multiply by ``A`` afresh and
    rotate to Ritz vectors: returns ``(X, AX, theta, norm_estimate)``."""
    X, _ = _orthonormalize(op, X)
    while X.shape[1] < m:
        extra = torch.randn(X.shape[0], m - X.shape[1], generator=gen, dtype=X.real.dtype).to(device=X.device, dtype=X.dtype)
        extra, _ = _project_out(op, [(X, None)], extra, None)
        extra, _ = _orthonormalize(op, extra)
        X = torch.cat([X, extra], 1)
    AX = op.matvec(X)
    theta, C = torch.linalg.eigh(_sym(_gram(op, X, AX)))
    return X @ C, AX @ C, theta, max(anorm, float(theta.abs().max()))


def _as_preconditioner(preconditioner: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    if preconditioner is None:
        return lambda r: r
    if hasattr(preconditioner, "apply"):
        return preconditioner.apply
    if callable(preconditioner):
        return preconditioner
    raise UsageError(f"preconditioner must have apply(r) or be callable, got {type(preconditioner).__name__}")
