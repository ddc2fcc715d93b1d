"""What a Krylov method returns: the iterate, a status that carries its message, and the history.

A method never raises for non-convergence by itself: it returns a :class:`KrylovResult` whose
:attr:`~KrylovResult.status` says what happened; :meth:`KrylovResult.raise_if_failed` turns a
failure into :class:`~slactl.errors.ConvergenceError` carrying the partial result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

from slactl.errors import ConvergenceError

STOPPING_RULE = "||b - A x|| <= max(rtol * ||b||, atol)"


class Status(enum.Enum):
    """Why a Krylov method stopped. ``status.message`` says it in words, with what to try next."""

    CONVERGED = (1, f"converged: {STOPPING_RULE}")
    MAX_ITERATIONS = (
        2,
        "reached maxiter before meeting the tolerance; raise maxiter, loosen rtol/atol, or use a "
        "stronger preconditioner (ilu0, ic0, amg)",
    )
    BREAKDOWN = (
        3,
        "the method broke down (an inner product it divides by vanished), also after restarting; "
        "try GMRES, another initial guess x0, or a preconditioner",
    )
    NONFINITE = (
        4,
        "a NaN or infinity appeared in the iteration; check A, b, x0 and the preconditioner for "
        "non-finite values or overflow, or use float64",
    )
    INDEFINITE_MATRIX = (
        5,
        "the matrix is not positive definite (p^H A p <= 0 was met), which CG needs; use MINRES for "
        "symmetric indefinite matrices or GMRES / BiCGStab for nonsymmetric ones",
    )
    INDEFINITE_PRECONDITIONER = (
        6,
        "the preconditioner is not positive definite (r^H M r <= 0 was met), which CG and MINRES "
        "need; use Jacobi on a positive diagonal, IC0 or AMG, or GMRES with this preconditioner",
    )
    INACCURATE = (
        7,
        "the method's recurrence residual met the tolerance but the true residual ||b - A x|| does "
        "not, even after restarting from the current iterate; the tolerance is likely below the "
        "accuracy this dtype can reach: loosen rtol/atol or use float64",
    )

    def __init__(self, code: int, message: str):
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"<Status.{self.name}>"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_code(cls, code: int) -> "Status":
        for s in cls:
            if s.code == code:
                return s
        raise ValueError(f"no Status has code {code}")


# Which failure to report for a block of right-hand sides when columns fail differently.
_SEVERITY = [
    Status.NONFINITE,
    Status.INDEFINITE_MATRIX,
    Status.INDEFINITE_PRECONDITIONER,
    Status.BREAKDOWN,
    Status.INACCURATE,
    Status.MAX_ITERATIONS,
]


def overall_status(column_status: tuple[Status, ...]) -> Status:
    """CONVERGED when every column converged, else the most severe failure among the columns."""
    for s in _SEVERITY:
        if s in column_status:
            return s
    return Status.CONVERGED


@dataclass
class KrylovResult:
    """The outcome of a Krylov solve.

    Attributes
    ----------
    x : Tensor
        The last iterate, ``[n]`` or ``[n, k]`` like ``b``; for each column, the iterate of the first
        iteration that met the tolerance.
    status : Status
        ``CONVERGED`` when every column met ``||b - A x|| <= max(rtol * ||b||, atol)`` for the true
        residual, else the most severe failure among the columns (see :attr:`column_status`).
    iterations : int
        Iterations performed (the largest over the columns); for GMRES, Arnoldi steps in all cycles.
    residual_norms : Tensor
        ``[iterations + 1]`` (or ``[iterations + 1, k]``): the residual norm the method tracks
        (recurrence or, for GMRES, the least-squares estimate; the true residual after a restart),
        entry 0 being the initial residual. A column that stopped keeps its last value.
    true_residual_norm : Tensor
        ``||b - A x||`` recomputed from ``x`` at the end (``[]`` or ``[k]``).
    tolerance : Tensor
        ``max(rtol * ||b||, atol)`` (``[]`` or ``[k]``).
    b_norm : Tensor
        ``||b||`` (``[]`` or ``[k]``).
    method, preconditioner : str
        Names of the method and the preconditioner.
    column_status : tuple of Status
        One status per right-hand side (one entry for a vector ``b``).
    recoveries : int
        Times the method was restarted from its iterate because the true residual disagreed with the
        recurrence or the method broke down.
    timings : dict
        Seconds: ``solve`` (wall clock, including the final synchronization) and ``per_iteration``.
    info : dict
        ``iterations_run`` (iterations executed, including those run past convergence before the
        next check point), ``host_syncs`` (check points), and method options (``restart``).
    """

    x: torch.Tensor
    status: Status
    iterations: int
    residual_norms: torch.Tensor
    true_residual_norm: torch.Tensor
    tolerance: torch.Tensor
    b_norm: torch.Tensor
    method: str
    preconditioner: str = "none"
    column_status: tuple[Status, ...] = ()
    recoveries: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """True when every right-hand side met the tolerance."""
        return self.status is Status.CONVERGED

    @property
    def relative_residual(self) -> torch.Tensor:
        """``||b - A x|| / ||b||`` (the absolute residual where ``b = 0``)."""
        b = self.b_norm
        return self.true_residual_norm / torch.where(b > 0, b, torch.ones_like(b))

    @property
    def message(self) -> str:
        """One line: method, status message, iterations and residuals."""
        rel = self.relative_residual
        worst = float(rel.max()) if rel.numel() else 0.0
        tol = float((self.tolerance / torch.where(self.b_norm > 0, self.b_norm, torch.ones_like(self.b_norm))).max()) if self.tolerance.numel() else 0.0
        failed = ""
        if len(self.column_status) > 1 and not self.converged:
            bad = [i for i, s in enumerate(self.column_status) if s is not Status.CONVERGED]
            failed = f" ({len(bad)} of {len(self.column_status)} right-hand sides failed, first: column {bad[0]})"
        return (
            f"{self.method} (preconditioner {self.preconditioner}) stopped after {self.iterations} "
            f"iterations{failed}: {self.status.message}. Relative residual {worst:.3e}, tolerance "
            f"{tol:.3e}."
        )

    def raise_if_failed(self) -> "KrylovResult":
        """Return ``self`` if converged, else raise :class:`~slactl.errors.ConvergenceError`.

        The error's ``result`` attribute is this result (partial iterate, history, status).
        """
        if not self.converged:
            raise ConvergenceError(self.message, result=self)
        return self

    def __repr__(self) -> str:
        rel = self.relative_residual
        worst = float(rel.max()) if rel.numel() else 0.0
        return (
            f"KrylovResult(method={self.method!r}, status={self.status.name}, iterations="
            f"{self.iterations}, relative_residual={worst:.3e}, preconditioner={self.preconditioner!r})"
        )
