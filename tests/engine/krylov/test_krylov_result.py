"""Statuses carry their messages; non-convergence is returned, and raise_if_failed raises it."""

from __future__ import annotations

import pytest
import torch

import slactl
from problems import poisson2d
from slactl.engine.krylov import METHODS, KrylovResult, Status, cg
from slactl.errors import ConvergenceError


def test_every_status_has_a_message():
    for s in Status:
        assert isinstance(s.message, str) and len(s.message) > 20
        assert Status.from_code(s.code) is s
    assert "max(rtol * ||b||, atol)" in Status.CONVERGED.message


@pytest.mark.parametrize("method", list(METHODS))
def test_maxiter_returns_partial_result_and_raise_if_failed_raises(method):
    A = slactl.SparseMatrix.from_scipy(poisson2d(16))
    b = torch.ones(256, dtype=torch.float64)
    res = METHODS[method](A, b, rtol=1e-12, maxiter=5)
    assert isinstance(res, KrylovResult)
    assert res.status is Status.MAX_ITERATIONS and not res.converged
    assert res.iterations == 5 and res.residual_norms.shape == (6,)
    # the partial iterate is returned (not the zero start)
    assert torch.count_nonzero(res.x) > 0
    if method in ("minres", "gmres"):  # residual-minimizing methods improve on x = 0
        assert float(res.true_residual_norm) < float(torch.linalg.vector_norm(b))
    with pytest.raises(ConvergenceError) as info:
        res.raise_if_failed()
    assert info.value.result is res
    assert method in str(info.value) and "maxiter" in str(info.value)


def test_raise_if_failed_returns_self_when_converged():
    A = slactl.SparseMatrix.from_scipy(poisson2d(8))
    res = cg(A, torch.ones(64, dtype=torch.float64))
    assert res.raise_if_failed() is res


def test_nonfinite_rhs_is_reported():
    A = slactl.SparseMatrix.from_scipy(poisson2d(8))
    b = torch.ones(64, dtype=torch.float64)
    b[3] = float("nan")
    res = cg(A, b)
    assert res.status is Status.NONFINITE


def test_unreachable_tolerance_in_float32_is_reported_honestly():
    """float32 cannot reach rtol = 1e-10: the result must not claim convergence."""
    A = slactl.SparseMatrix.from_scipy(poisson2d(16), dtype=torch.float32)
    b = torch.ones(256, dtype=torch.float32)
    res = cg(A, b, rtol=1e-10)
    assert not res.converged
    assert res.status in (Status.INACCURATE, Status.MAX_ITERATIONS)
    assert float(res.true_residual_norm) > float(res.tolerance)


def test_block_status_reports_the_failing_column():
    A = slactl.SparseMatrix.from_scipy(poisson2d(8))
    B = torch.ones(64, 2, dtype=torch.float64)
    B[5, 1] = float("inf")
    res = cg(A, B)
    assert res.column_status == (Status.CONVERGED, Status.NONFINITE)
    assert res.status is Status.NONFINITE
    assert "column 1" in res.message
    # the healthy column is solved regardless
    assert float(res.relative_residual[0]) <= 1e-8
