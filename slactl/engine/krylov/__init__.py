"""Krylov methods written once against a :class:`LinearOperator` (``matvec``) and its inner product.

Every method has the signature ``method(A, b, *, x0=None, rtol=1e-8, atol=0.0, maxiter=None,
preconditioner=None, check_every=None, callback=None) -> KrylovResult`` (GMRES adds ``restart``)
and the stopping rule ``||b - A x|| <= max(rtol * ||b||, atol)`` in the 2-norm, per column of a
block ``b`` ``[n, k]``, with the true residual verified at the end. A method never raises for
non-convergence: it returns a :class:`KrylovResult` whose ``status`` says why it stopped;
``result.raise_if_failed()`` raises :class:`~slactl.errors.ConvergenceError` carrying the result.

========== ====================================== ==================================
method     matrix                                 preconditioner
========== ====================================== ==================================
cg         Hermitian positive definite            Hermitian positive definite
minres     Hermitian (indefinite allowed)         Hermitian positive definite
gmres      any nonsingular (restarted, GMRES(m))  any (right preconditioning)
bicgstab   any nonsingular                        any (right preconditioning)
========== ====================================== ==================================
"""

from slactl.engine.krylov.bicgstab import bicgstab
from slactl.engine.krylov.cg import cg
from slactl.engine.krylov.gmres import gmres
from slactl.engine.krylov.minres import minres
from slactl.engine.krylov.operator import (
    DenseOperator,
    FunctionOperator,
    LinearOperator,
    MatrixOperator,
    as_operator,
)
from slactl.engine.krylov.result import STOPPING_RULE, KrylovResult, Status

METHODS = {"cg": cg, "bicgstab": bicgstab, "gmres": gmres, "minres": minres}

__all__ = [
    "cg",
    "bicgstab",
    "gmres",
    "minres",
    "METHODS",
    "LinearOperator",
    "MatrixOperator",
    "DenseOperator",
    "FunctionOperator",
    "as_operator",
    "KrylovResult",
    "Status",
    "STOPPING_RULE",
]
