"""slactl: differentiable sparse linear algebra for PyTorch.

>>> import slactl
>>> A = slactl.SparseMatrix.from_dense(torch.eye(3))
"""

from slactl.engine import SparseMatrix, add, matmul, scale, spgemm, transpose, triangular_solve
from slactl.engine.files import read_matrix, write_matrix
from slactl.engine.linear import Factorization, SolveResult, Status, factorize, solve
from slactl.engine.linear.logdet import det, logdet, slogdet
from slactl.engine.matrix_list import SparseMatrixList
from slactl.engine.eigen import EigenResult, eigs, eigsh, svds
from slactl.engine.nonlinear import NonlinearResult, nonlinear_solve
from slactl.engine.gradcheck import GradcheckReport, gradcheck
from slactl import errors
from slactl.errors import *  # noqa: F401,F403  (the exception tree is public API)

__version__ = "0.1.0"

__all__ = [
    "SparseMatrix",
    "add",
    "matmul",
    "scale",
    "spgemm",
    "transpose",
    "triangular_solve",
    "read_matrix",
    "solve",
    "slogdet",
    "logdet",
    "det",
    "SparseMatrixList",
    "factorize",
    "Factorization",
    "SolveResult",
    "Status",
    "write_matrix",
    "nonlinear_solve",
    "NonlinearResult",
    "gradcheck",
    "GradcheckReport",
    "errors",
    "eigsh",
    "eigs",
    "svds",
    "EigenResult",
    "__version__",
] + errors.__all__
