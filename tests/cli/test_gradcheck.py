"""`slactl gradcheck` as a user runs it: every gallery matrix passes, a wrong gradient fails."""

from __future__ import annotations

import json

import pytest
import scipy.io

from slactl.cli.main import main
from slactl.io.gallery import generate, names

SMALL = {"poisson2d": 5, "poisson3d": 3, "anisotropic2d": 5, "highcontrast2d": 6, "convdiff2d": 5,
         "rgg_laplacian": 40, "elasticity2d": 3}


@pytest.mark.parametrize("name", names())
def test_every_gallery_matrix_passes(name, capsys):
    assert main(["gradcheck", "--gallery", name, "--size", str(SMALL.get(name, 5)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["dtype"] == "float64" and out["device"] == "cpu"
    ops = {r["operation"] for r in out["rows"]}
    assert ops == {"solve", "eigsh", "nonlinear"}
    for r in out["rows"]:
        if r["relative_error"] is None:  # eigsh on the nonsymmetric convection-diffusion matrix
            assert name == "convdiff2d" and r["operation"] == "eigsh"
        else:
            assert r["relative_error"] <= 1e-6 and r["passed"]


def test_matrix_file_and_table(tmp_path, capsys):
    path = tmp_path / "cd.mtx"
    scipy.io.mmwrite(str(path), generate("convdiff2d", 4).matrix)
    assert main(["gradcheck", str(path), "--op", "solve"]) == 0
    out = capsys.readouterr().out
    assert "slactl gradcheck" in out and "values" in out and "yes" in out


def test_wrong_gradient_exits_nonzero(monkeypatch, capsys):
    import slactl.engine.linear.adjoint as adjoint

    original = adjoint.sampled_product
    monkeypatch.setattr(adjoint, "sampled_product", lambda *a, **k: 1.01 * original(*a, **k))
    assert main(["gradcheck", "--gallery", "poisson2d", "--size", "4", "--op", "solve", "--json"]) == 9
    captured = capsys.readouterr()
    assert json.loads(captured.out)["passed"] is False
    assert "gradient check failed" in captured.err and "solve w.r.t. values" in captured.err


def test_input_usage_errors(tmp_path, capsys):
    assert main(["gradcheck"]) == 2
    assert main(["gradcheck", str(tmp_path / "x.mtx"), "--gallery", "poisson2d"]) == 2
    assert main(["gradcheck", "--gallery", "nosuch", "--size", "3"]) == 2


def test_partition_store_runs_distributed(tmp_path):
    """`slactl run --procs 2 -- gradcheck STORE --op eigsh`: distributed eigenvalue and eigenvector
    gradients against finite differences (a wrong gradient fails the run with exit 9). The solve and
    Newton-Krylov gradients are compared with single-process ones in tests/dist; only the eigsh
    check runs here, to keep the run short."""
    import subprocess
    import sys

    scipy.io.mmwrite(str(tmp_path / "p.mtx"), generate("poisson2d", 6).matrix)
    assert main(["partition", str(tmp_path / "p.mtx"), "--parts", "2", "--out", str(tmp_path / "p.parts.zarr")]) == 0
    r = subprocess.run([sys.executable, "-m", "slactl.cli", "run", "--procs", "2", "--", "gradcheck",
                        str(tmp_path / "p.parts.zarr"), "--op", "eigsh", "--directions", "1", "--json"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    s = json.loads(lines[0])
    assert s["passed"] and s["info"]["parts"] == 2 and s["shape"] == [36, 36]
    (row,) = s["rows"]
    assert (row["operation"], row["wrt"]) == ("eigsh", "values") and row["relative_error"] <= 1e-6


def test_json_stays_strict_when_an_error_is_not_finite(monkeypatch, capsys):
    """A relative error of inf (a zero reference derivative) or NaN prints as null, never as NaN."""
    import slactl

    class Report:
        passed = True

        def to_dict(self):
            return {"rows": [{"relative_error": float("inf")}, {"relative_error": float("nan")}]}

    monkeypatch.setattr(slactl, "gradcheck", lambda *a, **k: Report())
    assert main(["gradcheck", "--gallery", "poisson2d", "--size", "4", "--device", "cpu", "--json"]) == 0
    out = capsys.readouterr().out
    s = json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}: {out}"))
    assert [r["relative_error"] for r in s["rows"]] == [None, None]
