"""npz archives: SciPy's save_npz layout (read by scipy.sparse.load_npz), Binsparse npz, damage."""

from __future__ import annotations

import json
import zipfile

import binsparse
import numpy as np
import pytest
import scipy.sparse as sp
from io_helpers import assert_same_csr, make_matrix

from slactl.errors import FormatError, StoreExistsError
from slactl.io import MatrixData, read_npz, write_npz


def test_round_trip_and_scipy_reads_it(tmp_path, combo):
    field, symmetry = combo
    a = make_matrix(field, symmetry, n=20)
    path = write_npz(MatrixData(a, field, symmetry, source="x.mtx"), tmp_path / "a.npz")
    got = read_npz(path)
    assert (got.field, got.symmetry, got.source) == (field, symmetry, "x.mtx")
    assert_same_csr(got.csr, a)
    assert_same_csr(sp.load_npz(path), a)  # the independent reader


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("compressed", [True, False])
def test_reads_scipy_save_npz(tmp_path, fmt, compressed):
    a = make_matrix("real", "general", n=25, m=18, seed=6)
    sp.save_npz(tmp_path / "s.npz", a.asformat(fmt), compressed=compressed)
    got = read_npz(tmp_path / "s.npz")
    assert got.field == "real" and got.symmetry == "general" and got.source == "s.npz"
    assert_same_csr(got.csr, a)


def test_reads_binsparse_npz(tmp_path):
    a = make_matrix("complex", "general", n=12)
    t = binsparse.CSRMatrix(shape=a.shape, number_of_stored_values=a.nnz, pointers_to_1=a.indptr,
                            indices_1=a.indices, values=a.data)
    binsparse.save_binsparse(t, str(tmp_path / "b.npz"))
    got = read_npz(tmp_path / "b.npz")
    assert got.field == "complex"
    assert_same_csr(got.csr, a)


def test_refuses_overwrite(tmp_path):
    data = MatrixData(make_matrix("real", "general", n=4), "real")
    write_npz(data, tmp_path / "a.npz")
    with pytest.raises(StoreExistsError):
        write_npz(data, tmp_path / "a.npz")
    write_npz(data, tmp_path / "a.npz", force=True)


