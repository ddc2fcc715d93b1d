"""Matrix Market reader and writer, checked against scipy.io.mmread/mmwrite and hand-made files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from io_helpers import COMBOS, assert_same_csr, make_matrix, write_text

from slactl.errors import FormatError, StoreExistsError, UsageError
from slactl.io import MatrixData, read_mtx, write_mtx
from slactl.io.mtx import read_header_only

BANNER = "%%MatrixMarket matrix coordinate real general\n"


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("suffix", [".mtx", ".mtx.gz"])
def test_round_trip_every_field_and_symmetry(tmp_path, combo, suffix):
    field, symmetry = combo
    a = make_matrix(field, symmetry, n=25)
    path = write_mtx(MatrixData(a, field, symmetry), tmp_path / f"a{suffix}")
    got = read_mtx(path)
    assert (got.field, got.symmetry) == (field, symmetry)
    assert_same_csr(got.csr, a)
    # Independent reader: SciPy parses what we wrote into the same matrix.
    ref = sp.csr_array(scipy.io.mmread(path, spmatrix=False))
    np.testing.assert_array_equal(ref.toarray(), a.toarray())


def test_symmetric_file_stores_lower_triangle_only(tmp_path):
    a = make_matrix("real", "symmetric", n=20)
    path = write_mtx(MatrixData(a, "real", "symmetric"), tmp_path / "s.mtx")
    lines = path.read_text().splitlines()
    size = next(i for i, line in enumerate(lines) if not line.startswith("%"))
    rows_cols = np.array([[int(t) for t in line.split()[:2]] for line in lines[size + 1 :]])
    assert (rows_cols[:, 0] >= rows_cols[:, 1]).all()
    assert int(lines[size].split()[2]) == sp.tril(a).nnz == len(rows_cols)


def test_reads_scipy_written_files(tmp_path, combo):
    field, symmetry = combo
    a = make_matrix(field, symmetry, n=18, seed=3)
    path = tmp_path / "scipy.mtx"
    scipy.io.mmwrite(path, a, field=field, symmetry=symmetry)
    got = read_mtx(path)
    assert got.field == field and got.symmetry == symmetry
    np.testing.assert_array_equal(got.csr.toarray(), a.toarray())


@pytest.mark.parametrize("symmetry", ["general", "symmetric", "skew-symmetric"])
def test_array_format_matches_scipy(tmp_path, symmetry):
    dense = make_matrix("real", symmetry, n=7, density=0.6, seed=5).toarray()
    path = tmp_path / "dense.mtx"
    scipy.io.mmwrite(path, dense, symmetry=symmetry)  # dense input: 'array' format
    assert "array" in path.read_text().splitlines()[0]
    got = read_mtx(path)
    np.testing.assert_array_equal(got.csr.toarray(), np.asarray(scipy.io.mmread(path, spmatrix=False)))
    assert got.csr.nnz == np.count_nonzero(dense)  # zeros of a dense file are not stored


def test_array_format_complex_hermitian_and_integer(tmp_path):
    text = "%%MatrixMarket matrix array complex hermitian\n2 2\n1 0\n2 3\n4 0\n"
    got = read_mtx(write_text(tmp_path, text))
    np.testing.assert_array_equal(got.csr.toarray(), [[1, 2 - 3j], [2 + 3j, 4]])
    text = "%%MatrixMarket matrix array integer general\n2 2\n1\n0\n-3\n9007199254740993\n"
    got = read_mtx(write_text(tmp_path, text))
    assert got.csr.dtype == np.int64
    np.testing.assert_array_equal(got.csr.toarray(), [[1, -3], [0, 9007199254740993]])


def test_duplicates_are_summed_like_scipy(tmp_path):
    text = BANNER + "3 3 4\n1 1 1.5\n2 3 1\n1 1 2.25\n2 3 -1\n"
    path = write_text(tmp_path, text)
    got = read_mtx(path)
    ref = sp.csr_array(scipy.io.mmread(path, spmatrix=False))  # COO; csr conversion sums duplicates
    np.testing.assert_array_equal(got.csr.toarray(), ref.toarray())
    assert got.csr[[0], [0]] == 3.75


def test_pattern_duplicates_stay_one(tmp_path):
    text = "%%MatrixMarket matrix coordinate pattern symmetric\n3 3 3\n2 1\n2 1\n3 3\n"
    got = read_mtx(write_text(tmp_path, text))
    np.testing.assert_array_equal(got.csr.toarray(), [[0, 1, 0], [1, 0, 0], [0, 0, 1]])


def _listed(a, triangle: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (row, col, value) entries a symmetric kind of file lists for ``a``: its diagonal and one
    triangle, the upper one, the lower one, or each pair from a random side ("mixed")."""
    coo = sp.coo_array(a)
    keep = coo.row >= coo.col
    rows, cols, vals = coo.row[keep], coo.col[keep], coo.data[keep]
    flip = {"lower": np.zeros(len(rows), bool), "upper": rows != cols,
            "mixed": (rows != cols) & (np.random.default_rng(1).random(len(rows)) < 0.5)}[triangle]
    # the entry (j, i) of a listed (i, j) is the matrix's own value there: swap and take a[j, i]
    mirror_vals = np.asarray(a[cols[flip], rows[flip]]).ravel()
    rows[flip], cols[flip] = cols[flip], rows[flip].copy()
    vals = vals.copy()
    vals[flip] = mirror_vals
    return rows, cols, vals


