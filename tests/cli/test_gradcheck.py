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
