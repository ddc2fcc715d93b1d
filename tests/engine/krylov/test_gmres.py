"""GMRES(m): agreement with scipy's GMRES step for step, restarts, monotone full GMRES."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import slactl
from krylov_problems import convection_diffusion2d
from slactl.engine.krylov import Status, gmres
from slactl.engine.preconditioners import ILU0
from slactl.errors import UsageError


def _scipy_steps(A, b, restart, rtol=1e-8):
    steps = [0]
    spla.gmres(A, b, rtol=rtol, atol=0.0, restart=restart, maxiter=10_000,
               callback=lambda r: steps.__setitem__(0, steps[0] + 1), callback_type="pr_norm")
    return steps[0]


@pytest.mark.parametrize("restart", [5, 20, 1000])
def test_step_count_equals_scipy(restart):
    C = convection_diffusion2d(12)
    b = np.random.default_rng(0).standard_normal(C.shape[0])
    res = gmres(slactl.SparseMatrix.from_scipy(C), torch.from_numpy(b), rtol=1e-8, restart=restart)
    assert res.converged
    assert abs(res.iterations - _scipy_steps(C, b, restart)) <= 1


def test_full_gmres_history_is_monotone(device):
    C = convection_diffusion2d(12)
    A = slactl.SparseMatrix.from_scipy(C, device=device)
    b = torch.from_numpy(np.random.default_rng(1).standard_normal(C.shape[0])).to(device)
    res = gmres(A, b, rtol=1e-10, restart=C.shape[0])
    h = res.residual_norms.cpu()
    assert res.converged
    assert torch.all(h[1:] <= h[:-1] * (1 + 1e-12))
    np.testing.assert_allclose(res.x.cpu().numpy(), spla.spsolve(C.tocsc(), b.cpu().numpy()), rtol=1e-7, atol=1e-10)


def test_ilu0_right_preconditioning_cuts_iterations():
    C = convection_diffusion2d(20)
    A = slactl.SparseMatrix.from_scipy(C)
    b = torch.ones(400, dtype=torch.float64)
    plain = gmres(A, b, rtol=1e-10)
    pre = gmres(A, b, rtol=1e-10, preconditioner=ILU0(A))
    assert pre.converged and pre.iterations < plain.iterations / 2
    # right preconditioning: the history measures the true residual of A x = b
    assert float(pre.true_residual_norm) <= float(pre.tolerance)


def test_restart_must_be_positive():
    with pytest.raises(UsageError):
        gmres(torch.eye(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), restart=0)


def test_singular_matrix_does_not_claim_convergence():
    A = torch.zeros(4, 4, dtype=torch.float64)
    A[0, 0] = 1.0
    res = gmres(A, torch.ones(4, dtype=torch.float64), maxiter=20)
    assert not res.converged
    assert res.status in (Status.BREAKDOWN, Status.MAX_ITERATIONS)