def _archive(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated zip"), "npz"),
        (lambda p: p.write_bytes(b"plain text"), "npz"),
        (lambda p: np.save(open(p, "wb"), np.arange(3)), "single array"),
        (lambda p: _archive(p, x=np.arange(3)), "no 'format'"),
        (lambda p: _archive(p, format=np.array(b"bsr"), shape=np.array([2, 2]), data=np.ones(1)), "bsr"),
        (lambda p: _archive(p, format=np.array(b"csr"), shape=np.array([2, 2]), data=np.ones(2),
                            indices=np.array([0, 5]), indptr=np.array([0, 1, 2])), "column indices"),
        (lambda p: _archive(p, format=np.array(b"csr"), shape=np.array([2, 2]), data=np.ones(2),
                            indices=np.array([0, 1]), indptr=np.array([0, 2, 1])), "pointers"),
        (lambda p: _archive(p, format=np.array(b"csr"), shape=np.array([2, 2]), data=np.array([1.0, np.nan]),
                            indices=np.array([0, 1]), indptr=np.array([0, 1, 2])), "allow_nonfinite"),
        (lambda p: _archive(p, format=np.array(b"csr"), shape=np.array([2, 2]), data=np.array([None, 1]),
                            indices=np.array([0, 1]), indptr=np.array([0, 1, 2])), "data"),
        (lambda p: _archive(p, binsparse=np.array(json.dumps({"binsparse": {"version": "9"}}))), "version"),
        (lambda p: _archive(p, format=np.array(b"csr"), slactl=np.array("{oops")), "JSON"),
    ],
)
def test_damaged_or_foreign_archives(tmp_path, make, words):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(FormatError) as info:
        read_npz(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_corrupted_member(tmp_path):
    a = make_matrix("real", "general", n=30)
    path = write_npz(MatrixData(a, "real"), tmp_path / "a.npz")
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("data.npy")
    start = info.header_offset + 30 + len(info.filename) + 200
    raw[start : start + 50] = b"\xff" * 50  # stored (uncompressed) member: its CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="damaged"):
        read_npz(path)


def _coo_archive(path, values, row, col, shape=(3, 3), fmt="coo"):
    m = sp.coo_array((values, (row, col)), shape=shape)
    arrays = {"format": np.array(fmt.encode()), "shape": np.array(shape)}
    if fmt == "coo":
        arrays.update(data=values, row=np.asarray(row), col=np.asarray(col))
    else:  # CSC built by hand: duplicates and unsorted row indices kept as listed
        order = np.argsort(m.col, kind="stable")
        indptr = np.zeros(shape[1] + 1, dtype=np.int64)
        np.cumsum(np.bincount(m.col, minlength=shape[1]), out=indptr[1:])
        arrays.update(data=m.data[order], indices=m.row[order], indptr=indptr)
    return _archive(path, **arrays)


@pytest.mark.parametrize("fmt", ["coo", "csc"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32])
def test_narrow_integer_duplicates_that_overflow_are_refused_naming_the_file(tmp_path, fmt, dtype):
    """Duplicates of a narrow integer type are summed in int64 and checked against their own
    dtype's range: 100 + 100 in int8 must not wrap to -56."""
    info = np.iinfo(dtype)
    half = info.max // 2 + 1  # two of these exceed the dtype's maximum
    values = np.array([half, 3, half], dtype=dtype)
    path = _coo_archive(tmp_path / f"ovf_{fmt}.npz", values, [1, 0, 1], [2, 0, 2], fmt=fmt)
    with pytest.raises(FormatError) as err:
        read_npz(path)
    message = str(err.value)
    assert message.startswith(f"{path}: entry (2, 3) is listed more than once")
    assert f"sum to {2 * int(half)}" in message and f"{np.dtype(dtype)} range" in message


@pytest.mark.parametrize("fmt", ["coo", "csc"])
def test_narrow_integer_duplicates_that_fit_keep_their_dtype(tmp_path, fmt):
    values = np.array([60, 3, 60, -7], dtype=np.int8)
    path = _coo_archive(tmp_path / "ok.npz", values, [1, 0, 1, 2], [2, 0, 2, 1], fmt=fmt)
    got = read_npz(path)
    assert got.field == "integer" and got.csr.dtype == np.int8
    np.testing.assert_array_equal(got.csr.toarray(), [[3, 0, 0], [0, 0, 120], [0, -7, 0]])


@pytest.mark.parametrize("fmt", ["coo", "csc"])
def test_unordered_triplets_with_duplicates_read_like_scipy(tmp_path, fmt):
    """Shuffled COO triplets and a CSC with unsorted row indices and duplicates: the same canonical
    CSR as SciPy's own (summing) conversion."""
    rng = np.random.default_rng(7)
    row, col = rng.integers(0, 40, 600), rng.integers(0, 30, 600)  # many duplicates
    values = rng.standard_normal(600)
    path = _coo_archive(tmp_path / "u.npz", values, row, col, shape=(40, 30), fmt=fmt)
    got = read_npz(path).csr
    want = sp.coo_array((values, (row, col)), shape=(40, 30)).tocsr()
    assert got.has_canonical_format
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data, rtol=1e-15, atol=1e-15)


def test_npz_and_binsparse_share_one_coo_conversion(tmp_path, monkeypatch):
    """One COO -> CSR helper (matrix_data.coo_to_csr) serves SciPy npz and Binsparse COO alike, and
    CSC goes through SciPy's linear tocsr (matrix_data.csc_to_csr), never a sort of the triplets."""
    from slactl.io import descriptor, matrix_data, npz

    calls = []
    for module in (npz, descriptor):
        for name in ("coo_to_csr", "csc_to_csr"):
            real = getattr(matrix_data, name)
            monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    monkeypatch.setattr(np, "lexsort", None)  # the old, 3-8x slower route
    a = make_matrix("real", "general", n=9, seed=2)
    sp.save_npz(tmp_path / "coo.npz", a.tocoo())
    sp.save_npz(tmp_path / "csc.npz", a.tocsc())
    c = a.tocoo()
    t = binsparse.COOMatrix(shape=a.shape, number_of_stored_values=a.nnz, indices_0=c.row, indices_1=c.col,
                            values=c.data)
    binsparse.save_binsparse(t, str(tmp_path / "b.npz"))
    for name in ("coo.npz", "csc.npz", "b.npz"):
        assert_same_csr(read_npz(tmp_path / name).csr, a)
    assert calls == ["coo_to_csr", "csc_to_csr", "coo_to_csr"]
