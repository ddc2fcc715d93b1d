"""The preconditioner interface: ``setup(A)`` once, ``apply(r)`` many times, ``transpose()`` for
the adjoint solve.

A preconditioner ``M`` approximates ``A^{-1}``: ``apply(r)`` returns ``M r`` for ``r`` of shape
``[n]`` or ``[n, k]`` (columns independently). ``transpose()`` returns the preconditioner of
``A^T`` (``M^T``), which the adjoint (backward) solve uses, built from the same setup.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.errors import ShapeError, StructureError, UsageError


class Preconditioner:
    """Base class: subclasses implement ``_setup(A)``, ``_apply(r)`` and ``transpose()``.

    Attributes
    ----------
    name : str
        Registry name (``"jacobi"``, ``"ilu0"``...).
    symmetric : bool
        ``M^T == M``; then :meth:`transpose` returns ``self``.
    positive_definite : bool
        ``M`` is symmetric positive definite, as CG and MINRES need.
    setup_time : float
        Seconds spent in :meth:`setup`.
    """

    name = "preconditioner"
    symmetric = False
    positive_definite = False

    def __init__(self, A: SparseMatrix | None = None):
        self.setup_time = 0.0
        self.shape: tuple[int, int] | None = None
        if A is not None:
            self.setup(A)

    def setup(self, A: SparseMatrix) -> "Preconditioner":
        """Build the preconditioner for ``A`` (once); returns ``self``."""
        _check_matrix(A, self.name)
        start = time.perf_counter()
        with torch.no_grad():
            self._setup(A)
        self.shape = A.shape
        self.setup_time = time.perf_counter() - start
        return self

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """``M r`` for ``r`` of shape ``[n]`` or ``[n, k]``."""
        if self.shape is None:
            raise UsageError(f"{self.name}: call setup(A) before apply(r)")
        if r.dim() not in (1, 2) or r.shape[0] != self.shape[0]:
            raise ShapeError(f"{self.name}: r must have shape [{self.shape[0]}] or [{self.shape[0]}, k], got {tuple(r.shape)}")
        with torch.no_grad():
            return self._apply(r)

    __call__ = apply

    def transpose(self) -> "Preconditioner":
        """The preconditioner ``M^T`` of ``A^T``."""
        if self.symmetric:
            return self
        raise NotImplementedError(f"{type(self).__name__} must implement transpose()")

    def _setup(self, A: SparseMatrix) -> None:
        raise NotImplementedError

    def _apply(self, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adopt(self, other: "Preconditioner") -> "Preconditioner":
        """Copy the bookkeeping of a set-up preconditioner onto a transposed sibling."""
        self.shape = other.shape
        self.setup_time = 0.0
        return self

    def __repr__(self) -> str:
        state = f"shape={self.shape}" if self.shape is not None else "not set up"
        return f"{type(self).__name__}({state})"


class Identity(Preconditioner):
    """No preconditioning: ``M = I``."""

    name = "none"
    symmetric = True
    positive_definite = True

    def _setup(self, A: SparseMatrix) -> None:
        pass

    def _apply(self, r: torch.Tensor) -> torch.Tensor:
        return r


def _check_matrix(A: Any, who: str) -> None:
    if not isinstance(A, SparseMatrix):
        raise UsageError(f"{who} is built from a SparseMatrix, got {type(A).__name__}; convert with SparseMatrix.from_scipy / from_dense")
    if A.is_batched:
        raise UsageError(f"{who} takes one matrix; build one preconditioner per matrix of the batch A[i]")
    m, n = A.shape
    if m != n:
        raise StructureError(f"{who} needs a square matrix, got {m}x{n}")
