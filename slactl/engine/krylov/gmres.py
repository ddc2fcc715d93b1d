"""Restarted GMRES(m) with right preconditioning, for general (nonsymmetric, complex) systems."""

from __future__ import annotations

from typing import Any, Callable

import torch

from slactl.engine.krylov._loop import Monitor, masked, run_krylov
from slactl.engine.krylov.operator import LinearOperator
from slactl.engine.krylov.result import KrylovResult, Status
from slactl.errors import UsageError


def gmres(
    A: Any,
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    rtol: float = 1e-8,
    atol: float = 0.0,
    restart: int = 30,
    maxiter: int | None = None,
    preconditioner: Any = None,
    check_every: int | None = None,
    callback: Callable[[int, float], Any] | None = None,
) -> KrylovResult:
    """Solve ``A x = b`` by restarted GMRES(m), right-preconditioned: ``A M u = b``, ``x = M u``.

    Each cycle builds an orthonormal Krylov basis of ``A M`` by classical Gram-Schmidt applied twice
    (CGS2: two reductions per step, as robust as modified Gram-Schmidt and friendly to an
    all-reducing inner product), keeps the Hessenberg least-squares problem in QR form with Givens
    rotations (complex-safe), and updates ``x`` at the end of the cycle. Right preconditioning keeps
    the minimized quantity the true residual ``||b - A x||``. A block ``b`` ``[n, k]`` runs ``k``
    independent GMRES processes side by side.

    Stopping rule (per column): ``||b - A x|| <= max(rtol * ||b||, atol)`` in the 2-norm, tested on
    the least-squares residual estimate ``|g_{j+1}|`` at every step and on the true residual at
    every restart; the true residual is recomputed at the end (with up to 3 further cycles from the
    iterate before ``INACCURATE`` is reported).

    Parameters
    ----------
    A, b, x0, rtol, atol, preconditioner, check_every, callback
        As in :func:`~slactl.engine.krylov.cg.cg`; the preconditioner may be nonsymmetric.
    restart : int
        Krylov dimension ``m`` of a cycle (memory: ``m + 1`` vectors).
    maxiter : int, optional
        Total number of Arnoldi steps over all cycles (default ``10 * n``).

    Returns
    -------
    KrylovResult
        ``BREAKDOWN`` when the least-squares problem became singular (a singular ``A``).

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> from slactl.engine.krylov import gmres
    >>> T = sp.diags([-1.5, 2.0, -0.5], [-1, 0, 1], shape=(60, 60))
    >>> res = gmres(slactl.SparseMatrix.from_scipy(T), torch.ones(60, dtype=torch.float64), restart=20)
    >>> res.converged
    True
    """
    if int(restart) < 1:
        raise UsageError(f"restart must be a positive integer, got {restart}")
    return run_krylov(
        "gmres", _gmres, A, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
        preconditioner=preconditioner, check_every=check_every, callback=callback,
        restart=int(restart),
    )


