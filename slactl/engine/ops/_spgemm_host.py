"""SpGEMM on the host: SciPy's row-wise product for the values, NumPy for the product triples.

Why not the device code on the host: the device symbolic phase lists every scalar product and sorts
them with ``torch.unique``; on a CPU that is ~50x slower than SciPy's row-wise (Gustavson) product,
which never sorts (2D Poisson 1M, ``A @ A``, 25M products: 4.5 s against 0.1 s on 2 cores).

- :func:`structural_product`: the pattern of ``A @ B`` as the sparsity structure implies it (every
  ``(i, j)`` with some ``A[i, k]`` stored and ``B[k, j]`` stored): SciPy's product of the values when
  its entry count equals SciPy's symbolic count, else of the two patterns with all values 1 (sums
  of positive terms never cancel, so nothing is dropped).
- :func:`product_values`: SciPy's numeric product, placed on that pattern. SciPy drops entries whose
  sum is exactly zero; the structural pattern keeps them (a gradient reaches them), stored as 0.
- :func:`product_triples`: for autograd, every scalar product as ``(a, b, c)`` with
  ``C.values[c] += A.values[a] * B.values[b]``, by NumPy repeats and a stable argsort of the
  product keys, which are already in row order (timsort merges the per-row runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse import _sparsetools

from slactl.engine.matrix import host_numpy
from slactl.engine.pattern import Pattern, index_dtype_for

# dtypes SciPy's sparse product computes in natively
HOST_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _scipy(pattern: Pattern, data: np.ndarray) -> sp.csr_array:
    """A SciPy CSR view of ``pattern`` with ``data`` (no index copy when the dtypes agree)."""
    return sp.csr_array((data, pattern.col.numpy(), pattern.crow.numpy()), shape=pattern.shape, copy=False)


@dataclass(frozen=True)
class HostProduct:
    """The structural pattern of ``A @ B`` and where SciPy's product puts each of its entries.

    SciPy's row-wise product leaves the columns of each row unsorted, in an order fixed by the two
    patterns (each row's columns in the order they are first reached; a sum that cancels to zero is
    dropped, the others keep that order); ``to_sorted`` is the permutation that sorts it, so a
    numeric product with all structural entries is a gather, not a sort (2D Poisson 1M: 60 ms of
    sorting saved per product)."""

    pattern: Pattern
    to_sorted: np.ndarray


def _pattern_of(indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int]) -> Pattern:
    m, n = shape
    idx = np.int32 if index_dtype_for(m + 1, n, len(indices)) == torch.int32 else np.int64
    crow = torch.from_numpy(np.ascontiguousarray(indptr, dtype=idx))
    col = torch.from_numpy(np.ascontiguousarray(indices, dtype=idx))
    return Pattern(crow, col, (m, n))


def _structural_nnz(pa: Pattern, pb: Pattern) -> int | None:
    """Entries of the structural product, by SciPy's symbolic pass (a fifth of a numeric product's
    time); None where this SciPy lacks that (private) routine."""
    fn = getattr(_sparsetools, "csr_matmat_maxnnz", None)
    if fn is None:
        return None
    idx = np.int64 if max(pa.nnz, pb.nnz, pa.shape[0] + 1, pb.shape[0] + 1) > 2**31 - 1 else np.int32
    arrays = [np.ascontiguousarray(t.numpy(), dtype=idx) for t in (pa.crow, pa.col, pb.crow, pb.col)]
    return int(fn(pa.shape[0], pb.shape[1], *arrays))


def structural_product(
    pa: Pattern, pb: Pattern, va: torch.Tensor | None = None, vb: torch.Tensor | None = None
) -> tuple[HostProduct, torch.Tensor | None]:
    """The pattern of ``A @ B`` implied by the two patterns (explicit zeros included), and, given
    the values, ``A @ B``'s values on it.

    With values, their SciPy product is the structure too when it has as many entries as SciPy's
    symbolic pass counts (no sum cancelled to zero): one product instead of two."""
    expected = _structural_nnz(pa, pb)
    c = None
    if va is not None and vb is not None and expected is not None:
        c = _numeric_product(_scipy(pa, _host_array(va)), _scipy(pb, _host_array(vb)))
        if c.nnz != expected:
            c = None  # sums cancelled and SciPy dropped them: the values go through the plan below
    values = None if c is None else c.data
    if c is None:
        c = _numeric_product(_scipy(pa, np.ones(pa.nnz)), _scipy(pb, np.ones(pb.nnz)))
    # sort_indices permutes the data with the columns: data = positions gives the permutation
    # (float64 holds integers exactly up to 2^53)
    c.data = np.arange(c.nnz, dtype=np.float64)
    c.has_sorted_indices = False
    c.sort_indices()
    to_sorted = c.data.astype(np.intp)
    plan = HostProduct(_pattern_of(c.indptr, c.indices, c.shape), to_sorted)
    if values is None:
        return plan, None
    return plan, torch.from_numpy(np.take(values, to_sorted)).to(va.dtype)


def _host_array(values: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(host_numpy(values))


def _numeric_product(a: sp.csr_array, b: sp.csr_array) -> sp.csr_array:
    return sp.csr_array(a @ b)


def product_values(pa: Pattern, va: torch.Tensor, pb: Pattern, vb: torch.Tensor, plan: HostProduct) -> torch.Tensor:
    """Values of ``A @ B`` on ``plan.pattern`` (``plan`` from :func:`structural_product`); unbatched."""
    pc = plan.pattern
    c = _numeric_product(_scipy(pa, _host_array(va)), _scipy(pb, _host_array(vb)))
    if c.nnz == pc.nnz:
        # no sum cancelled: SciPy's entries are the structural ones, in the order the plan recorded
        return torch.from_numpy(np.take(c.data, plan.to_sorted)).to(va.dtype)
    # some sums cancelled to exactly zero and SciPy dropped them: place the rest by their keys
    c.sort_indices()
    data = torch.from_numpy(np.ascontiguousarray(c.data)).to(va.dtype)
    n = pc.shape[1]
    keys = np.repeat(np.arange(c.shape[0], dtype=np.int64), np.diff(c.indptr)) * n + c.indices
    where = np.searchsorted(pc.keys().numpy(), keys)
    out = torch.zeros(pc.nnz, dtype=va.dtype)
    out[torch.from_numpy(where)] = data
    return out


def product_triples(pa: Pattern, pb: Pattern, pc: Pattern) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a_idx, b_idx, c_idx)`` of every scalar product of ``A @ B``, ``pc`` its structural pattern."""
    a_col = pa.col.numpy().astype(np.int64, copy=False)
    b_crow = pb.crow.numpy().astype(np.int64, copy=False)
    counts = np.diff(b_crow)[a_col]  # products contributed by each entry of A
    total = int(counts.sum())
    a_idx = np.repeat(np.arange(pa.nnz, dtype=np.int64), counts)
    # product p of A entry a reads B entry b_crow[a_col[a]] + (p - first[a])
    first = np.cumsum(counts) - counts
    b_idx = np.arange(total, dtype=np.int64) + np.repeat(b_crow[a_col] - first, counts)
    keys = np.repeat(pa.row.numpy().astype(np.int64, copy=False), counts) * pc.shape[1]
    keys += pb.col.numpy()[b_idx]
    order = np.argsort(keys, kind="stable")  # keys are row-sorted already: runs for timsort
    sorted_keys = keys[order]
    new = np.empty(total, dtype=bool)
    if total:
        new[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    c_idx = np.empty(total, dtype=np.int64)
    c_idx[order] = np.cumsum(new, dtype=np.int64) - 1
    if int(new.sum()) != pc.nnz:
        raise AssertionError(f"SpGEMM symbolic phases disagree: {int(new.sum())} vs {pc.nnz} entries")
    idx = index_dtype_for(pa.nnz, pb.nnz, pc.nnz)
    return tuple(torch.from_numpy(t).to(idx) for t in (a_idx, b_idx, c_idx))  # type: ignore[return-value]
