"""`MatrixData`: a sparse matrix as plain arrays (SciPy CSR) plus what its file says about it.

Every reader in :mod:`slactl.io` returns one and every writer takes one, so the formats never need
to know about each other. The CSR is *canonical*: column indices sorted within each row, no
duplicated coordinates, int32 indices where they fit (int64 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

import numpy as np
import scipy.sparse as sp

from slactl.errors import FormatError, UsageError

FIELDS = ("real", "integer", "complex", "pattern")
SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")
_INT32_MAX = np.iinfo(np.int32).max


@dataclass
class MatrixData:
    """A sparse matrix read from or bound for a file.

    Parameters
    ----------
    csr : scipy.sparse.csr_array
        The full matrix (symmetric files are expanded), canonical CSR.
    field : {"real", "integer", "complex", "pattern"}
        What the values are. A pattern matrix stores ones.
    symmetry : {"general", "symmetric", "skew-symmetric", "hermitian"}
        The symmetry the source declared (and a Matrix Market writer will exploit).
    source : str, optional
        Where the matrix came from (a file name, a gallery command), kept as metadata.
    """

    csr: Any
    field: str = "real"
    symmetry: str = "general"
    source: str | None = None
    extra: dict = dc_field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.field not in FIELDS:
            raise UsageError(f"field must be one of {FIELDS}, got {self.field!r}")
        if self.symmetry not in SYMMETRIES:
            raise UsageError(f"symmetry must be one of {SYMMETRIES}, got {self.symmetry!r}")
        if not isinstance(self.csr, sp.csr_array):
            self.csr = sp.csr_array(self.csr)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.csr.shape)

    @property
    def nnz(self) -> int:
        return int(self.csr.nnz)


def index_dtype(nrows: int, ncols: int, nnz: int) -> np.dtype:
    """int32 when every index and pointer fits, else int64 (the same rule for all formats)."""
    return np.dtype(np.int32 if max(nrows, ncols, nnz) <= _INT32_MAX else np.int64)


def value_dtype(field: str, stored: np.dtype | None = None) -> np.dtype:
    """The NumPy dtype that holds values of a Matrix Market ``field``."""
    if field == "complex":
        return np.dtype(np.complex128) if stored is None else np.dtype(stored)
    if field == "integer":
        return np.dtype(np.int64)
    return np.dtype(np.float64) if stored is None else np.dtype(stored)


def field_of(values: np.ndarray) -> str:
    """The Matrix Market field that represents ``values`` exactly."""
    kind = values.dtype.kind
    if kind == "c":
        return "complex"
    if kind in "iu":
        return "integer"
    if kind == "b":
        return "pattern"
    if kind == "f":
        return "real"
    raise UsageError(f"values of dtype {values.dtype} cannot be stored; use float, int or complex")


def canonical_csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape, field: str) -> sp.csr_array:
    """Wrap CSR arrays without copying, then sort rows and sum duplicates in place.

    A pattern matrix keeps value 1 where an entry was listed twice: a pattern is a set. An integer
    sum of duplicates that leaves the values' dtype raises FormatError (the reader adds the path).
    """
    idx = index_dtype(shape[0], shape[1], len(indices))
    csr = sp.csr_array((data, indices.astype(idx, copy=False), indptr.astype(idx, copy=False)), shape=shape)
    if not csr.has_canonical_format:
        _sum_duplicates_checked(csr)
    if field == "pattern":
        csr.data[:] = 1
    return csr


def coo_to_csr(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape, field: str) -> sp.csr_array:
    """Canonical CSR from COO triplets (indices checked by the caller), every duplicate summed by
    :func:`canonical_csr`, which checks integer sums.

    Not SciPy's COO conversion: it sums duplicates before anyone can check them. Only the rows need
    ordering, since canonical_csr sorts the columns within each row (and sums the duplicates it
    brings together): triplets already in row order (COOR, SciPy's ``tocoo``) are used as they are,
    others go through a counting sort by row."""
    rows = rows.astype(np.intp, copy=False)  # bincount takes no uint64
    if rows.size > 1 and bool((rows[1:] < rows[:-1]).any()):
        # SciPy's CSR -> CSC conversion of a matrix with one entry per row (entry k in column
        # rows[k]) is a linear, stable counting sort by row that keeps duplicates: its column
        # pointers are the CSR row pointers, its row indices the permutation. 3x faster than a
        # stable argsort on shuffled triplets.
        ordinal = np.arange(rows.size + 1, dtype=np.int64)
        by_row = sp.csr_array((values, rows, ordinal), shape=(rows.size, shape[0])).tocsc()
        return canonical_csr(by_row.data, cols[by_row.indices], by_row.indptr, shape, field)
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return canonical_csr(values, cols, indptr, shape, field)


def csc_to_csr(values: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape, field: str) -> sp.csr_array:
    """Canonical CSR from CSC arrays (validated by the caller), every duplicate summed, checked.

    SciPy's ``tocsr`` is a linear transposition that keeps duplicates (only its COO conversion sums
    them) and leaves each row sorted, so canonical_csr merely sums what is listed twice."""
    csr = sp.csc_array((values, indices, indptr), shape=shape).tocsr()
    return canonical_csr(csr.data, csr.indices, csr.indptr, shape, field)


def _sum_duplicates_checked(csr: sp.csr_array) -> None:
    """``csr.sum_duplicates()``, refusing (FormatError) an integer sum that leaves its dtype.

    Narrow integers (int8...int32, uint8...uint32) are summed in int64, where they cannot wrap,
    and the sums compared with the original dtype's range; int64 and uint64 sums are checked
    against a float64 sum (:func:`_float_reference`)."""
    narrow = csr.data.dtype if csr.data.dtype.kind in "iu" and csr.data.dtype.itemsize < 8 else None
    if narrow is not None:
        csr.data = csr.data.astype(np.int64)
    reference = _float_reference(csr)
    csr.sum_duplicates()  # scipy sorts and sums in place (C++), no second copy of the arrays
    if reference is not None:
        _check_integer_sums(csr, reference)
    if narrow is not None:
        csr.data = _narrowed(csr, narrow)


def _narrowed(csr: sp.csr_array, dtype: np.dtype) -> np.ndarray:
    """The int64 sums of ``csr`` back in ``dtype``; FormatError naming the first one that does not fit."""
    info = np.iinfo(dtype)
    values = csr.data
    bad = (values < info.min) | (values > info.max)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(csr.indptr, k, side="right")) - 1
        raise FormatError(
            f"entry ({row + 1}, {int(csr.indices[k]) + 1}) is listed more than once and its values sum to "
            f"{int(values[k])}, beyond the {dtype} range [{info.min}, {info.max}]; merge the duplicates or "
            "store the values as a wider integer type (int64)"
        )
    return values.astype(dtype)


def _float_reference(csr: sp.csr_array) -> sp.csr_array | None:
    """A float64 copy of a 64-bit integer CSR whose duplicates could sum beyond 64 bits, else None.

    Summing in int64 wraps around silently; a float64 sum cannot wrap, so comparing the two finds
    an overflow (its error is 2**64, far above the float sum's rounding). The copy is made only
    when nnz * max|value| reaches 2**63: never for ordinary integer matrices."""
    values = csr.data
    if values.dtype.kind not in "iu" or values.size < 2:
        return None
    largest = max(abs(int(values.min())), abs(int(values.max())))  # no float copy yet: usually none is needed
    if float(largest) * values.size < 2.0**63:
        return None
    return sp.csr_array((values.astype(np.float64), csr.indices.copy(), csr.indptr.copy()), shape=csr.shape)


def _check_integer_sums(csr: sp.csr_array, reference: sp.csr_array) -> None:
    """FormatError (path added by the reader) if an integer sum of duplicates wrapped around."""
    reference.sum_duplicates()
    if reference.nnz != csr.nnz:  # pragma: no cover - both sums see the same coordinates
        return
    lo, hi = np.iinfo(csr.data.dtype).min, np.iinfo(csr.data.dtype).max
    bad = np.abs(csr.data.astype(np.float64) - reference.data) > 2.0**62  # a wrap-around is 2**64 off
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(csr.indptr, k, side="right")) - 1
        col = int(csr.indices[k])
        raise FormatError(
            f"entry ({row + 1}, {col + 1}) is listed more than once and its values sum to {reference.data[k]:.6g}, "
            f"beyond the {csr.data.dtype} range [{lo}, {hi}]; merge the duplicates or store the matrix as real"
        )


def validate_csr_arrays(indptr: np.ndarray, indices: np.ndarray, shape, where: str, path: Any) -> None:
    """Check the CSR invariants a damaged store or archive could break; raise FormatError."""
    m, n = shape
    if indptr.ndim != 1 or indptr.shape[0] != m + 1:
        raise FormatError(f"{where}: row pointers have length {indptr.shape[0]}, expected rows + 1 = {m + 1}", path)
    if indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise FormatError(
            f"{where}: row pointers must run from 0 to nnz = {indices.shape[0]}, "
            f"found {int(indptr[0])}..{int(indptr[-1])}; the data is damaged",
            path,
        )
    if m and bool((np.diff(indptr) < 0).any()):
        raise FormatError(f"{where}: row pointers decrease; the data is damaged", path)
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n):
        raise FormatError(
            f"{where}: column indices must lie in [0, {n}), found {int(indices.min())}..{int(indices.max())}", path
        )


def check_finite(values: np.ndarray, allow_nonfinite: bool, where: str, path: Any) -> None:
    """Refuse NaN and Inf unless the caller allowed them (they poison every solver silently)."""
    if allow_nonfinite or values.dtype.kind not in "fc" or values.size == 0:
        return
    with np.errstate(all="ignore"):
        if np.isfinite(values.sum()):  # one pass, no temporary: a NaN or Inf makes the sum non-finite
            return
    bad = ~np.isfinite(values)
    if bad.any():  # (the sum may also have overflowed from finite values)
        k = int(np.flatnonzero(bad)[0])
        raise FormatError(
            f"{where}: stored value {k} is {values[k]}; pass allow_nonfinite=True (--allow-nonfinite) to accept NaN/Inf",
            path,
        )


def has_symmetry(csr: sp.csr_array, symmetry: str) -> bool:
    """Whether ``csr`` has ``symmetry`` exactly (bit for bit, explicit zeros included).

    Runs on every read of a store that declares a symmetry, so it allocates one transpose and
    nothing else of size nnz: SciPy's ``tocsr`` of the transposed view is a linear counting sort
    whose rows come out sorted, the transpose's values are negated or conjugated in place, and the
    comparisons stop at the first difference. A canonical ``csr`` (every reader's) is not copied."""
    if symmetry not in SYMMETRIES:
        raise UsageError(f"symmetry must be one of {SYMMETRIES}, got {symmetry!r}")
    if symmetry == "general":
        return True
    m, n = csr.shape
    if m != n:
        return False
    a = csr
    if not a.has_sorted_indices:
        a = csr.copy()
        a.sort_indices()
    t = a.T.tocsr()
    if not (_equal(a.indptr, t.indptr) and _equal(a.indices, t.indices)):
        return False
    if symmetry == "skew-symmetric":
        np.negative(t.data, out=t.data)
    elif symmetry == "hermitian":
        np.conjugate(t.data, out=t.data)
    # (a skew-symmetric diagonal is zero: a nonzero diagonal value differs from its negation, so
    # this comparison refuses it too)
    return _equal(a.data, t.data)


def _equal(a: np.ndarray, b: np.ndarray, piece: int = 1 << 16) -> bool:
    """``np.array_equal`` in pieces: no nnz-sized boolean temporary, and a difference ends it early."""
    if a.shape != b.shape:
        return False
    return all(np.array_equal(a[k : k + piece], b[k : k + piece]) for k in range(0, a.shape[0], piece))


def check_declared_symmetry(data: MatrixData, path: Any) -> None:
    """Refuse a file whose metadata declares a symmetry its matrix does not have (FormatError).

    Writers exploit a declared symmetry (Matrix Market stores only the lower triangle), so a false
    claim would silently change the matrix on the next conversion."""
    if data.symmetry == "general" or has_symmetry(data.csr, data.symmetry):
        return
    found = detect_symmetry(data.csr, data.field)
    raise FormatError(
        f"the metadata declares the matrix {data.symmetry}, but its values are not exactly {data.symmetry} "
        f"(they are {found}); the file is damaged or was written by a faulty tool: fix or drop its "
        "symmetry metadata",
        path,
    )


def detect_symmetry(csr: sp.csr_array, field: str) -> str:
    """The strongest symmetry ``csr`` has exactly: what a Matrix Market writer can exploit."""
    if csr.shape[0] != csr.shape[1] or csr.nnz == 0:
        return "general"
    if has_symmetry(csr, "symmetric"):
        return "symmetric"
    if field == "complex" and has_symmetry(csr, "hermitian"):
        return "hermitian"
    if field != "pattern" and has_symmetry(csr, "skew-symmetric"):
        return "skew-symmetric"
    return "general"
