"""Preconditioned MINRES (Paige and Saunders) for Hermitian, possibly indefinite, systems."""

from __future__ import annotations

from typing import Any, Callable

import torch

from slactl.engine.krylov._loop import Monitor, masked, run_krylov
from slactl.engine.krylov.operator import LinearOperator
from slactl.engine.krylov.result import KrylovResult, Status


def minres(
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
    """Solve ``A x = b`` for Hermitian (symmetric) ``A``, definite or indefinite, by MINRES.

    The preconditioner must be Hermitian positive definite. Preconditioned MINRES minimizes
    ``||b - A x||_{M}`` (the norm of the preconditioner ``M ~ A^{-1}``) over the Krylov space, so
    without a preconditioner the 2-norm residual decreases monotonically. A block ``b`` ``[n, k]``
    runs ``k`` independent recurrences.

    Stopping rule (per column): ``||b - A x|| <= max(rtol * ||b||, atol)`` in the 2-norm, tested on
    an explicitly updated residual ``r_k = r_{k-1} - phi_k A w_k`` (``A w_k`` by the same
    three-term recurrence as the direction ``w_k``), so the rule is the same as the other methods'
    also with a preconditioner; the true residual is recomputed at the end, with up to 3 restarts
    from the iterate before ``INACCURATE`` is reported.

    Parameters
    ----------
    A, b, x0, rtol, atol, maxiter, preconditioner, check_every, callback
        As in :func:`~slactl.engine.krylov.cg.cg`.

    Returns
    -------
    KrylovResult
        ``INDEFINITE_PRECONDITIONER`` when ``(r, M r) < 0`` was met.

    Examples
    --------
    >>> import torch, slactl
    >>> from slactl.engine.krylov import minres
    >>> A = torch.diag(torch.tensor([-2.0, -1.0, 1.0, 3.0], dtype=torch.float64))
    >>> res = minres(A, torch.ones(4, dtype=torch.float64))
    >>> res.converged, torch.allclose(res.x, 1 / torch.diagonal(A))
    (True, True)
    """
    return run_krylov(
        "minres", _minres, A, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
        preconditioner=preconditioner, check_every=check_every, callback=callback,
    )


def _minres(op: LinearOperator, b: torch.Tensor, x: torch.Tensor, M: Any, mon: Monitor) -> None:
    r = b - op.matvec(x)
    mon.begin(op.norm(r))
    # Lanczos on the preconditioned operator: r1, r2 are consecutive unscaled residual-space
    # vectors, y = M r2, beta = sqrt((r2, M r2)).
    y = M.apply(r)
    beta_sq = op.dot(r, y).real
    mon.fail(beta_sq <= 0, Status.INDEFINITE_PRECONDITIONER)
    rdtype = beta_sq.dtype
    eps = torch.finfo(rdtype).eps
    beta = torch.sqrt(beta_sq.clamp_min(0))
    zero = torch.zeros_like(beta)
    oldb, dbar, epsln, phibar = zero, zero, zero, beta
    cs, sn = -torch.ones_like(beta), zero
    r1 = r2 = r.clone()
    w = w2 = torch.zeros_like(r)
    Aw = Aw2 = torch.zeros_like(r)
    while mon.iterations_left() > 0:
        mon.start_iteration()
        # beta = 0: the Krylov space is invariant (exact in exact arithmetic); restart from x.
        active = mon.fail(beta == 0, Status.BREAKDOWN)
        # Lanczos step: v = y / beta, y <- A v - (beta/oldb) r1 - (alfa/beta) r2.
        v = y * masked(active, 1 / beta).to(y.dtype)
        Av = op.matvec(v)
        y = Av - masked(active & (oldb > 0), beta / oldb).to(y.dtype) * r1
        alfa = op.dot(v, y).real
        y = y - masked(active, alfa / beta).to(y.dtype) * r2
        r1, r2 = r2, y
        y = M.apply(r2)
        oldb = beta
        beta_sq = op.dot(r2, y).real
        active = mon.fail(beta_sq < 0, Status.INDEFINITE_PRECONDITIONER)
        beta = torch.sqrt(beta_sq.clamp_min(0))
        # Apply the previous rotation Q_{k-1} to the new column of the tridiagonal matrix ...
        oldeps = epsln
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta
        dbar = -cs * beta
        # ... and compute the rotation Q_k that annihilates beta_{k+1}.
        gamma = torch.sqrt(gbar * gbar + beta * beta).clamp_min(eps)
        cs, sn = gbar / gamma, beta / gamma
        phi = cs * phibar
        phibar = sn * phibar  # ||r_k|| in the M-norm
        # Directions w_k = (v_k - oldeps w_{k-2} - delta w_{k-1}) / gamma and their images A w_k.
        c_eps = masked(active, oldeps).to(y.dtype)
        c_del = masked(active, delta).to(y.dtype)
        c_den = masked(active, 1 / gamma).to(y.dtype)
        w1, w2 = w2, w
        w = (v - c_eps * w1 - c_del * w2) * c_den
        Aw1, Aw2 = Aw2, Aw
        Aw = (Av - c_eps * Aw1 - c_del * Aw2) * c_den
        step = masked(active, phi).to(x.dtype)
        x.addcmul_(w, step)
        r.addcmul_(Aw, step, value=-1)
        mon.record(op.norm(r))
        if mon.should_stop():
            break
