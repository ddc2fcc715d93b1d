"""Eigenvalue and singular value problems with adjoint gradients.

* :func:`eigsh`: symmetric matrices (LOBPCG, ARPACK, shift-invert, dense), gradients of eigenvalues
  and eigenvectors by the adjoint method (:mod:`slactl.engine.eigen.adjoint`);
* :func:`eigs`: nonsymmetric matrices (ARPACK), complex eigenpairs with gradients;
* :func:`svds`: top singular triplets with gradients;
* :func:`lobpcg`: the LOBPCG algorithm over any :class:`~slactl.engine.krylov.LinearOperator`.
"""

from slactl.engine.eigen.eigsh import eigsh
from slactl.engine.eigen.lobpcg import LOBPCGResult, lobpcg
from slactl.engine.eigen.result import DegenerateEigenvaluesWarning, EigenResult

__all__ = ["eigsh", "lobpcg", "LOBPCGResult", "EigenResult", "DegenerateEigenvaluesWarning"]
