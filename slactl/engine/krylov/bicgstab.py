"""BiCGStab (van der Vorst) with right preconditioning, for nonsymmetric systems."""

from __future__ import annotations

from typing import Any, Callable

import torch

from slactl.engine.krylov._loop import Monitor, masked, run_krylov
from slactl.engine.krylov.operator import LinearOperator
from slactl.engine.krylov.result import KrylovResult, Status


def bicgstab(
    A: Any,
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    preconditioner: Any = None,
    check_every: int | None = None,
    callback: Callable[[int, float], Any] | None = None,
) -> KrylovResult:
    """Solve ``A x = b`` by the stabilized biconjugate gradient method (BiCGStab).

    Right-preconditioned (the residual is that of the original system). One iteration costs two
    matvecs and two preconditioner applications. A block ``b`` ``[n, k]`` runs ``k`` independent
    recurrences.

    Stopping rule (per column): ``||b - A x|| <= max(rtol * ||b||, atol)`` in the 2-norm, tested on
    the recurrence residual (also at the half step ``s``); at the end the true residual is
    recomputed, and where it misses the tolerance, or where the method broke down
    (``(r0, r) = 0``, ``(r0, A p) = 0`` or ``omega = 0``), BiCGStab restarts from its iterate with a
    fresh shadow residual (up to 3 times) before reporting ``INACCURATE`` / ``BREAKDOWN``.

    Parameters
    ----------
    A, b, x0, rtol, atol, maxiter, preconditioner, check_every, callback
        As in :func:`~slactl.engine.krylov.cg.cg`; ``maxiter`` counts BiCGStab iterations (two
        matvecs each) and the preconditioner may be nonsymmetric.

    Returns
    -------
    KrylovResult

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> from slactl.engine.krylov import bicgstab
    >>> T = sp.diags([-1.2, 2.0, -0.8], [-1, 0, 1], shape=(50, 50))
    >>> res = bicgstab(slactl.SparseMatrix.from_scipy(T), torch.ones(50, dtype=torch.float64))
    >>> res.converged
    True
    """
    return run_krylov(
        "bicgstab", _bicgstab, A, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
        preconditioner=preconditioner, check_every=check_every, callback=callback,
    )


def _bicgstab(op: LinearOperator, b: torch.Tensor, x: torch.Tensor, M: Any, mon: Monitor) -> None:
    r = b - op.matvec(x)
    rnorm = op.norm(r)
    mon.begin(rnorm)
    # The shadow residual r0 fixes the biorthogonality conditions of the underlying BiCG.
    rhat, rhat_norm = r.clone(), rnorm
    eps = torch.finfo(rnorm.dtype).eps
    one = torch.ones_like(rnorm, dtype=x.dtype)
    rho_old, alpha, omega = one, one, one
    p = torch.zeros_like(r)
    v = torch.zeros_like(r)
    while mon.iterations_left() > 0:
        mon.start_iteration()
        rho = op.dot(rhat, r)
        # (r0, r) at rounding level: the BiCG recurrence has lost its meaning.
        active = mon.fail(rho.abs() <= eps * rhat_norm * rnorm, Status.BREAKDOWN)
        beta = masked(active, (rho / rho_old) * (alpha / omega))
        p = r + beta * (p - omega * v)
        phat = M.apply(p)
        v = op.matvec(phat)
        rv = op.dot(rhat, v)
        active = mon.fail(rv == 0, Status.BREAKDOWN)
        alpha = masked(active, rho / rv)
        s = torch.addcmul(r, v, alpha, value=-1)  # BiCG half step
        s_done = active & (op.norm(s) <= mon.tol)
        shat = M.apply(s)
        t = op.matvec(shat)
        # omega minimizes ||s - omega t||; zero for columns already converged at the half step.
        omega = masked(active & ~s_done, op.dot(t, s) / op.dot(t, t).real)
        x.addcmul_(phat, alpha).addcmul_(shat, omega)
        r = torch.addcmul(s, t, omega, value=-1)
        rnorm = op.norm(r)
        mon.record(rnorm)
        mon.fail(omega == 0, Status.BREAKDOWN)  # the next beta would divide by omega
        rho_old = torch.where(active, rho, rho_old)
        if mon.should_stop():
            break
