"""Newton's method with a backtracking line search: assembled (colored autograd or a user
Jacobian) or matrix-free (Newton-Krylov: GMRES on autograd Jacobian-vector products with
Eisenstat-Walker forcing terms)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from slactl.engine.krylov import FunctionOperator, gmres
from slactl.engine.matrix import SparseMatrix
from slactl.engine.nonlinear.jacobian import Linearization, assemble, check_pattern, count_colors
from slactl.engine.nonlinear.result import NonlinearResult, NonlinearStatus, stopping_status
from slactl.engine.pattern import Pattern
from slactl.errors import ConvergenceError, UsageError

ARMIJO = 1e-4  # sufficient decrease: ||F(u + t du)|| <= (1 - ARMIJO t) ||F(u)||
MAX_BACKTRACKS = 30
ETA_MAX, ETA_GAMMA = 0.9, 0.9  # Eisenstat-Walker choice 2 (Kelley's safeguards)


@dataclass
class System:
    """A residual with its parameters bound (detached), and how to get its Jacobian.

    ``jacobian`` is ``"sparse"`` (assemble on ``pattern`` by coloring), ``"matrix-free"`` or
    ``"callable"`` (``jacobian_fn(u) -> SparseMatrix``). ``linear`` holds ``method``,
    ``preconditioner``, ``rtol`` and ``maxiter`` of the linear solves. ``reduce`` turns a sum over
    this process's entries into the global sum (an all-reduce when ``u`` is distributed; None: one
    process): every norm and every Krylov inner product goes through it.
    """

    fn: Callable[[torch.Tensor], torch.Tensor]
    jacobian: str = "matrix-free"
    pattern: Pattern | None = None
    jacobian_fn: Callable[[torch.Tensor], SparseMatrix] | None = None
    linear: dict[str, Any] = field(default_factory=dict)
    checked: bool = False
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    def norm(self, x: torch.Tensor) -> float:
        if self.reduce is None:
            return _norm(x)
        return math.sqrt(float(self.reduce((x * x).sum().reshape(1))))

    def operator(self, fn: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor) -> FunctionOperator:
        """``fn`` as a square operator on vectors like ``like``, with this system's inner product."""
        n = like.numel()
        if self.reduce is None:
            return FunctionOperator(fn, (n, n), like.dtype, like.device)
        return _ReducingOperator(fn, (n, n), like.dtype, like.device, self.reduce)

    def matrix(self, lin: Linearization) -> SparseMatrix:
        """The assembled Jacobian at ``lin.u`` (pattern checked once per system)."""
        if self.jacobian == "callable":
            J = self.jacobian_fn(lin.u.detach())
            if not isinstance(J, SparseMatrix) or J.shape != (lin.F.numel(),) * 2:
                raise UsageError(f"jacobian(u, *params) must return an n x n SparseMatrix (n = {lin.F.numel()}), got {J!r}")
            return J.detach()
        J = assemble(lin, self.pattern)
        if not self.checked:
            check_pattern(lin, J)
            self.checked = True
        return J


class _ReducingOperator(FunctionOperator):
    """A function operator whose inner products are summed by ``reduce`` (over processes)."""

    def __init__(self, fn, shape, dtype, device, reduce):
        super().__init__(fn, shape, dtype, device)
        self._reduce = reduce

    def reduce(self, local: torch.Tensor) -> torch.Tensor:
        return self._reduce(local)


def _norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x))


def newton_step(system: System, lin: Linearization, eta: float, record: NonlinearResult) -> torch.Tensor | None:
    """Solve ``J du = -F`` (to relative accuracy ``eta`` when matrix-free); ``None`` on failure."""
    F = lin.F
    if system.jacobian == "matrix-free":
        op = system.operator(lin.jvp, F)
        res = gmres(op, -F, rtol=eta, maxiter=system.linear.get("maxiter"),
                    preconditioner=system.linear.get("preconditioner"), restart=system.linear.get("restart") or 30)
        record.linear_solves += 1
        record.linear_iterations += res.iterations
        # An inexact step is fine as long as it is a descent direction (residual below ||F||).
        if not bool(torch.isfinite(res.x).all()) or float(res.true_residual_norm) >= system.norm(F):
            return None
        return res.x
    from slactl.engine.linear.api import solve

    J = system.matrix(lin)
    try:
        out = solve(J, -F, method=system.linear.get("method", "auto"),
                    preconditioner=system.linear.get("preconditioner", "auto"),
                    rtol=system.linear.get("rtol") or 1e-10, maxiter=system.linear.get("maxiter"),
                    return_result=True)
    except ConvergenceError:
        record.linear_solves += 1
        return None
    record.linear_solves += 1
    record.linear_iterations += out.iterations if out.krylov is not None else 0
    return out.x.detach()


