"""Test helpers: matrices of every field and symmetry, built with SciPy alone (independent of
slactl.io). Imported by the test modules of this directory as ``io_helpers``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

FIELDS = ("real", "integer", "complex", "pattern")
SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")
# Combinations the Matrix Market format allows.
COMBOS = [
    (f, s)
    for f in FIELDS
    for s in SYMMETRIES
    if not (s == "hermitian" and f != "complex") and not (f == "pattern" and s == "skew-symmetric")
]


def _values(field: str, k: int, rng: np.random.Generator) -> np.ndarray:
    if field == "integer":
        return rng.integers(-(10**12), 10**12, k)
    if field == "complex":
        return rng.standard_normal(k) * 10.0 ** rng.integers(-5, 5, k) + 1j * rng.standard_normal(k)
    if field == "pattern":
        return np.ones(k)
    # Wide exponent range and awkward decimals: the text round trip must be exact.
    return rng.standard_normal(k) * 10.0 ** rng.integers(-300, 300, k)


def make_matrix(field: str, symmetry: str, n: int = 30, m: int | None = None, density: float = 0.15, seed: int = 0):
    """A canonical CSR with exactly the requested symmetry (the mirror built by SciPy)."""
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    mask = sp.random_array((m, n), density=density, rng=rng, format="coo")
    vals = _values(field, mask.nnz, rng)
    a = sp.coo_array((vals, (mask.row, mask.col)), shape=(m, n)).tocsr()
    if symmetry == "symmetric":
        low = sp.tril(a, format="csr")
        a = low + sp.tril(low, k=-1).T
    elif symmetry == "skew-symmetric":
        low = sp.tril(a, k=-1, format="csr")
        a = low - low.T
    elif symmetry == "hermitian":
        low = sp.tril(a, k=-1, format="csr")
        diag = sp.diags_array(np.real(a.diagonal()))
        a = low + low.conj().T + diag
    a = sp.csr_array(a)
    if field == "pattern":
        a.data[:] = 1
    else:
        a.eliminate_zeros()
    a.sum_duplicates()
    a.sort_indices()
    return a


def assert_same_csr(got, want) -> None:
    """Same shape, pattern and bit-identical values (NaN-free inputs)."""
    got, want = sp.csr_array(got), sp.csr_array(want)
    got.sort_indices()
    want.sort_indices()
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    assert got.data.dtype.kind == want.data.dtype.kind
    np.testing.assert_array_equal(got.data, want.data)


def write_text(tmp_path: Path, text: str, name: str = "m.mtx") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p

