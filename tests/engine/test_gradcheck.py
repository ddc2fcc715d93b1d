"""slactl.gradcheck: passes on correct adjoints, fails on corrupted ones, counts solves."""

from __future__ import annotations

import pytest
import torch

import slactl
from slactl.engine.gradcheck import gradcheck
from slactl.errors import UsageError
from slactl.io.gallery import generate


def matrix(name: str, size: int, dtype=torch.float64) -> slactl.SparseMatrix:
    return slactl.SparseMatrix.from_scipy(generate(name, size).matrix, dtype=dtype)


def test_all_operations_pass_with_solve_counts():
    report = gradcheck("all", matrix("poisson2d", 5))
    assert report.passed
    rows = {(r.operation, r.wrt): r for r in report.rows}
    assert set(rows) == {("solve", "b"), ("solve", "values"), ("eigsh", "values"), ("nonlinear", "f"),
                         ("nonlinear", "values")}
    for r in report.rows:
        assert r.relative_error is not None and r.relative_error <= 1e-6
    assert rows["solve", "b"].forward_solves == 1 and rows["solve", "b"].backward_solves == 1
    # Newton takes several linear solves forward, the implicit-function backward exactly one.
    assert rows["nonlinear", "f"].forward_solves > 2 and rows["nonlinear", "f"].backward_solves == 1


def test_eigsh_skipped_for_nonsymmetric():
    report = gradcheck("eigsh", matrix("convdiff2d", 5))
    assert report.passed and report.rows[0].skipped and "symmetric" in report.rows[0].note


def test_corrupted_solve_gradient_fails(monkeypatch):
    import slactl.engine.linear.adjoint as adjoint

    original = adjoint.sampled_product
    monkeypatch.setattr(adjoint, "sampled_product", lambda *a, **k: 1.001 * original(*a, **k))
    report = gradcheck("solve", matrix("convdiff2d", 5))
    rows = {r.wrt: r for r in report.rows}
    assert not report.passed and not rows["values"].passed and rows["b"].passed
    assert rows["values"].relative_error > 1e-4


def test_corrupted_nonlinear_gradient_fails(monkeypatch):
    import slactl.engine.nonlinear.adjoint as adjoint

    original = adjoint._transpose_solve
    monkeypatch.setattr(adjoint, "_transpose_solve", lambda *a: original(*a) + 1e-3 * a[-1])
    report = gradcheck("nonlinear", matrix("poisson2d", 3), directions=1)
    assert not report.passed and all(not r.passed for r in report.rows)


def test_float32_with_loose_tolerance():
    report = gradcheck("solve", matrix("poisson2d", 4, torch.float32), rtol=1e-2)
    assert report.passed and report.dtype == "float32"


def test_usage_errors():
    with pytest.raises(UsageError):
        gradcheck("svd", matrix("poisson2d", 3))
    with pytest.raises(UsageError):
        gradcheck("solve", torch.eye(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_all_operations():
    report = gradcheck("all", matrix("poisson2d", 6).to("cuda"))
    assert report.passed, report.failed_rows