def line_search(fn: Callable, u: torch.Tensor, du: torch.Tensor, fnorm: float, enabled: bool,
                record: NonlinearResult, norm: Callable[[torch.Tensor], float] = _norm,
                ) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """Backtrack ``t = 1, 1/2, ...`` until ``||F(u + t du)|| <= (1 - 1e-4 t) ||F(u)||`` (Armijo on
    ``||F||``); with ``enabled=False`` the full step is taken unless it is non-finite."""
    t = 1.0
    for _ in range(MAX_BACKTRACKS):
        trial = u + t * du
        with torch.no_grad():
            F = fn(trial)
        record.residual_evaluations += 1
        value = norm(F)
        finite = value == value and value != float("inf")
        if finite and (not enabled or value <= (1.0 - ARMIJO * t) * fnorm):
            return trial, F, value
        if not enabled and not finite:
            return None
        t *= 0.5
    return None


def _forcing(eta: float, fnorm: float, previous: float, tol: float) -> float:
    """Eisenstat-Walker choice 2 with the safeguards of Kelley (1995), section 6.3."""
    new = ETA_GAMMA * (fnorm / previous) ** 2
    if ETA_GAMMA * eta**2 > 0.1:
        new = max(new, ETA_GAMMA * eta**2)
    return min(ETA_MAX, max(new, 0.5 * tol / fnorm))


def newton(system: System, u0: torch.Tensor, *, rtol: float, atol: float, maxiter: int,
           line_search_on: bool = True, callback: Callable[[int, float], Any] | None = None) -> NonlinearResult:
    """Newton's method on ``system.fn(u) = 0`` from ``u0``; never raises for non-convergence.

    Stopping rule: ``||F(u)|| <= max(rtol * ||F(u0)||, atol)``. Each step solves ``J du = -F``
    (assembled and solved with :func:`slactl.solve`, or by GMRES on JVPs to the forcing tolerance
    ``eta_k``) and backtracks on ``||F||``.
    """
    t0 = time.perf_counter()
    u = u0.detach().clone()
    lin = Linearization(system.fn, u)
    record = NonlinearResult(u=u, status=NonlinearStatus.MAX_ITERATIONS, iterations=0,
                             residual_norms=torch.zeros(0), tolerance=0.0, method="newton",
                             jacobian=system.jacobian, residual_evaluations=1)
    if system.jacobian == "sparse":
        record.colors = count_colors(system.pattern)
    fnorm = system.norm(lin.F)
    history, tol = [fnorm], max(rtol * fnorm, atol)
    record.tolerance = tol
    eta = system.linear.get("rtol") or 0.5 if system.jacobian == "matrix-free" else 0.0
    status = NonlinearStatus.MAX_ITERATIONS
    for it in range(maxiter + 1):
        stop = stopping_status(fnorm, tol)
        if stop is not None:
            status = stop
            break
        if it == maxiter:
            break
        du = newton_step(system, lin, eta, record)
        record.jvps += lin.jvps
        if du is None:
            status = NonlinearStatus.LINEAR_SOLVE_FAILED
            break
        step = line_search(system.fn, u, du, fnorm, line_search_on, record, system.norm)
        if step is None:
            status = NonlinearStatus.LINE_SEARCH_FAILED if line_search_on else NonlinearStatus.NONFINITE
            break
        u, _, new_norm = step
        if system.jacobian == "matrix-free" and not system.linear.get("rtol"):
            eta = _forcing(eta, new_norm, fnorm, tol)
        fnorm = new_norm
        history.append(fnorm)
        record.iterations = it + 1
        if callback is not None:
            callback(it + 1, fnorm)
        if fnorm > tol:
            lin = Linearization(system.fn, u)
            record.residual_evaluations += 1
    record.u, record.status = u, status
    record.residual_norms = torch.tensor(history, dtype=torch.float64)
    record.timings["solve"] = time.perf_counter() - t0
    return record
