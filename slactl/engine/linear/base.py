"""The setup/solve split every linear solver follows.

``Solver.setup(A)`` does the expensive work once (factorization, preconditioner hierarchy) and
returns a :class:`Prepared` object; ``prepared.solve(b)`` may run many times; and
``prepared.transpose()`` is the solver of ``A^T`` built from the same work, and
``prepared.adjoint()`` that of ``A^H`` (``A^T`` when real), which is what the adjoint (backward)
pass uses: no re-factorization, no re-analysis.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from typing import Any, Callable, Iterator

import torch

from slactl.engine.krylov.result import Status
from slactl.engine.linear.result import SolveResult
from slactl.engine.matrix import SparseMatrix


def residual_norms(A: SparseMatrix, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||b - A x||, ||b||)`` per column (2-norm)."""
    r = A @ x
    if r.requires_grad or b.requires_grad or r.shape != b.shape or r.dtype != b.dtype:
        r = b - r
    else:
        # b - A x written over the fresh product (the same subtraction, bit for bit): one
        # n-vector at the end of a solve instead of two (issue 7, CG peak memory).
        torch.sub(b, r, out=r)
    return torch.linalg.vector_norm(r, dim=0), torch.linalg.vector_norm(b, dim=0)


# Open solve counters (slactl.gradcheck reports the solves of one forward / backward). Process-wide
# on purpose: the backward of a CUDA solve runs on autograd's device thread, not the caller's.
_solve_counters: list[list[int]] = []
_counters_lock = threading.Lock()


@contextlib.contextmanager
def count_solves() -> Iterator[list[int]]:
    """``with count_solves() as n:`` counts every ``Prepared.solve`` (all backends) in ``n[0]``."""
    counter = [0]
    with _counters_lock:
        _solve_counters.append(counter)
    try:
        yield counter
    finally:
        with _counters_lock:
            _solve_counters.remove(counter)


class Prepared(abc.ABC):
    """A solver set up for one matrix (values fixed). Subclasses implement ``_solve``/``transpose``."""

    backend: str = "?"
    method: str = "?"
    preconditioner: str = "none"

    def __init__(self, A: SparseMatrix, setup_seconds: float = 0.0):
        self.A = A.detach()
        self.setup_seconds = setup_seconds

    @abc.abstractmethod
    def _solve(
        self, b: torch.Tensor, x0: torch.Tensor | None, rtol: float, atol: float,
        maxiter: int | None, callback: Callable[[int, float], None] | None,
    ) -> tuple[torch.Tensor, Status, int, torch.Tensor, Any]:
        """Return ``(x, status, iterations, residual_norms, krylov_result_or_None)``."""

    @abc.abstractmethod
    def transpose(self) -> "Prepared":
        """The prepared solver of ``A^T``, reusing this one's set-up."""

    def adjoint(self) -> "Prepared":
        """The prepared solver of ``A^H`` (``A^T`` for a real ``A``), reusing this one's set-up:
        what the backward pass solves with. ``A^H y = g`` is ``A^T conj(y) = conj(g)``, so a
        complex ``A`` gets its transposed solve between two conjugations (no new set-up)."""
        transposed = self.transpose()
        return conjugated(transposed) if self.A.dtype.is_complex else transposed

    def solve(
        self, b: torch.Tensor, *, x0: torch.Tensor | None = None, rtol: float = 1e-8,
        atol: float = 0.0, maxiter: int | None = None,
        callback: Callable[[int, float], None] | None = None,
    ) -> SolveResult:
        """Solve ``A x = b`` (not differentiable by itself; `slactl.solve` wraps it in the adjoint)."""
        if _solve_counters:
            with _counters_lock:
                for counter in _solve_counters:
                    counter[0] += 1
        t0 = time.perf_counter()
        x, status, iterations, history, krylov = self._solve(b, x0, rtol, atol, maxiter, callback)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        seconds = time.perf_counter() - t0
        res, bn = residual_norms(self.A, x, b)
        rel = res / torch.where(bn > 0, bn, torch.ones_like(bn))
        return SolveResult(
            x=x, status=status, iterations=iterations, residual_norms=history,
            relative_residual=float(rel.max()) if rel.numel() else 0.0, backend=self.backend,
            method=self.method, preconditioner=self.preconditioner,
            setup_seconds=self.setup_seconds, solve_seconds=seconds, krylov=krylov,
        )


class DirectPrepared(Prepared):
    """A factorization: ``_apply_inverse(b, transpose)``; solves add iterative refinement.

    Refinement (at most ``refinement_steps`` corrections with the same factors) runs only when the
    first solve misses ``max(rtol * ||b||, atol)``; if it still misses, the status is INACCURATE.
    """

    method = "direct"
    refinement_steps = 3

    def __init__(self, A: SparseMatrix, setup_seconds: float = 0.0, transposed: bool = False):
        super().__init__(A, setup_seconds)
        self.transposed = transposed

    @abc.abstractmethod
    def _apply_inverse(self, b: torch.Tensor) -> torch.Tensor:
        """``A^{-1} b`` (``A^{-T} b`` when ``self.transposed``); ``self.A`` is already the transpose then."""

    def _solve(self, b, x0, rtol, atol, maxiter, callback):  # type: ignore[override]
        x = self._apply_inverse(b)
        tol = torch.clamp(rtol * torch.linalg.vector_norm(b, dim=0), min=atol)
        history = []
        steps = 0
        for steps in range(self.refinement_steps + 1):
            r = b - self.A @ x
            rn = torch.linalg.vector_norm(r, dim=0)
            history.append(rn)
            if bool((rn <= tol).all()) or steps == self.refinement_steps:
                break
            x = x + self._apply_inverse(r)
        status = Status.CONVERGED if bool((history[-1] <= tol).all()) else Status.INACCURATE
        return x, status, steps, torch.stack(history), None


def conjugated(prepared: Prepared) -> Prepared:
    """The prepared solver of ``conj(M)`` from one of ``M`` (conjugating twice gives ``M`` back)."""
    if isinstance(prepared, Conjugated):
        return prepared.inner
    return Conjugated(prepared)


def _conj(t: torch.Tensor) -> torch.Tensor:
    # a materialized conjugate: SciPy (numpy()) and torch's sparse kernels take no lazy conj view
    return torch.conj_physical(t) if t.is_complex() else t


class Conjugated(Prepared):
    """``conj(M) y = b`` solved as ``M conj(y) = conj(b)`` by a prepared solver of ``M``: two O(n)
    conjugations around its solve. The result's ``krylov`` (if any) is that inner solve's."""

    def __init__(self, inner: Prepared):
        super().__init__(inner.A.map(torch.conj_physical), inner.setup_seconds)
        self.inner = inner
        self.backend, self.method, self.preconditioner = inner.backend, inner.method, inner.preconditioner

    def _solve(self, b, x0, rtol, atol, maxiter, callback):  # type: ignore[override]
        # the inner _solve, not solve: one solve for count_solves, whose residual is checked here
        x, status, iterations, history, krylov = self.inner._solve(
            _conj(b), None if x0 is None else _conj(x0), rtol, atol, maxiter, callback)
        return _conj(x), status, iterations, history, krylov

    def transpose(self) -> Prepared:
        return conjugated(self.inner.transpose())
