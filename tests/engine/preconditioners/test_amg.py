"""AMG: a pyamg smoothed-aggregation hierarchy applied as a torch V-cycle."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from problems import convection_diffusion2d, poisson2d
from slactl.engine.krylov import cg, gmres
from slactl.engine.preconditioners import AMG
from slactl.errors import BackendUnavailableError

pyamg = pytest.importorskip("pyamg")


@pytest.mark.parametrize("smoother", ["chebyshev", "jacobi"])
def test_amg_cg_beats_plain_cg_and_matches_pyamg(smoother, device):
    P = poisson2d(64)
    A = slactl.SparseMatrix.from_scipy(P, device=device)
    b_np = np.random.default_rng(0).standard_normal(P.shape[0])
    b = torch.from_numpy(b_np).to(device)
    M = AMG(A, smoother=smoother)
    pre = cg(A, b, rtol=1e-8, preconditioner=M)
    plain = cg(A, b, rtol=1e-8)
    assert pre.converged and plain.converged
    assert pre.iterations <= 15 < 100 < plain.iterations
    # pyamg's own PCG with its Gauss-Seidel smoother on the same hierarchy settings
    residuals: list[float] = []
    M.hierarchy.solve(b_np, tol=1e-8, accel="cg", maxiter=200, residuals=residuals)
    assert pre.iterations <= 2 * (len(residuals) - 1) + 2
    x_ref = sp.linalg.spsolve(P.tocsc(), b_np)
    assert np.linalg.norm(pre.x.cpu().numpy() - x_ref) <= 1e-5 * np.linalg.norm(x_ref)  # cond ~ 1.7e3


def test_levels_live_on_the_device(device):
    A = slactl.SparseMatrix.from_scipy(poisson2d(40), device=device, dtype=torch.float32)
    M = AMG(A, max_coarse=50)
    assert len(M.levels) >= 3 and M.levels[-1].A.shape[0] <= 50
    for lv in M.levels:
        assert lv.A.device.type == device.type and lv.A.dtype == torch.float32
    for lv in M.levels[:-1]:
        assert lv.P.shape == (lv.A.shape[0], lv.R.shape[0]) and lv.R.shape[1] == lv.A.shape[0]
    assert 1.0 < M.operator_complexity < 2.0
    r = M.apply(torch.ones(1600, 2, dtype=torch.float32, device=device))
    assert r.shape == (1600, 2) and r.dtype == torch.float32


def test_v_cycle_is_symmetric_positive_definite_for_spd_a():
    A = slactl.SparseMatrix.from_scipy(poisson2d(12))
    M = AMG(A, max_coarse=10)
    E = torch.eye(144, dtype=torch.float64)
    D = M.apply(E)
    torch.testing.assert_close(D, D.T, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(D).min() > 0
    assert M.transpose() is M and M.positive_definite


def test_transpose_is_exact_for_nonsymmetric_a():
    A = slactl.SparseMatrix.from_scipy(convection_diffusion2d(10, wind=40.0))
    M = AMG(A, max_coarse=10)
    assert not M.symmetric and len(M.levels) >= 2
    E = torch.eye(100, dtype=torch.float64)
    torch.testing.assert_close(M.transpose().apply(E), M.apply(E).T, rtol=1e-10, atol=1e-12)


def test_amg_gmres_on_convection_diffusion():
    C = convection_diffusion2d(40)
    A = slactl.SparseMatrix.from_scipy(C)
    b = torch.ones(1600, dtype=torch.float64)
    pre = gmres(A, b, rtol=1e-10, preconditioner=AMG(A))
    plain = gmres(A, b, rtol=1e-10)
    assert pre.converged and pre.iterations < plain.iterations / 4


def test_coarse_only_hierarchy_is_a_direct_solve():
    A = slactl.SparseMatrix.from_scipy(poisson2d(5))
    M = AMG(A)  # 25 rows <= max_coarse: one level, dense Cholesky
    assert len(M.levels) == 1
    b = torch.randn(25, dtype=torch.float64)
    torch.testing.assert_close(A @ M.apply(b), b)


def test_missing_pyamg_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyamg", None)
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    with pytest.raises(BackendUnavailableError, match="pip install pyamg"):
        AMG(A)