def _combine(V: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum_j V[j] * y[j]`` for a basis ``V`` ``[j, n(, k)]`` and coefficients ``[j(, k)]``."""
    return V.transpose(0, 1) @ y if y.dim() == 1 else torch.einsum("jnk,jk->nk", V, y)


def _gmres(op: LinearOperator, b: torch.Tensor, x: torch.Tensor, M: Any, mon: Monitor, restart: int) -> None:
    m = min(restart, b.shape[0]) or 1
    cols = b.shape[1:]
    eps = torch.finfo(b.dtype).eps
    V = torch.empty((m + 1,) + tuple(b.shape), dtype=b.dtype, device=b.device)
    # Q^H of the QR factorization of the Hessenberg matrix, accumulated as a small dense matrix so
    # that applying the previous rotations to a new column is one product, not j launches.
    eye = torch.eye(m + 1, dtype=b.dtype, device=b.device).reshape((m + 1, m + 1) + (1,) * len(cols))
    unit = torch.eye(m, dtype=b.dtype, device=b.device).reshape((m, m) + (1,) * len(cols))
    first, stop = True, False
    while mon.iterations_left() > 0 and not stop:
        r = b - op.matvec(x)
        beta = op.norm(r)  # the true residual at every restart
        mon.begin(beta) if first else mon.recheck(beta)
        first = False
        V[0] = r * masked(beta > 0, 1 / beta).to(b.dtype)
        Q = eye.expand((m + 1, m + 1) + cols).clone()
        R = torch.zeros((m, m) + cols, dtype=b.dtype, device=b.device)
        steps = torch.zeros(cols, dtype=torch.int64, device=b.device)
        J = 0
        for j in range(m):
            if mon.iterations_left() <= 0:
                break
            go = mon.start_iteration()
            w = op.matvec(M.apply(V[j]))
            # CGS2: project out the basis twice.
            h = op.dot_many(V[: j + 1], w)
            w = w - _combine(V[: j + 1], h)
            h2 = op.dot_many(V[: j + 1], w)
            w = w - _combine(V[: j + 1], h2)
            h = h + h2
            hn = op.norm(w)  # h_{j+1, j}, real and >= 0
            V[j + 1] = w * masked(hn > 0, 1 / hn).to(b.dtype)
            # Previous rotations applied to column j, then the rotation G_j that zeroes h_{j+1,j}:
            # c = |a| / rho, s = (a / |a|) h / rho, so that G_j [a; h] = [(a / |a|) rho; 0].
            t = torch.einsum("ab...,b...->a...", Q[: j + 1, : j + 1], h)
            a = t[j]
            a_abs = a.abs()
            rho = torch.sqrt(a_abs * a_abs + hn * hn)
            # rho at rounding level relative to ||A M v_j||: the new column lies in the span of
            # the previous ones, the least-squares problem is singular (A is singular).
            col_norm = torch.sqrt(torch.linalg.vector_norm(h, dim=0) ** 2 + hn * hn)
            active = mon.fail(rho <= 10 * eps * col_norm, Status.BREAKDOWN)
            steps = steps + (active & go)
            phase = torch.where(a_abs > 0, a / torch.where(a_abs > 0, a_abs, 1), torch.ones_like(a))
            c = torch.where(active, a_abs / torch.where(rho > 0, rho, 1), torch.ones_like(rho))
            s = masked(active, phase * (hn / torch.where(rho > 0, rho, 1)))
            t[j] = c * a + s * hn
            # Frozen columns get an identity column, so their triangular solve leaves y_j = 0.
            R[: j + 1, j] = torch.where(active, t, unit[: j + 1, j])
            qj, qj1 = Q[j].clone(), Q[j + 1].clone()
            Q[j] = c * qj + s * qj1
            Q[j + 1] = -s.conj() * qj + c * qj1
            mon.record(beta * Q[j + 1, 0].abs())  # |g_{j+1}| = ||b - A x_j||
            J = j + 1
            if mon.should_stop():
                stop = True
                break
        if J:
            _update(x, M, V[:J], R[:J, :J], beta, Q[:J, 0], steps)


def _update(x: torch.Tensor, M: Any, V: torch.Tensor, R: torch.Tensor, beta: torch.Tensor, q0: torch.Tensor, steps: torch.Tensor) -> None:
    """``x += M V y`` with ``R y = beta Q[:J, 0]``, each column using only its own active steps."""
    J = V.shape[0]
    idx = torch.arange(J, device=x.device).reshape((J,) + (1,) * steps.dim())
    g = torch.where(idx < steps, beta * q0, torch.zeros((), dtype=q0.dtype, device=q0.device))
    if x.dim() == 1:
        y = torch.linalg.solve_triangular(R, g[:, None], upper=True)[:, 0]
    else:
        y = torch.linalg.solve_triangular(R.permute(2, 0, 1), g.T[:, :, None], upper=True)[:, :, 0].T
    x.add_(M.apply(_combine(V, y)))
