"""Zarr v3 / Binsparse stores: exact round trips, interop with the reference `binsparse` package,
atomic writes, and clear refusals of foreign or damaged stores."""

from __future__ import annotations

import json
import shutil

import binsparse
import numpy as np
import pytest
import scipy.sparse as sp
import zarr
from io_helpers import assert_same_csr, make_matrix

import slactl.io.zarr_store as zs
from slactl.errors import FormatError, StoreExistsError, UsageError
from slactl.io import MatrixData, read_zarr, write_zarr


def _binsparse_to_scipy(t) -> sp.csr_array:
    """Independent decoding with the reference package's arrays."""
    vals = np.asarray(t.values)
    if vals.dtype == bool:
        vals = vals.astype(np.float64)
    return sp.csr_array((vals, np.asarray(t.indices_1), np.asarray(t.pointers_to_1)), shape=t.shape)


def test_round_trip_every_field_and_symmetry(tmp_path, combo):
    field, symmetry = combo
    a = make_matrix(field, symmetry, n=40)
    path = write_zarr(MatrixData(a, field, symmetry, source="test"), tmp_path / "a.zarr")
    got = read_zarr(path)
    assert (got.field, got.symmetry, got.source) == (field, symmetry, "test")
    assert_same_csr(got.csr, a)
    # The reference package reads the same matrix from the same store.
    t = binsparse.load_binsparse(str(path))
    assert isinstance(t, binsparse.CSRMatrix) and t.number_of_stored_values == a.nnz
    np.testing.assert_array_equal(_binsparse_to_scipy(t).toarray(), a.toarray())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.complex64, np.complex128])
def test_value_dtypes_are_kept(tmp_path, dtype):
    a = make_matrix("real", "general", n=12)
    vals = np.arange(1, a.nnz + 1).astype(dtype)
    vals = vals if dtype == np.int64 else vals / np.asarray(3, dtype=dtype)
    a = sp.csr_array((vals, a.indices, a.indptr), shape=a.shape)
    field = "complex" if np.dtype(dtype).kind == "c" else "integer" if dtype == np.int64 else "real"
    got = read_zarr(write_zarr(MatrixData(a, field), tmp_path / "a.zarr"))
    assert got.csr.dtype == dtype
    assert_same_csr(got.csr, a)


@pytest.mark.parametrize("fmt", ["CSR", "CSC", "COO"])
def test_reads_stores_written_by_binsparse(tmp_path, fmt):
    a = make_matrix("real", "general", n=20, m=15, seed=4)
    if fmt == "CSR":
        t = binsparse.CSRMatrix(shape=a.shape, number_of_stored_values=a.nnz, pointers_to_1=a.indptr.astype(np.int64),
                                indices_1=a.indices.astype(np.int64), values=a.data)
    elif fmt == "CSC":
        c = sp.csc_array(a)
        t = binsparse.CSCMatrix(shape=a.shape, number_of_stored_values=a.nnz, pointers_to_1=c.indptr,
                                indices_1=c.indices, values=c.data)
    else:
        c = a.tocoo()
        t = binsparse.COOMatrix(shape=a.shape, number_of_stored_values=a.nnz, indices_0=c.row, indices_1=c.col,
                                values=c.data)
    binsparse.save_binsparse(t, str(tmp_path / "b.zarr"))
    got = read_zarr(tmp_path / "b.zarr")
    assert (got.field, got.symmetry, got.source) == ("real", "general", "b.zarr")
    assert_same_csr(got.csr, a)


def test_binsparse_coo_integer_duplicates_that_overflow_are_refused_naming_the_store(tmp_path):
    """Duplicates of a COO store are summed with the overflow check (SciPy's COO conversion sums
    int64 silently, wrapping 2^63 - 1 + 1 to -2^63)."""
    t = binsparse.COOMatrix(shape=(2, 2), number_of_stored_values=2, indices_0=np.array([0, 0]),
                            indices_1=np.array([0, 0]), values=np.array([2**63 - 1, 1], dtype=np.int64))
    binsparse.save_binsparse(t, str(tmp_path / "ovf.zarr"))
    with pytest.raises(FormatError, match=r"ovf\.zarr.*int64 range"):
        read_zarr(tmp_path / "ovf.zarr")


