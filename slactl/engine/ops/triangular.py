"""Sparse triangular solve ``x = T^{-1} b`` with gradients for ``b`` and ``T.values``.

Forward: torch's CSR triangular solve (MKL on the CPU, cuSPARSE SpSM on CUDA); a batch of matrices
is solved as one block-diagonal system. Backward: ``lam = T^{-H} g`` (a triangular solve of the
other orientation on the cached transpose; ``T^{-T}`` when real), ``grad_b = lam`` and
``grad_values[e] = -lam[row[e]] * conj(x[col[e]])`` on T's pattern (zero on a unit diagonal, which
the forward never reads): torch's conjugate Wirtinger convention for complex tensors.
"""

from __future__ import annotations

import warnings

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.ops.spmm import sampled_product
from slactl.engine.pattern import Pattern
from slactl.errors import ShapeError, StructureError


def _check_structure(pattern: Pattern, lower: bool, unit_diagonal: bool) -> torch.Tensor:
    """Validate the pattern once; return the positions of stored diagonal entries."""

    def build() -> torch.Tensor:
        m, n = pattern.shape
        if m != n:
            raise StructureError(f"a triangular solve needs a square matrix, got {m}x{n}")
        offset = pattern.col.to(torch.int64) - pattern.row.to(torch.int64)
        bad = offset > 0 if lower else offset < 0
        if bool(bad.any()):
            e = int(torch.nonzero(bad)[0])
            side = "above" if lower else "below"
            fix = "A.tril()" if lower else "A.triu()"
            raise StructureError(
                f"the matrix is not {'lower' if lower else 'upper'} triangular: entry "
                f"({int(pattern.row[e])}, {int(pattern.col[e])}) lies {side} the diagonal; pass "
                f"lower={not lower} or take {fix}"
            )
        rows, pos = pattern.diagonal_positions()
        if not unit_diagonal and rows.numel() != m:
            stored = torch.zeros(m, dtype=torch.bool, device=pattern.device)
            stored[rows] = True
            r = int(torch.nonzero(~stored)[0])
            raise StructureError(
                f"row {r} has no stored diagonal entry, so the triangular matrix is singular; "
                "store the diagonal or pass unit_diagonal=True"
            )
        return pos

    return pattern.cached(("triangular", lower, unit_diagonal), build)


def _forward(pattern: Pattern, values: torch.Tensor, b: torch.Tensor, lower: bool, unit: bool) -> torch.Tensor:
    batched = values.dim() == 2
    vector = b.dim() == (2 if batched else 1)
    rhs = b.unsqueeze(-1) if vector else b
    if batched:
        batch, n = values.shape[0], pattern.shape[0]
        csr = pattern.block_diagonal(batch).torch_csr(values.reshape(-1))
        rhs = rhs.reshape(batch * n, rhs.shape[-1])
    else:
        csr = pattern.torch_csr(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.triangular_solve is deprecated for dense input only
        x = torch.triangular_solve(rhs.contiguous(), csr, upper=not lower, unitriangular=unit).solution
    if batched:
        x = x.reshape(b.shape[0], pattern.shape[0], -1)
    return x.squeeze(-1) if vector else x


class _TriangularSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, b, pattern, lower, unit):  # type: ignore[override]
        x = _forward(pattern, values.detach(), b.detach(), lower, unit)
        ctx.pattern, ctx.lower, ctx.unit = pattern, lower, unit
        ctx.save_for_backward(values, x)
        return x

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        values, x = ctx.saved_tensors
        T = SparseMatrix.from_pattern(ctx.pattern, values)
        lam = triangular_solve(T.H, g, lower=not ctx.lower, unit_diagonal=ctx.unit)
        grad_values = None
        if ctx.needs_input_grad[0]:
            grad_values = -sampled_product(ctx.pattern, lam, x.conj(), batched=values.dim() == 2)
            if ctx.unit:
                _, pos = ctx.pattern.diagonal_positions()
                grad_values = grad_values.index_fill(-1, pos, 0.0)
        return grad_values, lam if ctx.needs_input_grad[1] else None, None, None, None


def triangular_solve(
    A: SparseMatrix, b: torch.Tensor, *, lower: bool = True, unit_diagonal: bool = False
) -> torch.Tensor:
    """Solve ``A x = b`` for triangular ``A``.

    Parameters
    ----------
    A : SparseMatrix
        Square, with every stored entry on or below (``lower=True``) or on or above the diagonal.
        Unless ``unit_diagonal``, every diagonal entry must be stored and nonzero.
    b : Tensor
        ``[n]`` or ``[n, k]`` (``[B, n]`` or ``[B, n, k]`` for a batch of B matrices).
    unit_diagonal : bool
        Take the diagonal as ones; stored diagonal values are ignored (and get zero gradient).
    """
    pos = _check_structure(A.pattern, lower, unit_diagonal)
    A.check_compatible(b, "b")
    n = A.shape[0]
    want_dims = (2, 3) if A.is_batched else (1, 2)
    lead = (A.batch_size, n) if A.is_batched else (n,)
    if b.dim() not in want_dims or tuple(b.shape[: len(lead)]) != lead:
        dims = ", ".join(map(str, lead))
        raise ShapeError(f"b must have shape [{dims}] or [{dims}, k], got {tuple(b.shape)}")
    if not unit_diagonal:
        with torch.no_grad():
            zero = A.values[..., pos] == 0
            if bool(zero.any()):
                r = int(A.pattern.row[pos[torch.nonzero(zero.reshape(-1, pos.numel()).any(0))[0]]])
                raise StructureError(f"the diagonal entry of row {r} is zero: the triangular matrix is singular")
    if torch.is_grad_enabled() and (A.values.requires_grad or b.requires_grad):
        return _TriangularSolve.apply(A.values, b, A.pattern, lower, unit_diagonal)
    return _forward(A.pattern, A.values, b, lower, unit_diagonal)
