"""`slactl.solve` and `slactl.factorize`: differentiable linear solves on any backend."""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch

from slactl.engine.krylov._loop import check_stopping_rule
from slactl.engine.krylov.result import Status
from slactl.engine.linear.adjoint import AdjointSolve
from slactl.engine.linear.backends import get_backend
from slactl.engine.linear.base import Prepared
from slactl.engine.linear.dispatch import Choice, select
from slactl.engine.linear.result import SolveResult
from slactl.engine.linear.structure import analyze
from slactl.engine.matrix import SparseMatrix
from slactl.errors import ConvergenceError, ShapeError, StructureError, UsageError


def _flatten(A: SparseMatrix, b: torch.Tensor) -> tuple[SparseMatrix, torch.Tensor]:
    """A batch of B matrices (shared pattern) as one block-diagonal system; b [B, n(, k)] -> [B n(, k)]."""
    n = A.shape[1]
    if not A.is_batched:
        if b.dim() not in (1, 2) or b.shape[0] != A.shape[0]:
            raise ShapeError(f"A is {A.shape[0]}x{n}: b must have shape [{A.shape[0]}] or [{A.shape[0]}, k], got {tuple(b.shape)}")
        return A, b
    B = A.batch_size
    if b.dim() not in (2, 3) or b.shape[0] != B or b.shape[1] != A.shape[0]:
        raise ShapeError(f"A is a batch of {B} {A.shape[0]}x{n} matrices: b must have shape [{B}, {A.shape[0]}] or [{B}, {A.shape[0]}, k], got {tuple(b.shape)}")
    flat = SparseMatrix.from_pattern(A.pattern.block_diagonal(B), A.values.reshape(-1))
    return flat, b.reshape((B * A.shape[0],) + tuple(b.shape[2:]))


def prepare(A: SparseMatrix, choice: Choice, structure: Any = None, **options: Any) -> Prepared:
    """Set up the chosen solver for ``A`` (factorize / build the preconditioner)."""
    return get_backend(choice.backend).build(A, choice.method, choice.preconditioner, structure, **options)


