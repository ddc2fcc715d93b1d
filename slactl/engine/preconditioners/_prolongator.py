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




# Entries per chunk of the filter's passes: its temporaries (~32 bytes per entry) stay O(chunk);
# with 2^22 they raised the peak of the 2D Poisson 1M set-up from 273 to 289 bytes per unknown.
_FILTER_CHUNK = 1 << 20
# A filtered matrix that would drop fewer than this share of the entries is not built: smoothing
# with it costs a compaction and a Lanczos estimate of its own, and changes P little.
_MIN_DROPPED_SHARE = 0.05


def filtered_matrix(A: SparseMatrix, theta: float, b: torch.Tensor | None = None) -> SparseMatrix | None:
    """The filtered matrix ``A^F`` of smoothed aggregation (Vanek, Mandel and Brezina 1996) that
    smooths the prolongator: ``A`` without its weak off-diagonal entries, each row's dropped
    ``sum_j a_ij b_j`` lumped onto its diagonal (divided by ``b_i``), so ``A^F b = A b`` for the
    level's near-nullspace vector ``b`` (the constant where ``b`` is None). None where fewer than
    5% of the entries are weak (``A`` smooths then).

    Weak: ``|a_ij| < theta min(m_i, m_j)``, ``m_i`` the largest ``|a_ik|`` off the diagonal of row
    ``i``, i.e. small against the strongest coupling of both rows. Unlike the symmetric strength
    of aggregation (``theta sqrt(|a_ii a_jj|)``), this keeps the coupling of a node to a stiff
    neighbour across a coefficient jump (weak for the stiff row, strong for the soft one), and
    ``A^F`` is symmetric with ``A``.

    Smoothing with ``A^F`` keeps ``P`` inside the strong directions: on an anisotropic problem
    ``A`` spreads every aggregate across the weak couplings, and the Galerkin operators fill in
    (``anisotropic2d`` at 160K unknowns: operator complexity 3.6 with ``A``, 1.7 with ``A^F``,
    13 CG iterations either way). A row whose lumped diagonal would change sign or fall below half
    of ``|a_ii|`` keeps ``a_ii``: ``D^{-1}`` of the smoothing must stay bounded.
    One host synchronization to decide (the count of weak entries, stored zeros not counted);
    where it filters, the compaction's boolean gathers synchronize too. Real ``A``, one value
    vector (sa-amg's levels).
    """
    if A.values.dim() != 1 or A.dtype.is_complex:
        raise ValueError("filtered_matrix takes a real matrix with one value vector")
    n, nnz = A.shape[0], A.nnz
    row, col, values = A.row, A.col, A.values.detach()
    strongest = torch.zeros(n, dtype=values.abs().dtype, device=A.device)
    for s0 in range(0, nnz, _FILTER_CHUNK):
        r, c, v = row[s0 : s0 + _FILTER_CHUNK], col[s0 : s0 + _FILTER_CHUNK], values[s0 : s0 + _FILTER_CHUNK]
        strongest.scatter_reduce_(0, r.to(torch.int64), torch.where(r == c, 0, v.abs()), "amax")
    entries = torch.empty(nnz, dtype=torch.bool, device=A.device)
    dropped = torch.zeros(n, dtype=A.dtype, device=A.device)
    weak = torch.zeros((), dtype=torch.int64, device=A.device)  # dropped entries that are not stored zeros
    for s0 in range(0, nnz, _FILTER_CHUNK):
        r, c, v = row[s0 : s0 + _FILTER_CHUNK], col[s0 : s0 + _FILTER_CHUNK], values[s0 : s0 + _FILTER_CHUNK]
        magnitude = v.abs()
        bound = torch.minimum(strongest[r], strongest[c]).mul_(theta)
        keep = (r == c) | ((magnitude >= bound) & (magnitude > 0))
        entries[s0 : s0 + _FILTER_CHUNK] = keep
        weak += (~keep & (magnitude > 0)).sum()
        dropped.index_add_(0, r, torch.where(keep, 0, v if b is None else v * b[c]))
        del magnitude, bound, keep
    if int(weak) < _MIN_DROPPED_SHARE * nnz:  # (stored zeros alone do not make weak couplings)
        return None
    if b is not None:
        dropped = torch.where(b != 0, dropped / b, 0)
    row, col, values = row[entries], col[entries], values[entries]
    on_diagonal = row == col
    d = torch.zeros(n, dtype=A.dtype, device=A.device).index_add_(0, row, torch.where(on_diagonal, values, 0))
    lumped = d + dropped
    lumped = torch.where((lumped * d > 0) & (lumped.abs() >= 0.5 * d.abs()), lumped, d)
    values = torch.where(on_diagonal, lumped[row], values)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=A.device)
    torch.cumsum(torch.bincount(row, minlength=n), 0, out=crow[1:])
    idx = index_dtype_for(n + 1, A.shape[1], row.numel())
    F = SparseMatrix.from_csr(crow.to(idx), col.to(idx), values, A.shape, check=False)
    F.pattern._row = row.to(idx)  # (the COO rows are at hand: the diagonal and Lanczos need them)
    return F
