"""Symmetry tests of the sa-amg set-up: ``A == A^T`` (values) and structural symmetry.

Values, on every path: ``A`` is symmetric when ``||A - A^T||_F <= tol ||A||_F`` (Frobenius norms,
relative; below rounding level the tolerance is raised to ``16 eps``, ``16 eps sqrt(n)`` for the
sums). An asymmetry confined to a few entries is thus diluted by about ``sqrt(nnz)`` against the
entrywise :meth:`SparseMatrix.is_symmetric`; a matrix symmetric up to such a perturbation is taken
as symmetric (R = P^T either way; only the transpose and the Cholesky coarse solve depend on it).

* On the host, a structurally symmetric matrix is compared entry by entry with its mirror
  (:meth:`SparseMatrix._mirror_difference`): the norms exactly (:func:`_values_by_mirrors`).
* Elsewhere (CUDA, or a pattern without all its mirrors), :func:`_by_sums` estimates them from
  eight sums over one pass of ``A`` with seeded random vectors ``x, y`` (the matrix's dtype, entries
  independent, mean 0, variance ``s^2``) and ``h, g`` (float64). For ``D = A - A^T``,
  ``y^T A x - x^T A y = y^T D x`` has mean square ``s^4 ||D||_F^2``, and ``||A x|| ||y|| / sqrt(n)``
  estimates ``s^2 ||A||_F`` (``E ||A x||^2 = s^2 ||A||_F^2``, ``E ||y||^2 = n s^2``), so the test
  ``|y^T A x - x^T A y| <= tol (||A x|| ||y|| + ||A y|| ||x||) / (2 sqrt(n))`` is the same
  criterion, estimated with one probe: two products instead of forming the transpose (a sort of
  all entries: the most expensive step of the set-up at 16M unknowns, and its memory peak).
* pattern: ``sum h(i) g(j) == sum h(j) g(i)`` over the stored ``(i, j)``: an entry without its mirror
  changes the difference by O(1) against rounding of O(eps nnz), so even one is seen.

On CUDA with Triton one kernel forms all eight sums (:mod:`._symmetry_kernels`; torch's version is
two cuSPARSE SpMVs, COO row indices and ~25 small kernels: ~1.6 ms of host time at 1M unknowns on an
H200), elsewhere torch does. One host synchronization either way.
"""

from __future__ import annotations

import torch

from slactl.engine.krylov.operator import MatrixOperator
from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners._aggregation import _use_kernel, device_generator


def symmetry(A: SparseMatrix, tol: float = 1e-10, interpret: bool = False) -> tuple[bool, bool]:
    """``(values symmetric, pattern symmetric)`` of a square ``A`` (``(False, False)`` otherwise);
    values symmetric means ``||A - A^T||_F <= tol ||A||_F`` (module docstring).
    ``interpret`` runs the kernel under Triton's interpreter (tests)."""
    if A.shape[0] != A.shape[1]:
        return False, False
    if A.device.type == "cpu" and A.values.dim() == 1:
        # the host finds each entry's mirror exactly, in one SciPy transpose (2D Poisson 1M: ~50 ms
        # against ~170 ms for the sums below); a pattern without all its mirrors gets the sums
        values = _values_by_mirrors(A, tol)
        if values is not None:
            return values, True
    return _by_sums(A, tol, interpret)


def _values_by_mirrors(A: SparseMatrix, tol: float) -> bool | None:
    """``||A - A^T||_F <= tol ||A||_F`` from each entry's mirror; None if the pattern is not symmetric."""
    mirrored = A._mirror_difference(frobenius=True)
    if mirrored is None:
        return None
    d, scale = mirrored
    return d <= max(tol, 16 * torch.finfo(A.dtype).eps) * scale  # float32's rounding


def _by_sums(A: SparseMatrix, tol: float, interpret: bool = False) -> tuple[bool, bool]:
    """Both answers from the eight randomized sums (module docstring); any device."""
    n = A.shape[0]
    if n == 0:
        return True, True  # (the scale below divides by sqrt(n))
    x, y = torch.rand((2, n), generator=device_generator(A.device, 1), device=A.device, dtype=A.dtype) - 0.5
    h, g = torch.rand((2, n), generator=device_generator(A.device, 2), device=A.device, dtype=torch.float64)
    sums = _fused_sums(A, x, y, h, g) if _use_kernel(x, interpret) else _torch_sums(A, x, y, h, g)
    y_ax, x_ay, ax2, ay2, forward, backward, xx, yy = sums.tolist()
    tol = max(tol, 16 * torch.finfo(A.dtype).eps * n**0.5)  # the dots' own rounding (float32)
    scale = ((ax2 * yy) ** 0.5 + (ay2 * xx) ** 0.5) / (2 * n**0.5)  # estimates ||A||_F (times s^2)
    return abs(y_ax - x_ay) <= tol * scale, abs(forward - backward) <= 1e-9 * max(abs(forward), 1.0)


def _torch_sums(A: SparseMatrix, x, y, h, g) -> torch.Tensor:
    op = MatrixOperator(A)
    ax, ay = op.matvec(x), op.matvec(y)
    row, col = A.row, A.col
    sums = [torch.dot(y, ax), torch.dot(x, ay), torch.dot(ax, ax), torch.dot(ay, ay),
            (h[row] * g[col]).sum(), (h[col] * g[row]).sum(), torch.dot(x, x), torch.dot(y, y)]
    return torch.stack([s.to(torch.float64) for s in sums])


def _fused_sums(A: SparseMatrix, x, y, h, g) -> torch.Tensor:
    from slactl.engine.preconditioners import _symmetry_kernels as K

    n = A.shape[0]
    KP = 8 if A.nnz <= 8 * n else 32
    BS = 1024 // KP
    blocks = max(1, -(-n // BS))
    partials = torch.empty((blocks, 8), dtype=torch.float64, device=A.device)
    # the kernel reads every array with unit stride: values may be a column of a batch (a view)
    crow, col, val = (t.contiguous() for t in (A.pattern.crow, A.pattern.col, A.values.detach()))
    K._symmetry_sums[(blocks,)](crow, col, val, x, y, h, g, partials, n, BS=BS, KP=KP, num_warps=4)
    return partials.sum(0)