def solve(
    A: SparseMatrix,
    b: torch.Tensor,
    *,
    method: str = "auto",
    backend: str = "auto",
    preconditioner: Any = "auto",
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: torch.Tensor | None = None,
    explain: bool = False,
    return_result: bool = False,
    callback: Callable[[int, float], Any] | None = None,
    restart: int | None = None,
) -> Any:
    """Solve ``A x = b``, differentiable w.r.t. ``b`` and ``A.values`` by the adjoint method.

    Stopping rule (iterative methods, and the check on direct ones):
    ``||b - A x|| <= max(rtol * ||b||, atol)``.

    Parameters
    ----------
    A : SparseMatrix or SparseMatrixList
        Square; values ``[nnz]`` or a batch ``[B, nnz]`` (solved as one block-diagonal system); a
        :class:`SparseMatrixList` (different patterns) is assembled block-diagonally too.
    b : Tensor or list of Tensor
        ``[n]`` or ``[n, k]`` (``[B, n]`` or ``[B, n, k]`` for a batch; a list for a SparseMatrixList).
    method : {"auto", "direct", "cg", "bicgstab", "gmres", "minres"}
    backend : {"auto", "superlu", "cudss", "cupyx", "torch"}
    preconditioner : {"auto", "none", "jacobi", "ilu0", "ic0", "amg"} or a Preconditioner
    rtol, atol, maxiter, x0
        Stopping rule, iteration limit, initial guess (iterative methods).
    explain : bool
        Print the dispatch decision and its reasons.
    return_result : bool
        Return a :class:`SolveResult` (``.x``, iterations, residuals, backend, timings) instead of x.

    Raises
    ------
    ConvergenceError
        If the tolerance is not met; ``err.result`` holds the partial :class:`SolveResult`.

    Examples
    --------
    >>> import torch, slactl
    >>> A = slactl.SparseMatrix.from_dense(torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64))
    >>> slactl.solve(A, torch.tensor([1.0, 2.0], dtype=torch.float64))
    tensor([0.0909, 0.6364], dtype=torch.float64)
    """
    from slactl.engine.matrix_list import SparseMatrixList

    if isinstance(A, SparseMatrixList):
        return A.solve(b, method=method, backend=backend, preconditioner=preconditioner, rtol=rtol, atol=atol,
                       maxiter=maxiter, explain=explain, return_result=return_result, callback=callback, restart=restart)
    if not isinstance(A, SparseMatrix):
        raise UsageError(f"A must be a SparseMatrix or SparseMatrixList, got {type(A).__name__}; build one with SparseMatrix.from_scipy/from_dense")
    if A.shape[0] != A.shape[1]:
        raise StructureError(f"solve needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
    check_stopping_rule(rtol, atol, maxiter)  # for every method: a direct solve checks its residual too
    A.check_compatible(b, "b")
    flat, bb = _flatten(A, b)
    if x0 is not None:
        A.check_compatible(x0, "x0")
        x0 = x0.reshape(bb.shape)
    # The structure analysis (symmetry through the transposed pattern, diagonal, row sums) costs
    # O(nnz) temporaries and leaves O(nnz) caches on the pattern: at 1M DOF it was the peak of a
    # plain CG solve (about 330 B/DOF against 120 for the solve itself, issue 7). Skip it where
    # nothing reads it: a Krylov method with a preconditioner named by the caller on the torch
    # backend (select() and the Krylov builder look at it only for "auto" and AMG; sa-amg tests
    # symmetry itself with two SpMVs and a structural check, without the transposed pattern).
    structure = analyze(flat.detach()) if _needs_structure(method, backend, preconditioner) else None
    choice = select(flat.shape[0], flat.device, flat.dtype, structure, method=method, backend=backend,
                    preconditioner=preconditioner)
    if A.is_batched:
        # One stacked system: scale rtol so that every member meets its own rtol * ||b_i||.
        norms = torch.linalg.vector_norm(b.detach().reshape(A.batch_size, -1), dim=1)
        total = torch.linalg.vector_norm(norms)
        if float(total) > 0:
            rtol = rtol * float(norms.min()) / float(total)
    if explain:
        print(choice.explain(), file=sys.stderr)
    options = dict(x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
    result = _solve_with(flat, bb, choice, structure, options, restart)
    if (result.status in (Status.INDEFINITE_MATRIX, Status.INDEFINITE_PRECONDITIONER)
            and method == "auto" and backend == "auto"):
        # The SPD evidence was only "likely": fall back to a method that needs no definiteness.
        fallback = select(flat.shape[0], flat.device, flat.dtype, None, method="direct")
        fallback.reasons = choice.reasons + [f"CG stopped: {result.status.message}", *fallback.reasons]
        if explain:
            print(fallback.explain(), file=sys.stderr)
        choice, result = fallback, _solve_with(flat, bb, fallback, structure, options, restart)
    result.reasons = choice.reasons
    if not result.converged:
        raise ConvergenceError(result.message, result=result)
    if A.is_batched:
        result.x = result.x.reshape(b.shape)
    return result if return_result else result.x


def _needs_structure(method: str, backend: str, preconditioner: Any) -> bool:
    """Whether dispatch or set-up can read :func:`analyze`'s result for these options."""
    from slactl.engine.linear.dispatch import KRYLOV_METHODS

    if method not in KRYLOV_METHODS or backend not in ("auto", "torch"):
        return True  # auto / direct dispatch, or a direct backend (SuperLU and cuDSS use it)
    return isinstance(preconditioner, str) and preconditioner.lower() in ("auto", "amg")


def _solve_with(A: SparseMatrix, b: torch.Tensor, choice: Choice, structure: Any,
                options: dict[str, Any], restart: int | None) -> SolveResult:
    prepared = prepare(A.detach(), choice, structure, restart=restart)
    return solve_prepared(prepared, A, b, options)


def solve_prepared(prepared: Prepared, A: SparseMatrix, b: torch.Tensor, options: dict[str, Any]) -> SolveResult:
    """Run a prepared solver inside the adjoint Function; the result's ``x`` carries the graph."""
    sink: list[SolveResult] = []
    try:
        x = AdjointSolve.apply(A.values, b, prepared, A.pattern, options, sink)
    except ConvergenceError:
        return sink[-1]
    result = sink[-1]
    result.x = x
    return result


class Factorization:
    """A set-up solver for one matrix, reusable across right-hand sides and by the backward pass.

    ``F.solve(b)`` is differentiable w.r.t. ``b`` and the values of the matrix it was built from.
    """

    def __init__(self, A: SparseMatrix, prepared: Prepared):
        self.A = A
        self.prepared = prepared

    @property
    def backend(self) -> str:
        return self.prepared.backend

    def solve(self, b: torch.Tensor, *, rtol: float = 1e-8, atol: float = 0.0, return_result: bool = False) -> Any:
        self.A.check_compatible(b, "b")
        flat, bb = _flatten(self.A, b)
        result = solve_prepared(self.prepared, flat, bb, dict(x0=None, rtol=rtol, atol=atol, maxiter=None, callback=None))
        result.raise_if_failed()
        if self.A.is_batched:
            result.x = result.x.reshape(b.shape)
        return result if return_result else result.x

    def __repr__(self) -> str:
        return f"Factorization(backend={self.backend!r}, shape={self.A.shape}, setup_seconds={self.prepared.setup_seconds:.3g})"


def factorize(A: SparseMatrix, *, backend: str = "auto") -> Factorization:
    """Factorize ``A`` once with a direct backend (SuperLU on the CPU; cuDSS, else cupyx, on CUDA)."""
    if A.shape[0] != A.shape[1]:
        raise StructureError(f"factorize needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
    flat, _ = _flatten(A, A.values.new_zeros((A.batch_size, A.shape[0]) if A.is_batched else (A.shape[0],)))
    structure = analyze(flat.detach())
    choice = select(flat.shape[0], flat.device, flat.dtype, structure, method="direct", backend=backend)
    return Factorization(A, prepare(flat.detach(), choice, structure))