def test_reads_binsparse_complex_and_iso_values(tmp_path):
    a = make_matrix("complex", "general", n=10)
    t = binsparse.CSRMatrix(shape=a.shape, number_of_stored_values=a.nnz, pointers_to_1=a.indptr,
                            indices_1=a.indices, values=a.data)
    binsparse.save_binsparse(t, str(tmp_path / "c.zarr"))
    assert_same_csr(read_zarr(tmp_path / "c.zarr").csr, a)
    iso = np.broadcast_to(np.array([2.5]), (a.nnz,))  # the package stores this as iso[float64]
    t = binsparse.CSRMatrix(shape=a.shape, number_of_stored_values=a.nnz, pointers_to_1=a.indptr,
                            indices_1=a.indices, values=iso)
    binsparse.save_binsparse(t, str(tmp_path / "i.zarr"))
    got = read_zarr(tmp_path / "i.zarr")
    assert (got.csr.data == 2.5).all() and got.nnz == a.nnz


def test_layout_descriptor_chunks_compression_and_sharding(tmp_path, monkeypatch):
    a = make_matrix("real", "general", n=300, density=0.05)
    path = write_zarr(MatrixData(a, "real"), tmp_path / "a.zarr", chunk_elements=256, shard_chunks=4)
    meta = json.loads((path / "zarr.json").read_text())
    desc = meta["attributes"]["binsparse"]
    assert desc["format"] == "CSR" and desc["shape"] == [300, 300] and desc["number_of_stored_values"] == a.nnz
    assert desc["binsparse"]["format"] == "CSR"  # the reference package's nesting
    assert set(desc["data_types"]) == {"pointers_to_1", "indices_1", "values"}
    values = json.loads((path / "values" / "zarr.json").read_text())
    codec = values["codecs"][0]
    assert codec["name"] == "sharding_indexed" and codec["configuration"]["chunk_shape"] == [256]
    assert values["chunk_grid"]["configuration"]["chunk_shape"] == [1024]
    assert any(c["name"] == "zstd" for c in codec["configuration"]["codecs"])


def test_empty_and_zero_sized(tmp_path):
    for shape in [(0, 0), (4, 0), (3, 5)]:
        a = sp.csr_array(shape)
        got = read_zarr(write_zarr(MatrixData(a, "real"), tmp_path / f"e{shape[0]}{shape[1]}.zarr"))
        assert got.shape == shape and got.nnz == 0


# --------------------------------------------------------------------------- atomic writes
def test_refuses_overwrite_and_replaces_with_force(tmp_path):
    a = make_matrix("real", "general", n=8)
    path = write_zarr(MatrixData(a, "real"), tmp_path / "a.zarr")
    with pytest.raises(StoreExistsError, match="--force"):
        write_zarr(MatrixData(2 * a, "real"), path)
    assert_same_csr(read_zarr(path).csr, a)
    write_zarr(MatrixData(2 * a, "real"), path, force=True)
    assert_same_csr(read_zarr(path).csr, 2 * a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_force_never_replaces_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "precious.zarr").mkdir()
    (tmp_path / "precious.zarr" / "thesis.tex").write_text("x")
    with pytest.raises(UsageError, match="not a Zarr store"):
        write_zarr(MatrixData(sp.csr_array((2, 2)), "real"), tmp_path / "precious.zarr", force=True)
    assert (tmp_path / "precious.zarr" / "thesis.tex").exists()


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    a = make_matrix("real", "general", n=50)
    real_write = zs._write_array
    calls = []

    def failing(group, name, *args):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("disk full (injected)")
        return real_write(group, name, *args)

    monkeypatch.setattr(zs, "_write_array", failing)
    with pytest.raises(RuntimeError, match="injected"):
        write_zarr(MatrixData(a, "real"), tmp_path / "a.zarr")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FormatError, match="no such store"):
        read_zarr(tmp_path / "a.zarr")


