"""`slactl solve` and `slactl backends` as a user runs them: output, JSON, files and exit codes."""

from __future__ import annotations

import json

import numpy as np
import scipy.io
import scipy.sparse.linalg as spla
import pytest

from slactl.cli.main import main
from tests.engine.linear.systems import convection_diffusion


@pytest.fixture()
def mtx(tmp_path):
    a = convection_diffusion(12)
    path = tmp_path / "cd.mtx"
    scipy.io.mmwrite(str(path), a)
    return path, a


def test_default_problem_solves(capsys):
    assert main(["solve", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 65536 and out["converged"] and out["relres"] <= 1e-8


def test_json_fields_and_solution(mtx, tmp_path, capsys):
    path, a = mtx
    out_path = tmp_path / "x.npy"
    assert main(["solve", str(path), "--json", "--out", str(out_path)]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("backend", "method", "preconditioner", "iterations", "relres", "converged",
                "setup_seconds", "solve_seconds", "n", "nnz"):
        assert key in s
    x = np.load(out_path)
    ref = spla.spsolve(a.tocsc(), np.ones(a.shape[0]))
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-10
    assert s["n"] == a.shape[0] and s["nnz"] == a.nnz


@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_iterative_methods_and_table(mtx, capsys, method):
    path, _ = mtx
    assert main(["solve", str(path), "--method", method, "--rhs", "random", "--explain"]) == 0
    captured = capsys.readouterr()
    assert "relative residual" in captured.out and method in captured.out


def test_not_converged_exit_3(capsys):
    code = main(["solve", "--method", "cg", "--preconditioner", "none", "--maxiter", "2", "--json"])
    assert code == 3
    assert json.loads(capsys.readouterr().out)["converged"] is False


def test_missing_file_is_one_line_exit_2(capsys):
    assert main(["solve", "no/such/file.mtx"]) == 2
    err = capsys.readouterr().err
    assert "no/such/file.mtx" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_rhs_file_with_wrong_length(mtx, tmp_path, capsys):
    path, _ = mtx
    np.save(tmp_path / "b.npy", np.ones(3))
    assert main(["solve", str(path), "--rhs", str(tmp_path / "b.npy")]) == 2
    assert "right-hand side has 3 rows" in capsys.readouterr().err


def test_out_refuses_to_overwrite(mtx, tmp_path, capsys):
    path, _ = mtx
    (tmp_path / "x.npy").write_bytes(b"keep")
    assert main(["solve", str(path), "--out", str(tmp_path / "x.npy")]) == 6
    assert (tmp_path / "x.npy").read_bytes() == b"keep"


def test_cuda_backend_unavailable_exit_4(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["solve", "--device", "cuda"]) == 4


def test_backends_json(capsys):
    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["superlu"]["available"] and rows["torch"]["available"]
    assert set(rows) == {"superlu", "cudss", "cupyx", "torch"}


# ----------------------------------------------------------------- outputs, inputs and options
def test_out_with_force_never_replaces_a_directory_that_is_not_a_store(mtx, tmp_path, capsys):
    path, _ = mtx
    folder = tmp_path / "mydata.zarr"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep")
    assert main(["solve", str(path), "--out", str(folder), "--force"]) == 2
    assert "not a Zarr store" in capsys.readouterr().err
    assert (folder / "thesis.tex").read_text() == "keep"


def test_out_in_a_missing_directory_is_refused_before_the_solve(mtx, tmp_path, capsys, monkeypatch):
    import slactl

    path, _ = mtx
    monkeypatch.setattr(slactl, "solve", lambda *a, **k: pytest.fail("solved before checking --out"))
    assert main(["solve", str(path), "--out", str(tmp_path / "nodir" / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "nodir does not exist" in err and ".tmp" not in err and ".partial" not in err
    assert main(["solve", str(path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "must end in one of" in capsys.readouterr().err


def test_out_zarr_replaces_a_store_with_force(mtx, tmp_path):
    path, a = mtx
    out = tmp_path / "x.zarr"
    assert main(["solve", str(path), "--out", str(out)]) == 0
    assert main(["solve", str(path), "--out", str(out), "--rhs", "random", "--force"]) == 0
    import torch

    from slactl.io.vectors import read_vector

    x = read_vector(out)  # the second solution replaced the first: it solves the random system
    b = torch.randn(a.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0)).numpy()
    assert np.linalg.norm(b - a @ x) <= 1e-8 * np.linalg.norm(b)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_nan_right_hand_side_is_bad_input_naming_file_and_row(mtx, tmp_path, capsys):
    path, a = mtx
    b = np.ones(a.shape[0])
    b[4] = np.nan
    np.save(tmp_path / "b.npy", b)
    assert main(["solve", str(path), "--rhs", str(tmp_path / "b.npy")]) == 2
    err = capsys.readouterr().err
    assert "b.npy" in err and "row 5 holds a NaN or an infinity" in err


def test_json_has_no_nan():
    from slactl.benchmark.report import json_safe

    assert json.loads(json.dumps(json_safe({"relres": float("nan"), "r": [1.0, float("inf")]}))) == {
        "relres": None, "r": [1.0, None]}


def test_complex_matrix_is_solved_in_complex(tmp_path, capsys):
    """A complex Matrix Market file stays complex (it was cast to real, dropping the imaginary
    part, and the wrong answer exited 0)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    a = sp.random(30, 30, density=0.2, rng=rng) + 1j * sp.random(30, 30, density=0.2, rng=rng) + 5 * sp.eye(30)
    path = tmp_path / "c.mtx"
    scipy.io.mmwrite(str(path), sp.csr_array(a))
    out = tmp_path / "x.npy"
    assert main(["solve", str(path), "--json", "--out", str(out)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["dtype"] == "complex128"
    ref = spla.spsolve(sp.csc_matrix(a), np.ones(30))
    x = np.load(out)
    assert np.iscomplexobj(x) and np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-10


def test_complex_right_hand_side_makes_the_system_complex(mtx, tmp_path, capsys):
    path, a = mtx
    rng = np.random.default_rng(4)
    b = rng.standard_normal(a.shape[0]) + 1j * rng.standard_normal(a.shape[0])
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "x.npy"
    assert main(["solve", str(path), "--rhs", str(tmp_path / "b.npy"), "--out", str(out)]) == 0
    ref = spla.spsolve(a.tocsc().astype(complex), b)
    x = np.load(out)
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-10


@pytest.mark.parametrize("argv,message", [
    (["--preconditioner", "foo"], "unknown preconditioner 'foo'"),
    (["--method", "direct", "--preconditioner", "jacobi"], "serves iterative methods, and this solve is direct"),
    (["--backend", "superlu", "--preconditioner", "ilu0"], "serves iterative methods, and this solve is direct"),
])
def test_preconditioner_options_are_checked_on_every_path(mtx, capsys, argv, message):
    path, _ = mtx
    assert main(["solve", str(path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_preconditioner_asked_for_makes_auto_iterative(mtx, capsys):
    """144 unknowns would be a direct solve; asking for ILU(0) means an iterative one with it."""
    path, _ = mtx
    assert main(["solve", str(path), "--preconditioner", "ilu0", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["method"] == "gmres" and s["preconditioner"] == "ilu0" and s["relres"] <= 1e-8
