"""MINRES: monotone residuals, indefinite systems, preconditioning, failure statuses."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

import slactl
from problems import indefinite2d, poisson2d
from slactl.engine.krylov import Status, minres
from slactl.engine.preconditioners import IC0


def test_residual_history_is_monotone_on_indefinite(device):
    S = indefinite2d(12)
    A = slactl.SparseMatrix.from_scipy(S, device=device)
    b = torch.from_numpy(np.random.default_rng(0).standard_normal(S.shape[0])).to(device)
    res = minres(A, b, rtol=1e-10)
    assert res.converged, res.message
    h = res.residual_norms.cpu()
    assert torch.all(h[1:] <= h[:-1] * (1 + 1e-10))
    # the recurrence residual is the true residual
    true = torch.linalg.vector_norm(b - A @ res.x)
    assert abs(float(true) - float(h[-1])) <= 1e-6 * float(h[0])
    np.testing.assert_allclose(res.x.cpu().numpy(), sp.linalg.spsolve(S.tocsc(), b.cpu().numpy()), rtol=1e-6, atol=1e-9)


def test_matches_cg_space_on_spd_in_fewer_or_equal_steps():
    """On SPD matrices MINRES minimizes the residual: it needs at most CG's iterations."""
    from slactl.engine.krylov import cg

    A = slactl.SparseMatrix.from_scipy(poisson2d(16))
    b = torch.ones(256, dtype=torch.float64)
    assert minres(A, b, rtol=1e-8).iterations <= cg(A, b, rtol=1e-8).iterations


def test_preconditioned_with_ic0():
    P = poisson2d(20)
    A = slactl.SparseMatrix.from_scipy(P)
    b = torch.from_numpy(np.random.default_rng(1).standard_normal(400))
    plain = minres(A, b, rtol=1e-10)
    pre = minres(A, b, rtol=1e-10, preconditioner=IC0(A))
    assert pre.converged and pre.iterations < plain.iterations / 2
    np.testing.assert_allclose(pre.x.numpy(), sp.linalg.spsolve(P.tocsc(), b.numpy()), rtol=1e-7)


def test_indefinite_preconditioner_is_reported():
    A = slactl.SparseMatrix.from_scipy(indefinite2d(6))
    res = minres(A, torch.ones(36, dtype=torch.float64), preconditioner=lambda r: -r)
    assert res.status is Status.INDEFINITE_PRECONDITIONER


def test_exactly_singular_direction_restarts_cleanly():
    """A diagonal matrix with 3 distinct eigenvalues: Lanczos terminates after 3 steps (beta = 0)
    and MINRES stops with the exact solution."""
    d = torch.tensor([-2.0, -2.0, 1.0, 1.0, 5.0, 5.0], dtype=torch.float64)
    res = minres(torch.diag(d), torch.ones(6, dtype=torch.float64), rtol=1e-14)
    assert res.converged and res.iterations <= 4
    torch.testing.assert_close(res.x, 1 / d)