def _mtx_text(field: str, symmetry: str, shape, rows, cols, vals) -> str:
    lines = [f"%%MatrixMarket matrix coordinate {field} {symmetry}", f"{shape[0]} {shape[1]} {len(rows)}"]
    for i, j, v in zip(rows, cols, vals):
        if field == "pattern":
            value = ""
        elif field == "complex":
            value = f" {float(v.real)!r} {float(v.imag)!r}"
        else:
            value = f" {int(v)}" if field == "integer" else f" {float(v)!r}"
        lines.append(f"{i + 1} {j + 1}{value}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("triangle", ["upper", "mixed"])
@pytest.mark.parametrize("field, symmetry", [c for c in COMBOS if c[1] != "general"])
def test_symmetric_files_may_list_either_triangle_like_scipy(tmp_path, field, symmetry, triangle):
    """The spec stores the lower triangle, but SciPy (and other tools) read either: a symmetric
    kind of file listing upper entries, or some pairs from each side, is the same matrix."""
    a = make_matrix(field, symmetry, n=30, seed=4)
    rows, cols, vals = _listed(a, triangle)
    assert (rows < cols).any()
    path = write_text(tmp_path, _mtx_text(field, symmetry, a.shape, rows, cols, vals))
    got = read_mtx(path)
    assert (got.field, got.symmetry) == (field, symmetry)
    assert_same_csr(got.csr, a)
    ref = sp.csr_array(scipy.io.mmread(path, spmatrix=False))
    np.testing.assert_array_equal(got.csr.toarray(), ref.toarray())


@pytest.mark.parametrize("kind, value", [("real symmetric", "5"), ("real skew-symmetric", "5"),
                                         ("complex hermitian", "5 1"), ("pattern symmetric", ""),
                                         ("integer symmetric", "5")])
def test_a_pair_listed_from_both_triangles_is_refused_naming_the_line(tmp_path, kind, value):
    """(1, 2) and (2, 1) in a symmetric kind of file: each implies the other, so the pair is stated
    twice (perhaps contradicting itself); summing would double it, so the reader names the line."""
    text = f"%%MatrixMarket matrix coordinate {kind}\n3 3 4\n2 1 {value}\n3 2 {value}\n3 1 {value}\n1 2 {value}\n"
    with pytest.raises(FormatError, match=r"m\.mtx:6: entry \(1, 2\) is the mirror of entry \(2, 1\) on line 3"):
        read_mtx(write_text(tmp_path, text))


@pytest.mark.parametrize("block_bytes", [8, 1 << 20])
@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("suffix", [".mtx", ".mtx.gz"])
def test_a_pair_listed_twice_is_found_across_blocks_and_blank_lines(tmp_path, block_bytes, spill, suffix):
    body = "".join(f"{i} {j} 1.5\n" for i in range(2, 40) for j in range(1, i, 7))  # lower only
    body += "\n  \n" + "".join(f"{j} {i} 1.5\n" for i in range(2, 40) for j in range(3, i, 9))  # upper, no clash
    clash = body.count("\n") + 4  # file line of the entry appended next, 3 header lines before the body
    body += "8 20 1.5\n"  # the mirror of (20, 8)
    entries = sum(1 for line in body.splitlines() if line.strip())
    text = f"%%MatrixMarket matrix coordinate real symmetric\n% comment\n40 40 {entries}\n" + body
    first = 4 + body.splitlines().index("20 8 1.5")
    path = tmp_path / f"c{suffix}"
    path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    with pytest.raises(FormatError) as err:
        read_mtx(path, block_bytes=block_bytes, spill_dir=tmp_path if spill else None)
    assert str(err.value).startswith(f"{path}:{clash}: entry (8, 20) is the mirror of entry (20, 8) on line {first}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no spill files left


def test_duplicates_in_one_triangle_are_still_summed(tmp_path):
    text = "%%MatrixMarket matrix coordinate real symmetric\n3 3 4\n1 2 1.5\n1 2 2\n3 1 1\n3 1 1\n"
    got = read_mtx(write_text(tmp_path, text))
    np.testing.assert_array_equal(got.csr.toarray(), [[0, 3.5, 2], [3.5, 0, 0], [2, 0, 0]])


@pytest.mark.parametrize(
    "text, shape",
    [
        (BANNER + "0 0 0\n", (0, 0)),
        (BANNER + "5 3 0\n", (5, 3)),
        ("%%MatrixMarket matrix array real general\n0 4\n", (0, 4)),
        ("%%MatrixMarket matrix coordinate pattern symmetric\n4 4 0\n", (4, 4)),
    ],
)
def test_empty_matrices(tmp_path, text, shape):
    got = read_mtx(write_text(tmp_path, text))
    assert got.shape == shape and got.nnz == 0
    out = write_mtx(got, tmp_path / "back.mtx")
    assert read_mtx(out).shape == shape


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("spill", [False, True])
def test_block_size_and_spill_do_not_change_the_result(tmp_path, block_bytes, spill):
    a = make_matrix("complex", "hermitian", n=40, seed=9)
    path = write_mtx(MatrixData(a, "complex", "hermitian"), tmp_path / "h.mtx")
    got = read_mtx(path, block_bytes=block_bytes, spill_dir=tmp_path if spill else None)
    assert_same_csr(got.csr, a)
    assert not list(tmp_path.glob(".slactl-spill-*"))  # the spill directory is removed


def test_crlf_tabs_and_blank_lines(tmp_path):
    text = BANNER.replace("\n", "\r\n") + "%c\r\n\r\n3 3 2\r\n1\t1\t2.5\r\n\r\n 3 2 -1e3 \r\n\r\n"
    got = read_mtx(write_text(tmp_path, text))
    np.testing.assert_array_equal(got.csr.toarray(), [[2.5, 0, 0], [0, 0, 0], [0, -1000, 0]])


def test_case_insensitive_banner_and_aliases(tmp_path):
    text = "%%MatrixMarket MATRIX Coordinate Double GENERAL\n2 2 1\n2 2 4\n"
    got = read_mtx(write_text(tmp_path, text))
    assert got.field == "real" and got.csr[[1], [1]] == 4


def test_integer_values_are_exact_int64(tmp_path):
    big = 2**62 + 1  # not representable as a double
    text = f"%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 {big}\n2 1 -7\n"
    got = read_mtx(write_text(tmp_path, text))
    assert got.csr.dtype == np.int64 and got.csr[[0], [0]] == big


def test_header_only(tmp_path):
    path = write_text(tmp_path, "%%MatrixMarket matrix coordinate real symmetric\n%x\n4 4 3\n")
    h = read_header_only(path)
    assert (h.format, h.field, h.symmetry, h.nrows, h.ncols, h.entries, h.size_line) == (
        "coordinate", "real", "symmetric", 4, 4, 3, 3,
    )


# ------------------------------------------------------------------------------ refusals
HEADER_ERRORS = [
    ("", 1, "empty"),
    ("hello world\n", 1, "banner"),
    ("%%MatrixMarket matrix coordinate real\n1 1 1\n", 1, "4"),
    ("%%MatrixMarket vector coordinate real general\n", 1, "'vector'"),
    ("%%MatrixMarket matrix sparse real general\n", 1, "format"),
    ("%%MatrixMarket matrix coordinate float general\n", 1, "field"),
    ("%%MatrixMarket matrix coordinate real upper\n", 1, "symmetry"),
    ("%%MatrixMarket matrix array pattern general\n", 1, "pattern"),
    ("%%MatrixMarket matrix coordinate real hermitian\n", 1, "complex"),
    ("%%MatrixMarket matrix coordinate pattern skew-symmetric\n", 1, "pattern"),
    (BANNER + "%only comments\n", 3, "size line"),
    (BANNER + "3 3\n", 2, "3 integers"),
    (BANNER + "3 -3 1\n", 2, "'-3'"),
    (BANNER + "3 3.0 1\n", 2, "'3.0'"),
    ("%%MatrixMarket matrix coordinate real symmetric\n3 4 1\n", 2, "square"),
    (BANNER + "1000000000000 3 1\n1 1 1\n", 2, "row pointers"),
    ("%%MatrixMarket matrix coordinate real general\xff\n", 1, "non-ASCII"),
]


@pytest.mark.parametrize("text, line, words", HEADER_ERRORS)
def test_header_errors_name_file_and_line(tmp_path, text, line, words):
    path = write_text(tmp_path, text.encode("latin-1"))
    with pytest.raises(FormatError) as info:
        read_mtx(path)
    assert info.value.line == line and info.value.path == str(path)
    assert f"{path}:{line}:" in str(info.value) and words in str(info.value)


BODY_ERRORS = [
    ("3 3 2\n1 1 1\n3 2 nan\n", 4, "not finite"),
    ("3 3 2\n1 1 -inf\n3 2 1\n", 3, "not finite"),
    ("3 3 1\n1 1 1e999\n", 3, "not finite"),  # overflows to inf
    ("3 3 2\n1 1 1\n\n4 2 1\n", 5, "outside the 3 x 3"),
    ("3 3 1\n0 1 1\n", 3, "outside"),
    ("3 3 1\n1 -2 1\n", 3, "outside"),
    ("3 3 1\n1 1 0x10\n", 3, "'0x10' is not a number"),
    ("3 3 1\n1 1 1.0D+02\n", 3, "not a number"),
    ("3 3 1\n1 1 1.2.3\n", 3, "not a number"),
    ("3 3 1\n1.5 1 1\n", 3, "row index '1.5'"),
    ("3 3 1\n1 1 1 7\n", 3, "expected 3 numbers"),
    ("3 3 1\n1 1\n", 3, "expected 3 numbers"),
    ("3 3 2\n1 1 1\n% late comment\n2 2 1\n", 4, "comment"),
    ("3 3 3\n1 1 1\n2 2 2\n", 5, "file ends after 2 of the 3"),
    ("3 3 1\n1 1 1\n2 2 2\n", 4, "more data lines"),
    ("3 3 1\n1 99999999999999999999 1\n", 3, "64-bit"),
    ("3 3 1\n1 1 \xe9\n", 3, "not a number"),
]


@pytest.mark.parametrize("body, line, words", BODY_ERRORS)
def test_body_errors_name_file_and_line(tmp_path, body, line, words):
    path = write_text(tmp_path, (BANNER + body).encode("latin-1"))
    with pytest.raises(FormatError) as info:
        read_mtx(path)
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("block_bytes", [5, 40])
def test_line_numbers_survive_block_boundaries(tmp_path, block_bytes):
    lines = [f"{i % 9 + 1} {i % 7 + 1} {i}.5" for i in range(40)]
    lines[31] = "4 4 oops"
    path = write_text(tmp_path, BANNER + "% comment\n9 9 40\n" + "\n".join(lines) + "\n")
    with pytest.raises(FormatError) as info:
        read_mtx(path, block_bytes=block_bytes)
    assert info.value.line == 3 + 1 + 31


def test_nonfinite_allowed_on_request(tmp_path):
    path = write_text(tmp_path, BANNER + "2 2 2\n1 1 nan\n2 2 -inf\n")
    got = read_mtx(path, allow_nonfinite=True)
    assert np.isnan(got.csr[[0], [0]]) and got.csr[[1], [1]] == -np.inf


@pytest.mark.parametrize(
    "text, words",
    [
        ("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1.5\n", "not a 64-bit integer"),
        ("%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n2 2 1\n", "zero diagonal"),
        ("%%MatrixMarket matrix coordinate complex hermitian\n2 2 1\n1 1 1 2\n", "real diagonal"),
        ("%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n", "file ends after 3 of the 4"),
        ("%%MatrixMarket matrix array complex general\n1 1\n1\n", "expected 2 numbers"),
        ("%%MatrixMarket matrix coordinate pattern general\n2 2 1\n1 1 1\n", "expected 2 numbers"),
    ],
)
def test_field_and_symmetry_rules(tmp_path, text, words):
    with pytest.raises(FormatError, match=words):
        read_mtx(write_text(tmp_path, text))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        read_mtx(tmp_path / "missing.mtx")
    with pytest.raises(FormatError, match="directory"):
        read_mtx(tmp_path)


def test_damaged_gzip(tmp_path):
    good = gzip.compress((BANNER + "2 2 1\n1 1 1\n" * 1).encode())
    for name, data in [("notgz.mtx.gz", b"plain text\n"), ("cut.mtx.gz", good[: len(good) // 2])]:
        path = write_text(tmp_path, data, name)
        with pytest.raises(FormatError):
            read_mtx(path)


# ------------------------------------------------------------------------------ writer
def test_write_refuses_existing_and_replaces_with_force(tmp_path):
    data = MatrixData(make_matrix("real", "general", n=5), "real")
    path = write_mtx(data, tmp_path / "a.mtx")
    with pytest.raises(StoreExistsError):
        write_mtx(data, path)
    data2 = MatrixData(2 * data.csr, "real")
    write_mtx(data2, path, force=True)
    assert_same_csr(read_mtx(path).csr, 2 * data.csr)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mtx"]  # no temporary left behind


def test_write_refuses_a_symmetry_the_matrix_lacks(tmp_path):
    a = make_matrix("real", "general", n=6, density=0.5)
    with pytest.raises(UsageError, match="not exactly symmetric"):
        write_mtx(MatrixData(a, "real", "symmetric"), tmp_path / "a.mtx")
    assert not (tmp_path / "a.mtx").exists()


def test_float32_values_round_trip_exactly(tmp_path):
    a = make_matrix("real", "general", n=10)
    a.data = np.random.default_rng(1).standard_normal(a.nnz) / 3  # awkward binary fractions
    a = a.astype(np.float32)
    path = write_mtx(MatrixData(a, "real"), tmp_path / "f.mtx")
    got = read_mtx(path)
    np.testing.assert_array_equal(got.csr.data.astype(np.float32), a.data)
    np.testing.assert_array_equal(got.csr.data, a.data.astype(np.float64))


@pytest.mark.parametrize("body, line, entry, first", [
    ("2 1 1\n3 1 1\n2 1 1\n1 3 1\n1 2 1\n3 3 1\n", 6, (1, 3), 4),
    ("2 1 1\n1 2 1\n2 1 1\n", 4, (1, 2), 3),
])
def test_the_first_contradiction_in_the_file_is_named(tmp_path, body, line, entry, first):
    """The error names the line where the file first contradicts itself, and the first listing of
    the mirror it contradicts, whatever else is listed twice."""
    text = f"%%MatrixMarket matrix coordinate real symmetric\n3 3 {body.count(chr(10))}\n" + body
    i, j = entry
    with pytest.raises(FormatError, match=rf"m\.mtx:{line}: entry \({i}, {j}\) is the mirror of entry \({j}, {i}\) "
                                          rf"on line {first}:"):
        read_mtx(write_text(tmp_path, text))
