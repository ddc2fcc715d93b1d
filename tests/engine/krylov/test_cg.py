"""CG: preconditioning, failure statuses, initial guesses, check points and exact trimming."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from problems import poisson2d
from slactl.engine.krylov import Status, cg
from slactl.engine.preconditioners import Jacobi


def _poisson(N=16, device="cpu", dtype=torch.float64):
    return slactl.SparseMatrix.from_scipy(poisson2d(N), dtype=dtype, device=device)


def test_jacobi_fixes_bad_scaling(device):
    """D P D with D spanning 6 orders of magnitude: plain CG fails within 400 iterations; Jacobi
    recovers the conditioning of P and agrees with spsolve."""
    P = poisson2d(12)
    d = np.logspace(-3, 3, P.shape[0])
    S = (sp.diags(d) @ P @ sp.diags(d)).tocsr()
    A = slactl.SparseMatrix.from_scipy(S, device=device)
    b = torch.from_numpy(np.random.default_rng(0).standard_normal(S.shape[0])).to(device)
    plain = cg(A, b, rtol=1e-10, maxiter=400)
    pre = cg(A, b, rtol=1e-10, preconditioner=Jacobi(A))
    assert not plain.converged and plain.status is Status.MAX_ITERATIONS
    assert pre.converged and pre.iterations < 100
    assert pre.preconditioner == "jacobi"
    x_ref = sp.linalg.spsolve(S.tocsc(), b.cpu().numpy())
    np.testing.assert_allclose(pre.x.cpu().numpy(), x_ref, rtol=1e-5)


def test_preconditioner_by_name_and_callable():
    A = _poisson()
    b = torch.ones(A.shape[0], dtype=torch.float64)
    by_name = cg(A, b, preconditioner="jacobi")
    by_fn = cg(A, b, preconditioner=lambda r: r / 4.0)
    assert by_name.converged and by_fn.converged
    torch.testing.assert_close(by_name.x, by_fn.x, rtol=1e-7, atol=0)


def test_indefinite_matrix_is_reported():
    A = slactl.SparseMatrix.from_scipy((poisson2d(8) - 3.0 * sp.identity(64)).tocsr())
    res = cg(A, torch.ones(64, dtype=torch.float64))
    assert res.status is Status.INDEFINITE_MATRIX
    assert "MINRES" in res.status.message


def test_indefinite_preconditioner_is_reported():
    A = _poisson(8)
    res = cg(A, torch.ones(64, dtype=torch.float64), preconditioner=lambda r: -r)
    assert res.status is Status.INDEFINITE_PRECONDITIONER
    assert res.iterations == 0


def test_exact_initial_guess_takes_no_iteration():
    A = _poisson(8)
    x = torch.randn(64, dtype=torch.float64)
    res = cg(A, A @ x, x0=x.clone(), rtol=1e-8)
    assert res.converged and res.iterations == 0
    assert res.residual_norms.shape == (1,)


def test_zero_rhs():
    A = _poisson(8)
    res = cg(A, torch.zeros(64, dtype=torch.float64))
    assert res.converged and res.iterations == 0 and torch.all(res.x == 0)


def test_atol_stops_earlier_than_rtol():
    A = _poisson(16)
    b = torch.ones(256, dtype=torch.float64)
    loose = cg(A, b, rtol=0.0, atol=1e-2)
    tight = cg(A, b, rtol=1e-12)
    assert loose.converged and loose.iterations < tight.iterations
    assert float(loose.true_residual_norm) <= 1e-2


@pytest.mark.parametrize("check_every", [3, 7, 50])
def test_check_every_trims_to_the_first_converged_iteration(check_every, device):
    """Checking rarely changes nothing: same iterate, same iteration count, same history."""
    A = _poisson(16, device)
    b = torch.from_numpy(np.random.default_rng(2).standard_normal((256, 2))).to(device)
    every = cg(A, b, rtol=1e-9, check_every=1)
    rare = cg(A, b, rtol=1e-9, check_every=check_every)
    assert every.iterations == rare.iterations
    torch.testing.assert_close(every.x, rare.x, rtol=0, atol=0)
    torch.testing.assert_close(every.residual_norms, rare.residual_norms, rtol=0, atol=0)
    # the last entry is the first that met the tolerance, for the slowest column
    hist = every.residual_norms
    slowest = int(torch.argmax((hist > every.tolerance).sum(0)))
    assert float(hist[-1, slowest]) <= float(every.tolerance[slowest])
    assert float(hist[-2, slowest]) > float(every.tolerance[slowest])


def test_callback_at_check_points():
    A = _poisson(16)
    seen = []
    res = cg(A, torch.ones(256, dtype=torch.float64), rtol=1e-10, check_every=5, callback=lambda i, r: seen.append((i, r)))
    its = [i for i, _ in seen]
    gaps = [b - a for a, b in zip(its, its[1:])]
    assert its[0] == 1 and all(1 <= g <= 5 for g in gaps)
    assert res.iterations <= its[-1] < res.iterations + 5  # at most 4 iterations past convergence
    assert len(its) < res.iterations  # fewer synchronizations than iterations
    assert all(isinstance(r, float) for _, r in seen)
    # the reported norms are the history's at those iterations
    assert seen[0][1] == float(res.residual_norms[1])


def test_matches_scipy_cg_iterations():
    """Same Krylov space, same stopping rule: the iteration count equals scipy's."""
    P = poisson2d(20)
    b = np.random.default_rng(3).standard_normal(P.shape[0])
    count = [0]
    sp.linalg.cg(P, b, rtol=1e-8, atol=0.0, callback=lambda xk: count.__setitem__(0, count[0] + 1))
    res = cg(slactl.SparseMatrix.from_scipy(P), torch.from_numpy(b), rtol=1e-8)
    assert abs(res.iterations - count[0]) <= 1


def test_adaptive_check_points_waste_few_iterations():
    """With an expensive preconditioner and rare checks, the check schedule follows the
    convergence rate: few iterations run past convergence, and few synchronizations happen."""
    from slactl.engine.preconditioners import AMG

    A = _poisson(48)
    b = torch.from_numpy(np.random.default_rng(4).standard_normal(48 * 48))
    res = cg(A, b, rtol=1e-10, preconditioner=AMG(A), check_every=32)
    assert res.converged
    assert res.info["iterations_run"] - res.iterations <= 3
    assert res.info["host_syncs"] <= res.iterations


def test_rare_checks_with_recoveries_keep_the_same_history():
    """float32 and an unreachable tolerance: CG restarts from its iterate after the recurrence
    claims convergence. Rare check points must not change the iterate, the history or the count."""
    A = _poisson(16, dtype=torch.float32)
    b = torch.from_numpy(np.random.default_rng(5).standard_normal(256)).float()
    every = cg(A, b, rtol=1e-9, check_every=1)
    rare = cg(A, b, rtol=1e-9, check_every=8)
    assert every.recoveries == rare.recoveries > 0
    assert every.iterations == rare.iterations and rare.residual_norms.shape == (rare.iterations + 1,)
    torch.testing.assert_close(every.residual_norms, rare.residual_norms, rtol=0, atol=0)
    torch.testing.assert_close(every.x, rare.x, rtol=0, atol=0)
    assert rare.info["iterations_run"] >= rare.iterations
