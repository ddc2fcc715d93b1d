"""The smoothed prolongator ``P = (I - omega D^{-1} A) T`` of smoothed aggregation.

:func:`smoothed_prolongator` forms it as one SpGEMM ``S @ T`` (:func:`._aggregation.sparse_product`:
cuSPARSE on CUDA, SciPy on the CPU), except where ``T`` has at most one entry per row (a single
near-nullspace vector) and Triton runs on CUDA: then two row-compression kernels
(:mod:`._prolongator_kernels`) build ``P`` from ``A``, ``D^{-1}`` and ``T`` directly, without
``S`` (at 1M unknowns on an H200: three cuSPARSE chunks and ~2.5 ms of host work per level before).
"""

from __future__ import annotations

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import index_dtype_for
from slactl.engine.preconditioners._aggregation import _use_kernel, sparse_product

# Rows longer than this take the SpGEMM: the kernels hold a row's pairwise comparisons in registers.
_LONGEST_ROW = 64


def smoothed_prolongator(A: SparseMatrix, T: SparseMatrix, inv_diag: torch.Tensor, omega: float,
                         one_per_row: bool = False, interpret: bool = False) -> SparseMatrix:
    """``(I - omega D^{-1} A) T`` with sorted, duplicate-free rows (``A``'s diagonal stored).
    ``one_per_row``: the caller guarantees that every row of ``T`` has at most one entry.
    ``interpret`` runs the kernels under Triton's interpreter (tests)."""
    if one_per_row and _use_kernel(A.values, interpret):
        P = _compressed(A, T, inv_diag, omega)
        if P is not None:
            return P
    return sparse_product(smoothing_matrix(A, inv_diag, omega), T)


def smoothing_matrix(A: SparseMatrix, inv_diag: torch.Tensor, omega: float) -> SparseMatrix:
    """``S = I - omega D^{-1} A`` on ``A``'s pattern (the diagonal is stored, checked by the
    caller; for a rectangular local block, the entries with row == column)."""
    # D^{-1} per entry, straight from the row offsets (no COO row indices needed)
    counts = A.pattern.crow[1:] - A.pattern.crow[:-1]
    S_values = torch.repeat_interleave(inv_diag, counts, output_size=A.nnz)
    S_values.mul_(A.values.detach()).mul_(-omega)
    rows, pos = A.pattern.diagonal_positions()
    S_values.index_add_(0, pos.to(A.device), torch.ones_like(pos, dtype=A.dtype, device=A.device))
    return SparseMatrix.from_pattern(A.pattern, S_values)


def _compressed(A: SparseMatrix, T: SparseMatrix, inv_diag: torch.Tensor, omega: float) -> SparseMatrix | None:
    """The kernels' product, or None where a row of ``A`` is too long for them."""
    from slactl.engine.preconditioners import _prolongator_kernels as K

    n, nc = T.shape
    # the kernels read every array with unit stride (values may be a column of a batch, a view)
    crow, col, val = (t.contiguous() for t in (A.pattern.crow, A.pattern.col, A.values.detach()))
    inv_diag = inv_diag.contiguous()
    longest = int((crow[1:] - crow[:-1]).max()) if n else 0
    if longest > _LONGEST_ROW:
        return None
    W = max(8, 1 << (longest - 1).bit_length())
    BS = max(1, 2048 // (W * W))  # [BS, W, W] comparisons per program
    grid = (max(1, -(-n // BS)),)
    tcrow, tcol, tval = (t.contiguous() for t in (T.pattern.crow, T.pattern.col, T.values.detach()))
    counts = torch.empty(n, dtype=torch.int64, device=A.device)
    K._count[grid](crow, col, tcrow, tcol, counts, n, BS=BS, W=W, num_warps=4)
    out_crow = torch.zeros(n + 1, dtype=torch.int64, device=A.device)
    torch.cumsum(counts, 0, out=out_crow[1:])
    nnz = int(out_crow[-1])
    idx = index_dtype_for(n + 1, nc, nnz)
    out_col = torch.empty(nnz, dtype=idx, device=A.device)
    out_val = torch.empty(nnz, dtype=A.dtype, device=A.device)
    coef = torch.tensor([omega], dtype=A.dtype, device=A.device)
    K._write[grid](crow, col, val, inv_diag, coef, tcrow, tcol, tval, out_crow, out_col, out_val, n,
                   BS=BS, W=W, num_warps=4)
    return SparseMatrix.from_csr(out_crow.to(idx), out_col, out_val, (n, nc), check=False)
