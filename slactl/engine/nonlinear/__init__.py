"""Nonlinear solves ``F(u, *params) = 0``: Newton (assembled by colored autograd, user Jacobian,
or matrix-free Newton-Krylov), Picard and Anderson, with gradients by the implicit function
theorem (one transposed linear solve per backward)."""

from slactl.engine.nonlinear.api import nonlinear_solve
from slactl.engine.nonlinear.coloring import check_coloring, distance2_coloring
from slactl.engine.nonlinear.jacobian import Linearization
from slactl.engine.nonlinear.result import STOPPING_RULE, NonlinearResult, NonlinearStatus

__all__ = ["nonlinear_solve", "NonlinearResult", "NonlinearStatus", "STOPPING_RULE", "distance2_coloring",
           "check_coloring", "Linearization"]
