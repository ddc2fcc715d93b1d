"""Pattern-preserving operations: transpose, alpha*A + beta*B, scaling, sums, triangle selection.

All are gathers and scatters on the values vector, so torch autograd differentiates them and the
gradients stay on the patterns.
"""

from __future__ import annotations

from typing import Any

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import Pattern
from slactl.errors import DeviceError, DtypeError, ShapeError, UsageError


def transpose(A: SparseMatrix) -> SparseMatrix:
    """``A^T`` on the cached transposed pattern."""
    pattern_t, perm = A.pattern.transpose()
    return SparseMatrix.from_pattern(pattern_t, A.values.index_select(-1, perm))


def _check_pair(A: SparseMatrix, B: Any) -> None:
    if not isinstance(B, SparseMatrix):
        raise UsageError(
            f"A + B needs two SparseMatrix operands, got {type(B).__name__}; adding a scalar or a "
            "dense tensor would fill the matrix: use A.map(lambda v: v + c) to shift stored values "
            "or A.to_dense() + B for a dense result"
        )
    if A.shape != B.shape:
        raise ShapeError(f"cannot add a {A.shape} matrix and a {B.shape} matrix; A + B needs both of the same shape")
    if A.device != B.device:
        raise DeviceError(f"A is on {A.device} and B on {B.device}; move one with .to(device)")
    if A.dtype != B.dtype:
        raise DtypeError(f"A is {A.dtype} and B is {B.dtype}; convert one with .to(dtype=...)")
    if A.is_batched and B.is_batched and A.batch_size != B.batch_size:
        raise ShapeError(
            f"batch sizes differ: {A.batch_size} and {B.batch_size}; use the same batch size or an "
            "unbatched operand (broadcast over the other's batch)"
        )


def _scaled(values: torch.Tensor, alpha: Any) -> torch.Tensor:
    if isinstance(alpha, (int, float)) and alpha == 1:
        return values
    if torch.is_tensor(alpha) and alpha.dim() == 1:
        # one factor per matrix of a batch
        return values * alpha.to(values.device)[:, None]
    return values * alpha


def add(A: SparseMatrix, B: Any, alpha: Any = 1.0, beta: Any = 1.0) -> SparseMatrix:
    """``alpha * A + beta * B`` on the union of both patterns (structural entries kept)."""
    _check_pair(A, B)
    va, vb = _scaled(A.values, alpha), _scaled(B.values, beta)
    if A.pattern.same_as(B.pattern):
        return SparseMatrix.from_pattern(A.pattern, va + vb)
    union, ia, ib = A.pattern.union(B.pattern)
    batch = torch.broadcast_shapes(va.shape[:-1], vb.shape[:-1])
    out = va.new_zeros(batch + (union.nnz,))
    out = out.index_add(-1, ia, va.expand(batch + va.shape[-1:]))
    out = out.index_add(-1, ib, vb.expand(batch + vb.shape[-1:]))
    return SparseMatrix.from_pattern(union, out)


def scale(A: SparseMatrix, alpha: Any) -> SparseMatrix:
    """``alpha * A`` for a number, a 0-d tensor, or a ``[B]`` tensor (one factor per batch entry)."""
    if torch.is_tensor(alpha):
        if alpha.dim() > 1 or (alpha.dim() == 1 and (not A.is_batched or alpha.numel() != A.batch_size)):
            raise ShapeError(
                f"alpha must be a scalar or a [B] tensor for a batch of B matrices, got {tuple(alpha.shape)}"
            )
    elif not isinstance(alpha, (int, float, complex)):
        raise UsageError(f"cannot multiply a SparseMatrix by {type(alpha).__name__}; use A @ x for products")
    return SparseMatrix.from_pattern(A.pattern, _scaled(A.values, alpha))


def reduce_sum(A: SparseMatrix, dim: int | None) -> torch.Tensor:
    """Sum of all entries (``dim=None``), row sums (``dim=1``) or column sums (``dim=0``)."""
    if dim is None:
        return A.values.sum(-1)
    if dim not in (0, 1, -1, -2):
        raise UsageError(f"dim must be None, 0 or 1, got {dim}")
    axis = dim % 2
    index = A.pattern.row if axis == 1 else A.pattern.col
    size = A.shape[0] if axis == 1 else A.shape[1]
    out = A.values.new_zeros(A.values.shape[:-1] + (size,))
    return out.index_add(-1, index, A.values)


def _sub_pattern(pattern: Pattern, keep: torch.Tensor) -> tuple[Pattern, torch.Tensor]:
    pos = torch.nonzero(keep).flatten()
    row = pattern.row[pos].to(torch.int64)
    counts = torch.bincount(row, minlength=pattern.shape[0])
    crow = torch.zeros(pattern.shape[0] + 1, dtype=torch.int64, device=pattern.device)
    crow[1:] = torch.cumsum(counts, 0)
    sub = Pattern(crow.to(pattern.index_dtype), pattern.col[pos], pattern.shape)
    return sub, pos


def select_entries(A: SparseMatrix, which: str, k: int = 0) -> SparseMatrix:
    """Entries of the lower (``"tril"``: col - row <= k) or upper (``"triu"``: col - row >= k) part."""
    pattern = A.pattern

    def build() -> tuple[Pattern, torch.Tensor]:
        offset = pattern.col.to(torch.int64) - pattern.row.to(torch.int64)
        keep = offset <= k if which == "tril" else offset >= k
        return _sub_pattern(pattern, keep)

    sub, pos = pattern.cached((which, k), build)
    return SparseMatrix.from_pattern(sub, A.values[..., pos])
