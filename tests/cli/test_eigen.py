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


HERMITIAN = "%%MatrixMarket matrix coordinate complex hermitian\n2 2 2\n1 1 1.0 0\n2 1 1.0 2.0\n"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_complex_hermitian_is_refused_not_cast_to_real(tmp_path, capsys):
    # casting to float64 dropped the imaginary part: eigenvalue -0.618 instead of 1 - sqrt(5)
    path = tmp_path / "herm.mtx"
    path.write_text(HERMITIAN)
    assert main(["eigsh", str(path), "-k", "1", "--json"]) == 8
    out = capsys.readouterr()
    line = _one_line(out.err)
    assert out.out == "" and "complex matrices are not supported by eigsh yet" in line and "herm.mtx" in line


@pytest.mark.parametrize("args, needle", [
    (["--method", "arpack", "--maxiter", "0"], "--maxiter must be at least 1, got 0"),
    (["--maxiter", "-3"], "--maxiter must be at least 1"),
    (["--tol", "0"], "--tol must be positive"),
    (["--method", "nope"], "--method must be one of auto, lobpcg, arpack, dense"),
])
def test_bad_options_are_one_line_exit_2(laplacian, capsys, args, needle):
    path, _ = laplacian
    assert main(["eigsh", str(path), "-k", "2", *args]) == 2
    assert needle in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("args, needle", [
    (["-k", "4", "--method", "arpack"], "use --method dense"),
    (["-k", "2", "--method", "lobpcg"], "use --method dense"),
    (["-k", "1", "--method", "lobpcg", "--which", "LM"], "--which LM use --method arpack"),
])
def test_advice_names_cli_options(tmp_path, capsys, args, needle):
    path = tmp_path / "small.mtx"
    scipy.io.mmwrite(str(path), sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4)))
    assert main(["eigsh", str(path), *args]) == 2
    line = _one_line(capsys.readouterr().err)
    assert needle in line and "method='" not in line and "which='" not in line


def test_engine_advice_is_translated_to_cli_options():
    from slactl.cli.eigen import _cli_words

    assert _cli_words("use method='dense'") == "use --method dense"
    assert _cli_words("(which='SA' or 'LA'); for sigma or which='LM' use method='arpack' or 'auto'") == (
        "(--which SA or --which LA); for --sigma or --which LM use --method arpack or --method auto")


def test_the_methods_are_the_engines(monkeypatch):
    """--method accepts what the engine's eigsh accepts, not a copy that can fall behind."""
    import importlib

    from slactl.cli.eigen import _check_options
    from slactl.errors import UsageError

    engine = importlib.import_module("slactl.engine.eigen.eigsh")
    monkeypatch.setattr(engine, "METHODS", (*engine.METHODS, "newmethod"))
    _check_options("newmethod", None, None)
    with pytest.raises(UsageError, match="one of auto, lobpcg, arpack, dense, newmethod, got 'nosuch'"):
        _check_options("nosuch", None, None)


def test_json_stays_strict_when_a_residual_is_nan(laplacian, capsys, monkeypatch):
    """A diverged eigensolve can leave NaN or inf residuals: --json prints null, not NaN."""
    import slactl

    class Diverged:
        def summary(self):
            return {"eigenvalues": [1.0, float("nan")], "residual_norms": [float("inf"), float("nan")],
                    "converged": True}

    monkeypatch.setattr(slactl, "eigsh", lambda *a, **k: Diverged())
    path, _ = laplacian
    assert main(["eigsh", str(path), "-k", "2", "--json"]) == 0
    out = capsys.readouterr().out
    s = json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}: {out}"))
    assert s["eigenvalues"] == [1.0, None] and s["residual_norms"] == [None, None]
