"""Sparse times sparse: ``C = A @ B`` with gradients for both value vectors on their patterns.

The symbolic phase lists every scalar product of the multiplication as a triple
``(a, b, c)``: ``C.values[c] += A.values[a] * B.values[b]``. It depends only on the two patterns and
is cached on them, so repeated products (Galerkin triple products, training loops) run only the
numeric phase. The numeric phase is a gather, a multiply and a scatter-add; autograd of those gives
``grad_A[a] += G[c] * B[b]`` and ``grad_B[b] += G[c] * A[a]``: the masked products
``(G B^T)|_A`` and ``(A^T G)|_B`` of Nytko et al., in O(flops) memory and never an m x n array.
"""

from __future__ import annotations

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import Pattern, index_dtype_for
from slactl.errors import DeviceError, DtypeError, ShapeError


def _symbolic(pa: Pattern, pb: Pattern) -> tuple[Pattern, torch.Tensor, torch.Tensor, torch.Tensor]:
    dev = pa.device
    a_col = pa.col.to(torch.int64)
    b_crow = pb.crow.to(torch.int64)
    counts = (b_crow[1:] - b_crow[:-1])[a_col]  # products contributed by each entry of A
    total = int(counts.sum())
    a_idx = torch.repeat_interleave(torch.arange(pa.nnz, device=dev), counts)
    first = torch.cumsum(counts, 0) - counts  # where each A entry's products start
    b_idx = b_crow[a_col][a_idx] + (torch.arange(total, device=dev) - first[a_idx])
    rows = pa.row.to(torch.int64)[a_idx]
    cols = pb.col.to(torch.int64)[b_idx]
    pc, c_idx = Pattern.from_coo(rows, cols, (pa.shape[0], pb.shape[1]))
    idx = index_dtype_for(pa.nnz, pb.nnz, pc.nnz)
    return pc, a_idx.to(idx), b_idx.to(idx), c_idx.to(idx)


def spgemm(A: SparseMatrix, B: SparseMatrix) -> SparseMatrix:
    """``A @ B`` for two sparse matrices (batches broadcast); differentiable in both value vectors."""
    if A.shape[1] != B.shape[0]:
        raise ShapeError(
            f"cannot multiply {A.shape} by {B.shape}: A's column count ({A.shape[1]}) must equal "
            f"B's row count ({B.shape[0]})"
        )
    if A.device != B.device:
        raise DeviceError(f"A is on {A.device} and B on {B.device}; move one with .to(device)")
    if A.dtype != B.dtype:
        raise DtypeError(f"A is {A.dtype} and B is {B.dtype}; convert one with .to(dtype=...)")
    if A.is_batched and B.is_batched and A.batch_size != B.batch_size:
        raise ShapeError(
            f"batch sizes differ: {A.batch_size} and {B.batch_size}; use the same batch size or an "
            "unbatched operand (broadcast over the other's batch)"
        )
    pc, a_idx, b_idx, c_idx = A.pattern.cached_pair("spgemm", B.pattern, lambda: _symbolic(A.pattern, B.pattern))
    prod = A.values[..., a_idx] * B.values[..., b_idx]
    out = prod.new_zeros(prod.shape[:-1] + (pc.nnz,))
    return SparseMatrix.from_pattern(pc, out.index_add(-1, c_idx, prod))
