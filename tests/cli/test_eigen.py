"""`slactl eigsh` as a user runs it: table, JSON, exit codes."""

from __future__ import annotations

import json

import numpy as np
import scipy.io
import scipy.sparse as sp
import pytest

from slactl.cli.main import main


@pytest.fixture()
def laplacian(tmp_path):
    a = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(300, 300))
    path = tmp_path / "lap.mtx"
    scipy.io.mmwrite(str(path), a)
    return path, np.linalg.eigvalsh(a.toarray())


def test_json_eigenvalues_and_residuals(laplacian, capsys):
    path, ref = laplacian
    assert main(["eigsh", str(path), "-k", "3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert np.allclose(s["eigenvalues"], ref[:3], rtol=1e-8)
    assert s["converged"] and len(s["residual_norms"]) == 3 and max(s["residual_norms"]) < 1e-10
    assert s["n"] == 300 and s["k"] == 3


def test_shift_invert_and_largest(laplacian, capsys):
    path, ref = laplacian
    assert main(["eigsh", str(path), "-k", "2", "--sigma", "1.0", "--method", "arpack", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert np.allclose(sorted(s["eigenvalues"]), np.sort(ref[np.argsort(np.abs(ref - 1.0))[:2]]), rtol=1e-8)
    assert s["method"] == "arpack-shift-invert"
    assert main(["eigsh", str(path), "-k", "2", "--which", "LA", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert np.allclose(s["eigenvalues"], ref[-2:], rtol=1e-8)
    assert main(["eigsh", str(path), "-k", "2", "--method", "lobpcg", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)  # SA on an SPD matrix: LOBPCG with AMG
    assert np.allclose(s["eigenvalues"], ref[:2], rtol=1e-8) and s["method"] == "lobpcg"
    assert s["preconditioner"] != "none"


def test_table_output(laplacian, capsys):
    path, _ = laplacian
    assert main(["eigsh", str(path), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "eigenvalue" in out and "residual" in out and "converged: yes" in out


def test_nonsymmetric_is_exit_5(tmp_path, capsys):
    path = tmp_path / "ns.mtx"
    scipy.io.mmwrite(str(path), sp.diags([-1.0, 2.0, -0.5], [-1, 0, 1], shape=(30, 30)))
    assert main(["eigsh", str(path), "-k", "2"]) == 5
    err = capsys.readouterr().err
    assert "symmetric" in err and len(err.strip().splitlines()) == 1


def test_not_converged_is_exit_3(laplacian, capsys):
    path, _ = laplacian
    assert main(["eigsh", str(path), "-k", "2", "--method", "lobpcg", "--preconditioner", "none",
                 "--maxiter", "2", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["converged"] is False


def test_bad_k_is_exit_2(laplacian, capsys):
    path, _ = laplacian
    assert main(["eigsh", str(path), "-k", "0"]) == 2


def test_partition_store_runs_distributed(tmp_path):
    """`slactl run --procs 2 -- eigsh STORE` (distributed LOBPCG, rank 0 prints) against LAPACK."""
    import subprocess
    import sys

    a = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(60, 60)) + sp.diags(np.linspace(0.0, 0.3, 60))
    scipy.io.mmwrite(str(tmp_path / "a.mtx"), a)
    assert main(["partition", str(tmp_path / "a.mtx"), "--parts", "2", "--method", "contiguous",
                 "--out", str(tmp_path / "a.parts.zarr")]) == 0
    r = subprocess.run([sys.executable, "-m", "slactl.cli", "run", "--procs", "2", "--", "eigsh",
                        str(tmp_path / "a.parts.zarr"), "-k", "3", "--which", "LA", "--tol", "1e-10", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 alone reports
    s = json.loads(lines[0])
    ref = np.linalg.eigvalsh(a.toarray())
    assert s["parts"] == 2 and s["method"] == "lobpcg" and s["converged"]
    np.testing.assert_allclose(s["eigenvalues"], ref[-3:], rtol=1e-9)
