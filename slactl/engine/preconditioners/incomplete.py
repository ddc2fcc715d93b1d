"""Incomplete factorizations without fill: ILU(0) and IC(0).

The factors live on the matrix's own pattern (``L`` strictly lower with a unit diagonal and ``U``
upper for ILU(0); ``L`` lower with ``A ~ L L^T`` for IC(0)). They are computed on the CPU by the
level-scheduled row elimination of :mod:`._elimination` (the exact ILU(0) / IC(0) recurrences, in
float64 or complex128) and applied on the matrix's device with two sparse triangular solves
(:func:`slactl.triangular_solve`).
"""

from __future__ import annotations

import numpy as np
import torch

from slactl.engine.matrix import SparseMatrix, host_numpy
from slactl.engine.ops.triangular import triangular_solve
from slactl.engine.preconditioners import _elimination as el
from slactl.engine.preconditioners.base import Preconditioner
from slactl.errors import DtypeError, StructureError


def _to_numpy(A: SparseMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    indptr = A.crow.cpu().numpy().astype(np.int64)
    indices = A.col.cpu().numpy().astype(np.int64)
    data = host_numpy(A.values).astype(np.complex128 if A.values.is_complex() else np.float64)
    return indptr, indices, data


def ilu0_values(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """ILU(0) of a CSR matrix (sorted columns, diagonal stored) on its own pattern.

    Returns the values of ``L - I + U`` on the pattern: ``L`` unit lower, ``U`` upper, with
    ``(L U)_ij = a_ij`` for every stored ``(i, j)``. The recurrence (IKJ order), for each row ``i``
    and each stored ``k < i`` in increasing order::

        a_ik /= a_kk;   a_ij -= a_ik * a_kj   for stored (i, j) and (k, j) with j > k

    ``shift`` factors ``A + shift * diag(A)`` instead.
    """
    n = len(indptr) - 1
    row, keys = el.csr_keys(indptr, indices, n)
    diag = el.diagonal_positions(keys, n, "ILU(0)")
    a = data.copy()
    a[diag] *= 1 + shift
    lower = np.flatnonzero(indices < row)
    k = indices[lower]
    # every stored (k, j) with j > k: the strictly upper part of row k
    cnt = indptr[k + 1] - diag[k] - 1
    src1 = np.repeat(lower, cnt)
    src2 = el.ranges(diag[k] + 1, cnt)
    tgt, found = el.lookup(keys, row[src1] * n + indices[src2])
    sched = el.schedule(indptr, row, lower, diag[k], tgt[found], src1[found], src2[found], k)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        el.eliminate(a, sched, conj=False)
    pivots = a[diag]
    bad = (pivots == 0) | ~np.isfinite(pivots)
    if bad.any() or not np.isfinite(a).all():
        i = int(np.flatnonzero(bad)[0]) if bad.any() else int(row[np.flatnonzero(~np.isfinite(a))[0]])
        raise StructureError(
            f"ILU(0) met a zero or non-finite pivot at row {i}; retry with a diagonal shift "
            "(ILU0(A, shift=0.01) factors A + 0.01 * diag(A)), reorder the matrix, or use amg"
        )
    return a


def ic0_values(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """IC(0) of a lower-triangular CSR matrix (the lower triangle of a symmetric ``A``).

    Returns ``L`` on the same pattern with ``(L L^T)_ij = a_ij`` for stored ``(i, j)``. The
    recurrence, for each row ``i`` and each stored ``j < i`` in increasing order::

        l_ij = a_ij / l_jj;   a_ik -= l_ij * l_kj   for stored (i, k), (k, j) with j < k <= i

    and ``l_ii = sqrt(a_ii)`` once row ``i`` is done. ``shift`` factors ``A + shift * diag(A)``.

    Raises
    ------
    StructureError
        When a pivot ``a_ii`` is not positive (breakdown), naming the row and suggesting a shift.
    """
    n = len(indptr) - 1
    row, keys = el.csr_keys(indptr, indices, n)
    if (indices > row).any():
        raise StructureError("IC(0) takes the lower triangle of the matrix (A.tril())")
    diag = el.diagonal_positions(keys, n, "IC(0)")
    a = data.copy()
    a[diag] *= 1 + shift
    lower = np.flatnonzero(indices < row)
    j = indices[lower]
    # Column view: csc lists the positions of each column's entries by increasing row.
    csc = np.argsort(indices * n + row, kind="stable")
    colptr = np.zeros(n + 1, dtype=np.int64)
    colptr[1:] = np.cumsum(np.bincount(indices, minlength=n))
    slot = np.empty(len(indices), dtype=np.int64)
    slot[csc] = np.arange(len(indices))
    # For l_ij: the stored (k, j) with j < k <= i are column j's entries after its diagonal, up to
    # (i, j) itself (k = i updates the diagonal: a_ii -= |l_ij|^2).
    start = colptr[j] + 1
    cnt = slot[lower] - start + 1
    src1 = np.repeat(lower, cnt)
    src2 = csc[el.ranges(start, cnt)]
    tgt, found = el.lookup(keys, row[src1] * n + row[src2])
    sched = el.schedule(indptr, row, lower, diag[j], tgt[found], src1[found], src2[found], j)

    def finish(a: np.ndarray, rows: np.ndarray) -> None:
        d = a[diag[rows]]
        bad = ~(d.real > 0) | ~np.isfinite(d)
        if bad.any():
            i = int(rows[np.flatnonzero(bad)[0]])
            raise StructureError(
                f"IC(0) broke down at row {i} (pivot {d[bad][0].real:.3e} <= 0): the matrix is not "
                "positive definite or IC(0) is unstable for it; retry with a diagonal shift "
                "(IC0(A, shift=0.01) factors A + 0.01 * diag(A)) or use ilu0 / amg"
            )
        a[diag[rows]] = np.sqrt(d.real)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        el.eliminate(a, sched, conj=True, finish_level=finish)
    return a


class _TriangularPair(Preconditioner):
    """``M r = T_2^{-1} T_1^{-1} r``: a sequence of sparse triangular solves."""

    _solves: list[tuple[SparseMatrix, bool, bool]]  # (matrix, lower, unit_diagonal)

    def _apply(self, r: torch.Tensor) -> torch.Tensor:
        for T, lower, unit in self._solves:
            r = triangular_solve(T, r, lower=lower, unit_diagonal=unit)
        return r

    def transpose(self) -> "Preconditioner":
        """``M^T r``: the transposed factors solved in the reverse order."""
        if self.symmetric:
            return self
        t = type(self).__new__(type(self))
        t.__dict__.update(self.__dict__)
        t._solves = [(T.T, not lower, unit) for T, lower, unit in reversed(self._solves)]
        t.transposed = not getattr(self, "transposed", False)
        return t._adopt(self)


class ILU0(_TriangularPair):
    """Incomplete LU factorization with zero fill, ``A ~ L U`` on A's pattern.

    ``apply(r) = U^{-1} L^{-1} r``; ``transpose()`` gives ``L^{-T} U^{-T}`` (the preconditioner of
    ``A^T``) from the same factors. Real or complex. Not symmetric: use it with GMRES or BiCGStab.

    Parameters
    ----------
    A : SparseMatrix, optional
        Square, with every diagonal entry stored; set up at once when given.
    shift : float
        Factor ``A + shift * diag(A)`` (a remedy for zero or tiny pivots).

    Attributes
    ----------
    L, U : SparseMatrix
        ``L`` strictly lower (its unit diagonal implicit), ``U`` upper, on the matrix's device.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> from slactl.engine.preconditioners import ILU0
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(5, 5))
    >>> M = ILU0(slactl.SparseMatrix.from_scipy(T))   # tridiagonal: ILU(0) is the exact LU
    >>> b = torch.ones(5, dtype=torch.float64)
    >>> torch.allclose(torch.from_numpy(T @ M.apply(b).numpy()), b)
    True
    """

    name = "ilu0"

    def __init__(self, A: SparseMatrix | None = None, *, shift: float = 0.0):
        self.shift = float(shift)
        self.transposed = False
        super().__init__(A)

    def _setup(self, A: SparseMatrix) -> None:
        indptr, indices, data = _to_numpy(A)
        lu = ilu0_values(indptr, indices, data, self.shift)
        F = A.with_values(torch.from_numpy(lu).to(device=A.device, dtype=A.dtype))
        self.L, self.U = F.tril(-1), F.triu()
        self._solves = [(self.L, True, True), (self.U, False, False)]


class IC0(_TriangularPair):
    """Incomplete Cholesky factorization with zero fill, ``A ~ L L^T`` on A's lower pattern.

    For real symmetric positive definite ``A`` (only the lower triangle is read; the matrix must
    be symmetric). ``apply(r) = L^{-T} L^{-1} r`` is symmetric positive definite, so IC0 suits CG
    and MINRES; it is its own transpose.

    Parameters
    ----------
    A : SparseMatrix, optional
        Real, symmetric, with every diagonal entry stored; set up at once when given.
    shift : float
        Factor ``A + shift * diag(A)`` (the remedy for a breakdown, a pivot <= 0).

    Raises
    ------
    StructureError
        On breakdown (naming the row and suggesting ``shift``), or when ``A`` is not symmetric.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> from slactl.engine.preconditioners import IC0
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(5, 5))
    >>> M = IC0(slactl.SparseMatrix.from_scipy(T))   # tridiagonal: IC(0) is the exact Cholesky
    >>> torch.allclose(M.L.to_dense() @ M.L.to_dense().T, torch.from_numpy(T.toarray()))
    True
    """

    name = "ic0"
    symmetric = True
    positive_definite = True

    def __init__(self, A: SparseMatrix | None = None, *, shift: float = 0.0):
        self.shift = float(shift)
        super().__init__(A)

    def _setup(self, A: SparseMatrix) -> None:
        if A.dtype.is_complex:
            raise DtypeError("IC0 takes a real symmetric matrix; use ilu0 for a complex one")
        if not A.is_symmetric(tol=1e-10):
            raise StructureError("IC0 needs a symmetric matrix (A == A^T); use ilu0 for a nonsymmetric one")
        T = A.tril()
        indptr, indices, data = _to_numpy(T)
        lv = ic0_values(indptr, indices, data, self.shift)
        self.L = T.with_values(torch.from_numpy(lv).to(device=A.device, dtype=A.dtype))
        self._solves = [(self.L, True, False), (self.L.T, False, False)]
