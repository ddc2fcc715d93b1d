"""Krylov solvers behind the setup/solve interface: the preconditioner is set up once."""

from __future__ import annotations

import time
from typing import Any

import torch

from slactl.engine.krylov import METHODS
from slactl.engine.linear.base import Prepared, conjugated
from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners import make_preconditioner
from slactl.errors import UsageError

# Methods whose matrix must be symmetric: the adjoint system is the forward one.
SYMMETRIC_METHODS = ("cg", "minres")


class KrylovPrepared(Prepared):
    """``method`` (cg, bicgstab, gmres, minres) with a preconditioner built once for ``A``."""

    backend = "torch"

    def __init__(self, A: SparseMatrix, method: str, preconditioner: Any = "none", *,
                 restart: int | None = None, preconditioner_options: dict | None = None,
                 _M: Any = None, _seconds: float = 0.0):
        if method not in METHODS:
            raise UsageError(f"unknown Krylov method {method!r}; choose one of {sorted(METHODS)}")
        t0 = time.perf_counter()
        M = _M if _M is not None else make_preconditioner(preconditioner, A.detach(), **(preconditioner_options or {}))
        super().__init__(A, _seconds if _M is not None else time.perf_counter() - t0)
        self.method = method
        self.M = M
        self.preconditioner = getattr(M, "name", type(M).__name__)
        self.restart = restart

    def _solve(self, b, x0, rtol, atol, maxiter, callback):  # type: ignore[override]
        kwargs: dict[str, Any] = dict(x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
                                      preconditioner=self.M, callback=callback)
        if self.method == "gmres" and self.restart is not None:
            kwargs["restart"] = self.restart
        res = METHODS[self.method](self.A, b, **kwargs)
        return res.x, res.status, res.iterations, res.residual_norms, res

    def adjoint(self) -> Prepared:
        if self.method in SYMMETRIC_METHODS:
            return self  # A^H = A (hermitian or real symmetric): no conjugated copy of A to build
        return super().adjoint()

    def transpose(self) -> Prepared:
        if self.method in SYMMETRIC_METHODS:
            # A is symmetric (complex: hermitian, A^T = conj(A)), and so is the preconditioner
            # these methods accept; adjoint() conjugates this back to self
            return conjugated(self) if self.A.dtype.is_complex else self
        return KrylovPrepared(self.A.T, self.method, _M=self.M.transpose(), restart=self.restart,
                              _seconds=self.setup_seconds)
