"""`slactl info`, `slactl convert`, `slactl gallery` through slactl.cli.main.main(argv)."""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest
import scipy.io
import scipy.sparse as sp

from slactl.cli.files import _solver_choice
from slactl.cli.main import main
from slactl.io import read

BAD = "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2 9 1\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_gallery_list(capsys):
    code, out, err = run(capsys, "gallery", "--list")
    assert code == 0 and err == ""
    for name in ("poisson2d", "poisson3d", "anisotropic2d", "highcontrast2d", "convdiff2d", "rgg_laplacian",
                 "elasticity2d"):
        assert name in out


@pytest.mark.parametrize("suffix", [".mtx", ".mtx.gz", ".zarr", ".npz"])
def test_gallery_writes_every_format(capsys, tmp_path, suffix):
    out_path = tmp_path / f"p{suffix}"
    code, out, err = run(capsys, "gallery", "poisson2d", "--size", "9", "--out", out_path)
    assert code == 0, err
    assert "81 x 81" in out
    data = read(out_path)
    ref = sp.csr_array(sp.kronsum(sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(9, 9)),
                                  sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(9, 9))))
    assert abs(data.csr - ref).max() == 0
    assert data.symmetry == "symmetric" and data.source == "slactl gallery poisson2d --size 9"


def test_gallery_params_force_and_errors(capsys, tmp_path):
    out_path = tmp_path / "c.mtx"
    assert run(capsys, "gallery", "convdiff2d", "--size", "5", "--param", "epsilon=0.5", "--out", out_path)[0] == 0
    code, _, err = run(capsys, "gallery", "convdiff2d", "--size", "5", "--out", out_path)
    assert code == 6 and err.count("\n") == 1 and "--force" in err
    assert run(capsys, "gallery", "convdiff2d", "--size", "5", "--out", out_path, "--force")[0] == 0
    for argv, words in [
        (["gallery", "nope", "--out", tmp_path / "x.mtx"], "no gallery problem"),
        (["gallery", "poisson2d"], "--out"),
        (["gallery", "poisson2d", "--out", tmp_path / "x.txt"], "cannot tell the format"),
        (["gallery", "poisson2d", "--param", "oops", "--out", tmp_path / "x.mtx"], "KEY=VALUE"),
        (["gallery", "poisson2d", "--size", "-3", "--out", tmp_path / "x.mtx"], "positive"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.startswith("slactl: usage: ") and words in err and err.count("\n") == 1, err


def test_info_json_matches_an_independent_computation(capsys, tmp_path):
    rng = np.random.default_rng(0)
    a = sp.random_array((30, 30), density=0.2, rng=rng, format="csr")
    a = sp.csr_array(a + a.T + 10 * sp.eye_array(30))  # symmetric, strictly dominant: SPD
    scipy.io.mmwrite(tmp_path / "a.mtx", a, symmetry="symmetric")
    code, out, err = run(capsys, "info", tmp_path / "a.mtx", "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["shape"] == [30, 30] and report["nnz"] == a.nnz and report["format"] == "mtx"
    assert report["declared_symmetry"] == "symmetric" and report["numerically_symmetric"] is True
    assert report["spd"]["verdict"] == "yes" and np.linalg.eigvalsh(a.toarray()).min() > 0
    assert report["solver"] == "direct on superlu (cpu)"  # small and SPD: a sparse LU
    assert report["memory_bytes"]["dense_float64"] == 30 * 30 * 8


def test_info_table(capsys, tmp_path):
    run(capsys, "gallery", "convdiff2d", "--size", "6", "--out", tmp_path / "c.zarr")
    code, out, err = run(capsys, "info", tmp_path / "c.zarr")
    assert code == 0 and err == ""
    for words in ("36 x 36", "zarr", "not symmetric", "SPD", "no: not symmetric", "dense float64"):
        assert words in out


@pytest.mark.parametrize("src, dst", [(".mtx", ".zarr"), (".zarr", ".mtx.gz"), (".mtx.gz", ".npz"), (".npz", ".mtx")])
def test_convert(capsys, tmp_path, src, dst):
    run(capsys, "gallery", "elasticity2d", "--size", "4", "--out", tmp_path / f"e{src}")
    code, out, err = run(capsys, "convert", tmp_path / f"e{src}", tmp_path / f"e{dst}")
    assert code == 0 and err == "" and "wrote" in out
    got, want = read(tmp_path / f"e{dst}"), read(tmp_path / f"e{src}")
    assert abs(got.csr - want.csr).max() == 0 and got.symmetry == want.symmetry == "symmetric"


@pytest.mark.parametrize("command", ["info", "convert"])
def test_bad_files_give_one_line_and_exit_2(capsys, tmp_path, command):
    (tmp_path / "bad.mtx").write_text(BAD)
    argv = [command, tmp_path / "bad.mtx"] + ([tmp_path / "bad.zarr"] if command == "convert" else [])
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err == f"slactl: bad input: {tmp_path / 'bad.mtx'}:4: entry (2, 9) lies outside the 3 x 3 matrix " \
                  "declared on line 2 (indices are 1-based)\n"
    assert not (tmp_path / "bad.zarr").exists()


def test_nonfinite_needs_the_flag(capsys, tmp_path):
    (tmp_path / "n.mtx").write_text("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 nan\n")
    code, _, err = run(capsys, "info", tmp_path / "n.mtx")
    assert code == 2 and "--allow-nonfinite" in err
    assert run(capsys, "info", tmp_path / "n.mtx", "--allow-nonfinite", "--json")[0] == 0
    assert run(capsys, "convert", tmp_path / "n.mtx", tmp_path / "n.npz", "--allow-nonfinite")[0] == 0


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "info", tmp_path / "none.zarr")
    assert code == 2 and err.count("\n") == 1 and "no such store" in err


def test_solver_choice_matches_dispatch():
    import scipy.sparse as sp

    from slactl import SparseMatrix

    big = SparseMatrix.from_scipy(sp.diags_array([-1.0, 2.5, -1.0], offsets=[-1, 0, 1], shape=(60_000, 60_000)).tocsr())
    assert _solver_choice(big) == "cg + sa-amg on torch (cpu)"
    assert _solver_choice(SparseMatrix.from_dense(torch.ones(2, 3, dtype=torch.float64))) is None

def test_missing_zarr_is_one_clear_error(capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr now raises ImportError
    code, _, err = run(capsys, "gallery", "poisson2d", "--size", "8", "--out", tmp_path / "p.zarr")
    assert code == 4 and err.count("\n") == 1 and "pip install zarr" in err
    assert not (tmp_path / "p.zarr").exists()


# --------------------------------------------------------------------------- audit regressions
def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _npz(path, data, *, fmt=b"csr", indices=(0, 1), indptr=(0, 1, 2), meta=None):
    arrays = dict(format=np.array(fmt), shape=np.array([2, 2]), data=np.asarray(data),
                  indices=np.array(indices, np.int32), indptr=np.array(indptr, np.int32))
    if meta is not None:
        arrays["slactl"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


def test_info_complex_hermitian(capsys, tmp_path):
    path = tmp_path / "herm.mtx"
    path.write_text("%%MatrixMarket matrix coordinate complex hermitian\n2 2 3\n1 1 4.0 0\n2 1 1.0 2.0\n2 2 5.0 0\n")
    code, out, err = run(capsys, "info", path, "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["field"] == "complex" and report["numerically_hermitian"] is True
    assert report["spd"]["verdict"] == "yes" and report["solver"]
    code, out, err = run(capsys, "info", path)
    assert code == 0 and "hermitian" in out and err == ""


def test_info_reads_float16_npz_exactly(capsys, tmp_path):
    path = _npz(tmp_path / "f16.npz", np.array([1.5, -0.25], np.float16))
    code, out, err = run(capsys, "info", path, "--json")
    assert code == 0 and err == "", err
    assert json.loads(out)["dtype"] == "float32"
    assert read(path).csr.toarray().tolist() == [[1.5, 0.0], [0.0, -0.25]]


@pytest.mark.parametrize("kind, needle", [
    ("format", "the 'format' entry must be one string"),
    ("strings", "array 'data' holds values of dtype <U1"),
])
def test_info_malformed_npz_names_the_file(capsys, tmp_path, kind, needle):
    if kind == "format":
        path = _npz(tmp_path / "fmtarr.npz", [1.0, 2.0], fmt=[b"csr", b"csr"])
    else:
        path = _npz(tmp_path / "strdata.npz", np.array(["a", "b"]))
    code, _, err = run(capsys, "info", path)
    line = _one_line(err)
    assert code == 2 and needle in line and line.startswith(f"slactl: bad input: {path}: ")


def test_false_symmetry_metadata_is_refused_on_read(capsys, tmp_path):
    path = _npz(tmp_path / "liesym.npz", [1.0, 2.0, 3.0, 4.0], indices=(0, 1, 0, 1), indptr=(0, 2, 4),
                meta={"field": "real", "symmetry": "symmetric"})
    code, _, err = run(capsys, "convert", path, tmp_path / "liesym.mtx")
    line = _one_line(err)
    assert code == 2 and f"{path}: the metadata declares the matrix symmetric" in line
    assert "symmetry=" not in line and not (tmp_path / "liesym.mtx").exists()


def test_integer_duplicates_that_overflow_are_refused(capsys, tmp_path):
    path = tmp_path / "intovf.mtx"
    path.write_text("%%MatrixMarket matrix coordinate integer general\n1 1 2\n1 1 9223372036854775807\n1 1 1\n")
    code, out, err = run(capsys, "info", path, "--json")
    line = _one_line(err)
    assert code == 2 and out == "" and str(path) in line and "entry (1, 1)" in line and "int64 range" in line
    ok = tmp_path / "intok.mtx"  # large values whose sum fits are summed exactly
    ok.write_text("%%MatrixMarket matrix coordinate integer general\n1 1 2\n1 1 9223372036854775806\n1 1 1\n")
    assert int(read(ok).csr[0, 0]) == 2**63 - 1


def test_a_pair_listed_from_both_triangles_names_the_line(capsys, tmp_path):
    path = tmp_path / "upper.mtx"
    path.write_text("%%MatrixMarket matrix coordinate real symmetric\n2 2 3\n1 1 1\n2 1 1\n1 2 1\n")
    code, _, err = run(capsys, "info", path)
    line = _one_line(err)
    assert code == 2 and f"{path}:5: entry (1, 2) is the mirror of entry (2, 1) on line 4" in line


@pytest.mark.parametrize("name, param, needle", [
    ("rgg_laplacian", "seed=-1", "seed must be a non-negative integer, got -1"),
    ("anisotropic2d", "epsilon=abc", "parameter epsilon must be a number, got 'abc'"),
    ("highcontrast2d", "blocks=2.5", "parameter blocks must be an integer"),
    ("convdiff2d", "angle=nan", "parameter angle must be a finite number, got nan"),
    ("convdiff2d", "epsilon=inf", "must be a finite number"),
    ("convdiff2d", "epsilon=1e308", "non-finite (NaN or Inf) entries"),
    ("poisson2d", "omega=1", "poisson2d has no parameter 'omega'"),
])
def test_gallery_bad_parameters_write_nothing(capsys, tmp_path, name, param, needle):
    out_path = tmp_path / "g.zarr"
    code, _, err = run(capsys, "gallery", name, "--size", "6", "--out", out_path, "--param", param)
    line = _one_line(err)
    assert code == 2 and line.startswith("slactl: usage: ") and needle in line, line
    assert not out_path.exists()
