"""`slactl.io.matrix_data`: the exact symmetry test every store read runs, and its cost."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from io_helpers import make_matrix

from slactl.io.matrix_data import has_symmetry


def _bytes(csr) -> int:
    return csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes


@pytest.mark.parametrize("field, symmetry", [("real", "symmetric"), ("real", "skew-symmetric"),
                                             ("complex", "hermitian")])
def test_symmetry_check_allocates_one_transpose_and_nothing_more(field, symmetry):
    """It runs on every read of a store that declares a symmetry: one transpose (SciPy's), no copy
    of the matrix, no negated or conjugated copy of the values, no nnz-sized boolean temporaries."""
    a = make_matrix(field, symmetry, n=3000, density=0.01, seed=1)
    assert a.has_sorted_indices
    tracemalloc.start()
    try:
        assert has_symmetry(a, symmetry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * _bytes(a), f"peak {peak} B for a matrix of {_bytes(a)} B"


def _unsorted(a):
    """The same matrix with each row's entries reversed (a valid, non-canonical CSR)."""
    b = a.copy()
    for i in range(b.shape[0]):
        lo, hi = b.indptr[i], b.indptr[i + 1]
        b.indices[lo:hi] = b.indices[lo:hi][::-1].copy()
        b.data[lo:hi] = b.data[lo:hi][::-1].copy()
    b.has_sorted_indices = False
    return b


@pytest.mark.parametrize("field, symmetry", [("real", "symmetric"), ("integer", "skew-symmetric"),
                                             ("complex", "hermitian"), ("pattern", "symmetric")])
def test_symmetry_is_exact_in_both_directions(field, symmetry):
    a = make_matrix(field, symmetry, n=40, seed=3)
    for m in (a, _unsorted(a)):
        assert has_symmetry(m, symmetry) and has_symmetry(m, "general")
    broken = a.copy()
    broken.data[np.flatnonzero(broken.indices != np.repeat(np.arange(40), np.diff(broken.indptr)))[0]] *= 3
    assert not has_symmetry(broken, symmetry) and not has_symmetry(_unsorted(broken), symmetry)
    assert not has_symmetry(sp.csr_array(a[:, :39]), symmetry)  # not square


def test_skew_symmetric_needs_a_zero_diagonal_and_hermitian_a_real_one():
    low = sp.csr_array(np.array([[0, 0], [2, 0]], dtype=float))
    skew = sp.csr_array(low - low.T)
    assert has_symmetry(skew, "skew-symmetric")
    assert not has_symmetry(sp.csr_array(skew + sp.eye_array(2)), "skew-symmetric")
    herm = sp.csr_array(np.array([[1, 2 - 1j], [2 + 1j, 3]]))
    assert has_symmetry(herm, "hermitian") and not has_symmetry(herm, "symmetric")
    assert not has_symmetry(sp.csr_array(herm + 1j * sp.eye_array(2)), "hermitian")
