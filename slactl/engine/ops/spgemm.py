"""Sparse times sparse: ``C = A @ B`` with gradients for both value vectors on their patterns.

The symbolic phase lists every scalar product of the multiplication as a triple
``(a, b, c)``: ``C.values[c] += A.values[a] * B.values[b]``. It depends only on the two patterns and
is cached on them, so repeated products (Galerkin triple products, training loops) run only the
numeric phase. The numeric phase is a gather, a multiply and a scatter-add; autograd of those gives
``grad_A[a] += G[c] * B[b]`` and ``grad_B[b] += G[c] * A[a]``: the masked products
``(G B^T)|_A`` and ``(A^T G)|_B`` of Nytko et al., in O(flops) memory and never an m x n array.

On the host (:mod:`._spgemm_host`) the pattern comes from SciPy's row-wise product, the values too
when no gradient is asked for, and the triples, only when one is, from NumPy; the device keeps the
sort-based symbolic phase below (one ``torch.unique`` on the GPU).
"""

from __future__ import annotations

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.ops import _spgemm_host
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
    if A.device.type == "cpu":
        return _host_spgemm(A, B)
    pc, a_idx, b_idx, c_idx = A.pattern.cached_pair("spgemm", B.pattern, lambda: _symbolic(A.pattern, B.pattern))
    return _numeric(A, B, pc, a_idx, b_idx, c_idx)


def _host_spgemm(A: SparseMatrix, B: SparseMatrix) -> SparseMatrix:
    pa, pb = A.pattern, B.pattern
    numeric = not (A.is_batched or B.is_batched) and A.dtype in _spgemm_host.HOST_DTYPES
    first: list[torch.Tensor | None] = [None]

    def build() -> _spgemm_host.HostProduct:
        plan, first[0] = _spgemm_host.structural_product(pa, pb, *((A.values, B.values) if numeric else ()))
        return plan

    plan = pa.cached_pair("spgemm-host", pb, build)
    if not numeric:
        a_idx, b_idx, c_idx = _host_triples(pa, pb, plan)
        return _numeric(A, B, plan.pattern, a_idx, b_idx, c_idx)
    return SparseMatrix.from_pattern(plan.pattern, _HostProduct.apply(A.values, B.values, pa, pb, plan, first[0]))


def _host_triples(pa: Pattern, pb: Pattern, plan: _spgemm_host.HostProduct):
    return pa.cached_pair("spgemm-triples", pb, lambda: _spgemm_host.product_triples(pa, pb, plan.pattern))


class _HostProduct(torch.autograd.Function):
    """SciPy's product forward; the backward runs over the product triples (built on the first
    backward and cached), with differentiable torch ops, so double backward works."""

    @staticmethod
    def forward(ctx, va, vb, pa, pb, plan, values):  # noqa: ANN001, ANN205
        ctx.save_for_backward(va, vb)
        ctx.patterns = (pa, pb, plan)
        # ``values``: the product the plan was built from, on its first use
        return _spgemm_host.product_values(pa, va, pb, vb, plan) if values is None else values

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        va, vb = ctx.saved_tensors
        a_idx, b_idx, c_idx = _host_triples(*ctx.patterns)
        g = grad[c_idx]
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = va.new_zeros(va.shape).index_add(0, a_idx, g * vb[b_idx].conj())
        if ctx.needs_input_grad[1]:
            grad_b = vb.new_zeros(vb.shape).index_add(0, b_idx, g * va[a_idx].conj())
        return grad_a, grad_b, None, None, None, None


def _numeric(A: SparseMatrix, B: SparseMatrix, pc: Pattern, a_idx, b_idx, c_idx) -> SparseMatrix:
    """Gather, multiply, scatter-add over the product triples: differentiable in both value vectors."""
    prod = A.values[..., a_idx] * B.values[..., b_idx]
    out = prod.new_zeros(prod.shape[:-1] + (pc.nnz,))
    return SparseMatrix.from_pattern(pc, out.index_add(-1, c_idx, prod))
