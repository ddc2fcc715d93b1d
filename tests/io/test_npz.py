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
