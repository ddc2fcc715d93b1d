"""Jacobi (diagonal) preconditioning: ``M = diag(A)^{-1}``."""

from __future__ import annotations

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners.base import Preconditioner
from slactl.errors import StructureError


class Jacobi(Preconditioner):
    """``M r = r / diag(A)``, columnwise for ``[n, k]``.

    Symmetric (its own transpose); positive definite when the diagonal is real and positive.

    Raises
    ------
    StructureError
        When a diagonal entry is zero or not stored.

    Examples
    --------
    >>> import torch, slactl
    >>> from slactl.engine.preconditioners import Jacobi
    >>> A = slactl.SparseMatrix.from_dense(torch.diag(torch.tensor([2.0, 4.0])))
    >>> Jacobi(A).apply(torch.ones(2))
    tensor([0.5000, 0.2500])
    """

    name = "jacobi"
    symmetric = True

    def _setup(self, A: SparseMatrix) -> None:
        d = A.diagonal().detach()
        zero = d == 0
        if bool(zero.any()):
            i = int(torch.nonzero(zero)[0])
            raise StructureError(
                f"Jacobi needs a nonzero diagonal, but the diagonal entry of row {i} is zero or not "
                "stored; use ilu0 or amg, or reorder the matrix"
            )
        self.inv_diag = 1 / d
        self.positive_definite = not d.is_complex() and bool((d > 0).all())

    def _apply(self, r: torch.Tensor) -> torch.Tensor:
        return r * (self.inv_diag if r.dim() == 1 else self.inv_diag[:, None])
