"""Eigenvalue and singular value problems with adjoint gradients.

* :func:`eigsh`: symmetric matrices (LOBPCG, ARPACK, shift-invert, dense), gradients of eigenvalues
  and eigenvectors by the adjoint method (:mod:`slactl.engine.eigen.adjoint`);
* :func:`eigs`: nonsymmetric matrices (ARPACK), complex eigenpairs with gradients;
* :func:`svds`: top singular triplets with gradients;
* :func:`lobpcg`: the LOBPCG algorithm over any :class:`~slactl.engine.krylov.LinearOperator`.
"""

from slactl.engine.eigen.eigs import eigs
from slactl.engine.eigen.eigsh import eigsh
from slactl.engine.eigen.lobpcg import LOBPCGResult, lobpcg
from slactl.engine.eigen.result import DegenerateEigenvaluesWarning, EigenResult
from slactl.engine.eigen.svds import svds

__all__ = ["eigsh", "eigs", "svds", "lobpcg", "LOBPCGResult", "EigenResult", "DegenerateEigenvaluesWarning"]
