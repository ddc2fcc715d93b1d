"""What `slactl.nonlinear_solve(..., return_result=True)` returns: the root, a status that carries
its message, and the history of the nonlinear iteration."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

from slactl.errors import ConvergenceError

STOPPING_RULE = "||F(u)|| <= max(rtol * ||F(u0)||, atol)"


class NonlinearStatus(enum.Enum):
    """Why a nonlinear solve stopped. ``status.message`` says it in words, with what to try next."""

    CONVERGED = (1, f"converged: {STOPPING_RULE}")
    MAX_ITERATIONS = (
        2,
        "reached maxiter before meeting the tolerance; raise maxiter, loosen rtol/atol, start closer "
        "to the root (u0), or use Newton (method='newton') for fast local convergence",
    )
    LINE_SEARCH_FAILED = (
        3,
        "the backtracking line search found no step that decreases ||F|| enough; the Jacobian may be "
        "wrong or singular (check jacobian= / pattern=), or u0 is far from a root: try a better u0",
    )
    LINEAR_SOLVE_FAILED = (
        4,
        "the linear solve of a Newton step failed; pick another linear_method/preconditioner, or "
        "check that the Jacobian is nonsingular near the iterate",
    )
    NONFINITE = (
        5,
        "a NaN or infinity appeared in F(u); check the residual function, u0 and the parameters, or "
        "use line_search=True and float64",
    )
    DIVERGED = (
        6,
        "the fixed-point iteration diverged (||F|| grew by 1e10 over its initial value); u -> u - F(u) "
        "is not a contraction here: scale the residual, lower damping, or use Newton",
    )

    def __init__(self, code: int, message: str):
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"<NonlinearStatus.{self.name}>"

    def __str__(self) -> str:
        return self.name


@dataclass
class NonlinearResult:
    """The outcome of a nonlinear solve.

    Attributes
    ----------
    u : Tensor
        The last iterate (the root when converged); differentiable w.r.t. the parameters by the
        implicit function theorem when returned by :func:`slactl.nonlinear_solve`.
    status : NonlinearStatus
    iterations : int
        Nonlinear iterations (Newton steps, Picard or Anderson updates).
    residual_norms : Tensor
        ``||F(u_k)||`` for ``k = 0 .. iterations``.
    tolerance : float
        ``max(rtol * ||F(u0)||, atol)``.
    method : str
        ``newton``, ``picard`` or ``anderson``.
    jacobian : str
        ``sparse`` (colored autograd assembly), ``matrix-free`` (Newton-Krylov), ``callable`` (user
        supplied) or ``none`` (fixed-point methods).
    linear_solves : int
        Linear solves of the forward iteration (one per Newton step).
    linear_iterations : int
        Krylov iterations summed over those solves (0 for direct solves).
    residual_evaluations : int
        Evaluations of ``F`` (line search included).
    jvps : int
        Jacobian-vector products (one per color and assembly, or per Krylov iteration).
    colors : int
        Colors of the distance-2 coloring used to assemble the Jacobian (0 if none).
    adjoint_solves : int
        Linear solves run by backward passes through this result so far (one per backward).
    timings : dict
        Seconds: ``solve`` (forward) and ``backward`` (the last backward pass).
    """

    u: torch.Tensor
    status: NonlinearStatus
    iterations: int
    residual_norms: torch.Tensor
    tolerance: float
    method: str
    jacobian: str = "none"
    linear_solves: int = 0
    linear_iterations: int = 0
    residual_evaluations: int = 0
    jvps: int = 0
    colors: int = 0
    adjoint_solves: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is NonlinearStatus.CONVERGED

    @property
    def residual_norm(self) -> float:
        """``||F(u)||`` at the returned iterate."""
        return float(self.residual_norms[-1]) if self.residual_norms.numel() else float("nan")

    @property
    def message(self) -> str:
        """One line: method, status message, iterations and residuals."""
        r0 = float(self.residual_norms[0]) if self.residual_norms.numel() else float("nan")
        return (
            f"{self.method} (jacobian {self.jacobian}) stopped after {self.iterations} iterations: "
            f"{self.status.message}. ||F(u)|| = {self.residual_norm:.3e} (initially {r0:.3e}), "
            f"tolerance {self.tolerance:.3e}."
        )

    def raise_if_failed(self) -> "NonlinearResult":
        """Return ``self`` if converged, else raise :class:`~slactl.errors.ConvergenceError`
        whose ``result`` is this (partial) result."""
        if not self.converged:
            raise ConvergenceError(self.message, result=self)
        return self

    def __repr__(self) -> str:
        return (
            f"NonlinearResult(method={self.method!r}, status={self.status.name}, iterations="
            f"{self.iterations}, residual_norm={self.residual_norm:.3e}, jacobian={self.jacobian!r})"
        )


def stopping_status(fnorm: float, tol: float) -> "NonlinearStatus | None":
    """The status that ends an iteration at residual norm ``fnorm`` (NaN/inf, or
    ``||F|| <= tol``), or None to go on; shared by Newton and the fixed-point methods."""
    if fnorm != fnorm or fnorm == float("inf"):
        return NonlinearStatus.NONFINITE
    if fnorm <= tol:
        return NonlinearStatus.CONVERGED
    return None
