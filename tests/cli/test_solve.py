"""`slactl solve` and `slactl backends` as a user runs them: output, JSON, files and exit codes."""

from __future__ import annotations

import json

import numpy as np
import scipy.io
import scipy.sparse.linalg as spla
import pytest

from slactl.cli.main import main
from tests.engine.linear.systems import convection_diffusion, poisson2d


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
