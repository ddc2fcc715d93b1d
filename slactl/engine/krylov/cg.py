"""Preconditioned conjugate gradients for Hermitian (symmetric) positive definite systems."""

from __future__ import annotations

from typing import Any, Callable

import torch

from slactl.engine.krylov._loop import Monitor, masked, run_krylov
from slactl.engine.krylov.operator import LinearOperator
from slactl.engine.krylov.result import KrylovResult, Status
from slactl.errors import SlactlError, UsageError


def cg(
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
    fused: bool | None = None,
) -> KrylovResult:
    """Solve ``A x = b`` by preconditioned conjugate gradients.

    ``A`` must be Hermitian positive definite and the preconditioner ``M ~ A^{-1}`` too. A block
    ``b`` of shape ``[n, k]`` runs ``k`` independent recurrences side by side (one matvec with the
    block per iteration); each column stops on its own.

    Stopping rule (per column): ``||b - A x|| <= max(rtol * ||b||, atol)`` in the 2-norm, tested on
    the recurrence residual ``r``; at the end the true residual is recomputed, and where it misses
    the tolerance CG restarts from its iterate (up to 3 times) before reporting ``INACCURATE``.

    Parameters
    ----------
    A : LinearOperator, SparseMatrix, tensor, scipy.sparse matrix or callable
        The operator (see :func:`~slactl.engine.krylov.operator.as_operator`).
    b : Tensor
        ``[n]`` or ``[n, k]``, of A's dtype and device.
    x0 : Tensor, optional
        Initial guess (zeros by default).
    rtol, atol : float
        Relative and absolute tolerances of the stopping rule.
    maxiter : int, optional
        Iteration limit (default ``10 * n``).
    preconditioner : object with ``apply(r)``, a name (``"jacobi"``, ``"ic0"``, ``"amg"``...) or None
        ``apply`` approximates ``A^{-1} r``; it must be symmetric positive definite.
    check_every : int, optional
        Iterations between host synchronizations (1 on the CPU, 8 on an accelerator).
    callback : callable, optional
        ``callback(iteration, residual_norm)`` at each check point (the largest norm over columns).
    fused : bool, optional
        The fused CUDA path (:mod:`~slactl.engine.krylov.fused_cg`: Triton kernels, device-side
        scalars, the ``check_every``-iteration block replayed from a CUDA graph). ``None``
        (default): used when it applies (one real float32/float64 SparseMatrix on CUDA, a vector
        ``b``, preconditioner none or Jacobi, no callback, Triton installed), else the eager loop;
        if it fails, a warning and the eager loop. ``False``: always the eager loop. ``True``:
        required (``UsageError`` when it does not apply, its errors propagate).

    Returns
    -------
    KrylovResult
        Never raises for non-convergence: check ``result.status`` or call
        ``result.raise_if_failed()``. ``INDEFINITE_MATRIX`` / ``INDEFINITE_PRECONDITIONER`` report
        ``p^H A p <= 0`` / ``r^H M r <= 0``.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> from slactl.engine.krylov import cg
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(50, 50))
    >>> A = slactl.SparseMatrix.from_scipy(T)
    >>> res = cg(A, torch.ones(50, dtype=torch.float64), rtol=1e-10)
    >>> res.converged, res.iterations <= 50
    (True, True)
    """
    if fused is not False:
        from slactl.engine.krylov import fused_cg as _fused

        why = _fused.unsupported_reason(A, b, preconditioner, callback)
        if fused:
            if why is not None:
                raise UsageError(f"fused=True, but the fused CG cannot run this solve: {why}")
            return _fused.fused_cg(A, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
                                   preconditioner=preconditioner, check_every=check_every)
        if why is None and _fused.disabled_reason() is None:
            try:
                return _fused.fused_cg(A, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
                                       preconditioner=preconditioner, check_every=check_every)
            except SlactlError:
                raise  # a bad argument: the eager loop would say the same
            except Exception as exc:  # noqa: BLE001  (a kernel or driver failure): eager loop
                _fused._disable(exc)
    return run_krylov(
        "cg", _cg, A, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
        preconditioner=preconditioner, check_every=check_every, callback=callback,
    )


def _cg(op: LinearOperator, b: torch.Tensor, x: torch.Tensor, M: Any, mon: Monitor) -> None:
    r = b - op.matvec(x)
    mon.begin(op.norm(r))
    z = M.apply(r)
    rz = op.dot(r, z).real  # (r, M r) > 0 for an SPD preconditioner and r != 0
    mon.fail(rz <= 0, Status.INDEFINITE_PRECONDITIONER)
    p = z.clone()
    while mon.iterations_left() > 0:
        mon.start_iteration()
        Ap = op.matvec(p)
        pAp = op.dot(p, Ap).real  # (p, A p) > 0 for SPD A
        active = mon.fail(pAp <= 0, Status.INDEFINITE_MATRIX)
        # alpha minimizes the A-norm of the error along p.
        alpha = masked(active, rz / pAp).to(x.dtype)
        x.addcmul_(p, alpha)
        r.addcmul_(Ap, alpha, value=-1)
        z = M.apply(r)
        # ||r||^2 and (r, M r) in one reduction (one all-reduce per pair on a distributed operator)
        rr, rz_new = op.dots((r, r), (r, z))
        mon.record(torch.sqrt(rr.real))
        rz_new = rz_new.real
        active = mon.fail(rz_new <= 0, Status.INDEFINITE_PRECONDITIONER)
        # beta makes the new direction A-conjugate to the previous ones.
        beta = masked(active, rz_new / rz).to(x.dtype)
        p = torch.addcmul(z, p, beta)
        rz = rz_new
        if mon.should_stop():
            break
