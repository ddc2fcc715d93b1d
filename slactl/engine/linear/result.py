"""What `slactl.solve(..., return_result=True)` returns: the solution and how it was obtained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from slactl.engine.krylov.result import STOPPING_RULE, KrylovResult, Status
from slactl.errors import ConvergenceError


@dataclass
class SolveResult:
    """The outcome of a linear solve.

    Attributes
    ----------
    x : Tensor
        The solution (differentiable w.r.t. ``b`` and ``A.values`` by the adjoint method).
    status : Status
        ``CONVERGED`` when ``||b - A x|| <= max(rtol * ||b||, atol)`` holds for the true residual
        (for a direct solve too: a factorization that misses it after iterative refinement
        reports ``INACCURATE``).
    iterations : int
        Krylov iterations (direct: iterative-refinement steps).
    residual_norms : Tensor
        Residual history (Krylov) or the residual after each refinement step (direct).
    relative_residual : float
        ``||b - A x|| / ||b||`` recomputed from ``x`` (worst column / batch entry).
    backend, method, preconditioner : str
        What ran (``slactl backends`` lists the backends).
    setup_seconds, solve_seconds : float
        Factorization / preconditioner set-up and solve wall-clock time.
    reasons : list of str
        Why auto-dispatch chose this combination.
    krylov : KrylovResult or None
        The Krylov method's own result, when one ran.
    """

    x: torch.Tensor
    status: Status
    iterations: int
    residual_norms: torch.Tensor
    relative_residual: float
    backend: str
    method: str
    preconditioner: str = "none"
    setup_seconds: float = 0.0
    solve_seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)
    krylov: KrylovResult | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def message(self) -> str:
        return (
            f"{self.method} on {self.backend} (preconditioner {self.preconditioner}): "
            f"{self.status.message}; {self.iterations} iterations, relative residual "
            f"{self.relative_residual:.3e}"
        )

    def raise_if_failed(self) -> "SolveResult":
        """Return ``self`` if converged, else raise ConvergenceError carrying this result."""
        if not self.converged:
            raise ConvergenceError(self.message, result=self)
        return self

    def summary(self) -> dict[str, Any]:
        """Plain-Python summary (what ``slactl solve --json`` prints)."""
        return {
            "backend": self.backend,
            "method": self.method,
            "preconditioner": self.preconditioner,
            "iterations": self.iterations,
            "relres": self.relative_residual,
            "converged": self.converged,
            "status": self.status.name,
            "setup_seconds": self.setup_seconds,
            "solve_seconds": self.solve_seconds,
        }


__all__ = ["SolveResult", "Status", "STOPPING_RULE"]