def test_failure_mid_replace_keeps_the_old_store(tmp_path, monkeypatch):
    a = make_matrix("real", "general", n=30)
    path = write_zarr(MatrixData(a, "real"), tmp_path / "a.zarr")
    monkeypatch.setattr(zs, "_write_array", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_zarr(MatrixData(2 * a, "real"), path, force=True)
    assert_same_csr(read_zarr(path).csr, a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_a_store_without_its_final_attributes_is_refused(tmp_path):
    """What an interrupted write looks like inside: arrays present, descriptor not yet written."""
    a = make_matrix("real", "general", n=30)
    path = write_zarr(MatrixData(a, "real"), tmp_path / "a.zarr")
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"] = {}
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="write never finished"):
        read_zarr(path)


# --------------------------------------------------------------------------- damage
def _store(tmp_path, n=200):
    a = make_matrix("real", "general", n=n, density=0.05)
    return a, write_zarr(MatrixData(a, "real"), tmp_path / "a.zarr", chunk_elements=64, shard_chunks=1)


def _edit_attrs(path, fn):
    meta = json.loads((path / "zarr.json").read_text())
    fn(meta["attributes"])
    (path / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: shutil.rmtree(p / "indices_1"), "indices_1"),
        (lambda p: (p / "values" / "c" / "1").unlink(), "checksum"),
        (lambda p: (p / "values" / "c" / "0").write_bytes(b"garbage"), "values"),
        (lambda p: (p / "zarr.json").write_text("{not json"), "not a readable Zarr group"),
        (lambda p: (p / "zarr.json").unlink(), "not a readable Zarr group"),
        (lambda p: _edit_attrs(p, lambda a: a["binsparse"].update(version="2.0", binsparse={})), "version"),
        (lambda p: _edit_attrs(p, lambda a: a.update(binsparse={"format": "DCSR", "version": "0.1.0"})), "DCSR"),
        (lambda p: _edit_attrs(p, lambda a: a["binsparse"].update(shape=[-1, 3], binsparse={})), "shape"),
        (lambda p: _edit_attrs(p, lambda a: a["binsparse"].update(number_of_stored_values=7, binsparse={})), "7"),
        (lambda p: _edit_attrs(p, lambda a: a["slactl"].update(symmetry="upper")), "symmetry"),
        (lambda p: _edit_attrs(p, lambda a: a["slactl"].update(symmetry="symmetric")), "declares the matrix symmetric"),
        (lambda p: _edit_attrs(p, lambda a: a["binsparse"]["data_types"].update(values="float16") or a["binsparse"].pop("binsparse")), "float16"),
    ],
)
def test_damaged_store_gives_format_error(tmp_path, damage, words):
    a, path = _store(tmp_path)
    damage(path)
    with pytest.raises(FormatError) as info:
        read_zarr(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_bad_pointers_written_by_a_foreign_tool(tmp_path):
    a = make_matrix("real", "general", n=10)
    ptr = a.indptr.astype(np.int64).copy()
    ptr[3], ptr[4] = ptr[4], ptr[3] - 1  # decreasing
    t = binsparse.CSRMatrix(shape=a.shape, number_of_stored_values=a.nnz, pointers_to_1=ptr,
                            indices_1=a.indices.astype(np.int64), values=a.data)
    binsparse.save_binsparse(t, str(tmp_path / "b.zarr"))
    with pytest.raises(FormatError, match="pointers"):
        read_zarr(tmp_path / "b.zarr")


def test_foreign_stores_and_paths(tmp_path):
    g = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    g.create_array("x", shape=(3,), dtype="f8")
    with pytest.raises(FormatError, match="no Binsparse descriptor"):
        read_zarr(tmp_path / "plain.zarr")
    (tmp_path / "file.zarr").write_text("hello")
    with pytest.raises(FormatError, match="directory"):
        read_zarr(tmp_path / "file.zarr")
    (tmp_path / "emptydir.zarr").mkdir()
    with pytest.raises(FormatError):
        read_zarr(tmp_path / "emptydir.zarr")
    with pytest.raises(FormatError, match="no such store"):
        read_zarr(tmp_path / "missing.zarr")


def test_nonfinite_values_in_a_store(tmp_path):
    a = make_matrix("real", "general", n=10)
    a.data[3] = np.nan
    path = write_zarr(MatrixData(a, "real"), tmp_path / "n.zarr")
    with pytest.raises(FormatError, match="allow_nonfinite"):
        read_zarr(path)
    assert np.isnan(read_zarr(path, allow_nonfinite=True).csr.data[3])
