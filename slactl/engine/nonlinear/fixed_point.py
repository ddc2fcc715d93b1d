"""Fixed-point methods on the residual form: Picard iteration and Anderson acceleration.

Convention: both methods iterate the map ``G(u) = u - damping * F(u)``, whose fixed points are the
roots of ``F``. To solve a fixed-point problem ``u = T(u)``, pass ``residual(u) = u - T(u)``; with
``damping = 1`` the iteration is then exactly ``u <- T(u)``, which converges when ``T`` is a
contraction. Keeping the residual form means one definition of the solution for every method, so
gradients (by the implicit function theorem on ``F``) do not depend on the method.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from slactl.engine.nonlinear.result import NonlinearResult, NonlinearStatus, stopping_status

DIVERGENCE_FACTOR = 1e10


def _norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x))


def _anderson_update(dG: list[torch.Tensor], dF: list[torch.Tensor], g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Type-II Anderson: ``u+ = g - dG gamma`` with ``gamma = argmin ||f - dF gamma||``."""
    if not dF:
        return g
    Fm = torch.stack(dF, dim=1)
    Gm = torch.stack(dG, dim=1)
    # Least squares by a QR-based solve of the small [n, m] problem; rcond guards near-dependence.
    gamma = torch.linalg.lstsq(Fm, f.unsqueeze(1), rcond=1e3 * torch.finfo(f.dtype).eps).solution
    return g - (Gm @ gamma).squeeze(1)


def fixed_point(fn: Callable[[torch.Tensor], torch.Tensor], u0: torch.Tensor, *, method: str,
                rtol: float, atol: float, maxiter: int, damping: float = 1.0, memory: int = 5,
                callback: Callable[[int, float], Any] | None = None) -> NonlinearResult:
    """Picard (``memory=0`` or ``method='picard'``) or Anderson(``memory``) iteration on
    ``G(u) = u - damping * F(u)``; never raises for non-convergence.

    Stopping rule: ``||F(u)|| <= max(rtol * ||F(u0)||, atol)``; ``DIVERGED`` when ``||F||`` exceeds
    ``1e10 ||F(u0)||``.

    Examples
    --------
    >>> import torch
    >>> r = fixed_point(lambda u: u - 0.5 * torch.cos(u), torch.zeros(3, dtype=torch.float64),
    ...                 method="anderson", rtol=1e-12, atol=0.0, maxiter=50)
    >>> r.converged
    True
    """
    t0 = time.perf_counter()
    m = 0 if method == "picard" else int(memory)
    u = u0.detach().clone()
    with torch.no_grad():
        F = fn(u)
    fnorm = _norm(F)
    history, tol = [fnorm], max(rtol * fnorm, atol)
    record = NonlinearResult(u=u, status=NonlinearStatus.MAX_ITERATIONS, iterations=0,
                             residual_norms=torch.zeros(0), tolerance=tol, method=method,
                             residual_evaluations=1)
    dG: list[torch.Tensor] = []
    dF: list[torch.Tensor] = []
    prev: tuple[torch.Tensor, torch.Tensor] | None = None
    status = NonlinearStatus.MAX_ITERATIONS
    for it in range(maxiter + 1):
        stop = stopping_status(fnorm, tol)
        if stop is not None:
            status = stop
            break
        if fnorm > DIVERGENCE_FACTOR * history[0]:
            status = NonlinearStatus.DIVERGED
            break
        if it == maxiter:
            break
        f = -damping * F          # G(u) - u
        g = u + f                 # G(u)
        if m > 0 and prev is not None:
            dG.append(g - prev[0])
            dF.append(f - prev[1])
            del dG[:-m], dF[:-m]
        prev = (g, f)
        u = _anderson_update(dG, dF, g, f) if m > 0 else g
        with torch.no_grad():
            F = fn(u)
        record.residual_evaluations += 1
        fnorm = _norm(F)
        history.append(fnorm)
        record.iterations = it + 1
        if callback is not None:
            callback(it + 1, fnorm)
    record.u, record.status = u, status
    record.residual_norms = torch.tensor(history, dtype=torch.float64)
    record.timings["solve"] = time.perf_counter() - t0
    return record
