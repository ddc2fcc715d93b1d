"""Linear solves: direct and Krylov solvers behind one setup/solve/transpose interface, one adjoint
autograd Function, and auto-dispatch (see :func:`solve`)."""

from slactl.engine.linear.api import Factorization, factorize, solve
from slactl.engine.linear.backends import BACKENDS, backend_table
from slactl.engine.linear.dispatch import Choice, select
from slactl.engine.linear.result import SolveResult, Status
from slactl.engine.linear.structure import Structure, analyze

__all__ = ["solve", "factorize", "Factorization", "SolveResult", "Status", "BACKENDS",
           "backend_table", "Choice", "select", "Structure", "analyze"]
