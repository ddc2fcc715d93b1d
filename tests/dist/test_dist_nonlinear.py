"""Distributed Newton-Krylov on 2 and 4 Gloo ranks against the single-process slactl.nonlinear_solve:
the root and the implicit-function gradients w.r.t. a distributed matrix, a distributed vector and
a replicated scalar."""

import numpy as np
import torch

import slactl
from slactl.io.gallery import generate


def residual(u, A, f, c):
    return A @ u + c * u**3 - f  # A @ u reads the neighbours' u through the halo


def _problem():
    M = generate("poisson2d", 10).matrix
    n = M.shape[0]
    return M, np.random.default_rng(2).uniform(1, 2, n), np.random.default_rng(3).standard_normal(n)


def _work(pmethod):
    import torch.distributed as dist

    import slactl.dist as sd

    M, f_global, w_global = _problem()
    A = sd.DistSparseMatrix.scatter(M, method=pmethod, coordinates=generate("poisson2d", 10).coordinates)
    values = A.values.detach().clone().requires_grad_(True)
    f = A.distribute(torch.from_numpy(f_global)).clone().requires_grad_(True)
    c = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)  # replicated on every rank
    res = sd.nonlinear_solve(residual, torch.zeros(A.n_owned, dtype=torch.float64), A.with_values(values), f, c,
                             preconditioner=sd.BlockJacobi(A, "ilu0"), return_result=True)
    (res.u * A.distribute(torch.from_numpy(w_global))).sum().backward()
    row, col = A.global_coo()
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (row.numpy(), col.numpy(), values.grad.numpy()))
    # a replicated parameter's gradient is this rank's share: the sum over ranks is the gradient
    gc = c.grad.detach().clone()
    dist.all_reduce(gc)
    return (A.gather(res.u.detach(), root=None).numpy(), A.gather(f.grad, root=None).numpy(), float(gc), parts,
            res.converged, res.adjoint_solves, res.jacobian)


def test_newton_krylov_agrees_with_single_process(launched):
    from test_dist_solve import _check_entries

    M, f_global, w_global = _problem()
    n = M.shape[0]
    A = slactl.SparseMatrix.from_scipy(M).requires_grad_(True)
    f = torch.from_numpy(f_global).requires_grad_(True)
    c = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    u_ref = slactl.nonlinear_solve(residual, torch.zeros(n, dtype=torch.float64), A, f, c, rtol=1e-12)
    (u_ref * torch.from_numpy(w_global)).sum().backward()
    u, gf, gc, parts, converged, adjoint_solves, jacobian = launched[2][0]["test_dist_nonlinear:_work"]
    assert converged and adjoint_solves == 1 and jacobian == "matrix-free"
    F = M @ u + 0.5 * u**3 - f_global
    assert np.linalg.norm(F) <= 1e-10 * np.linalg.norm(f_global)  # the stopping rule, ||F(0)|| = ||f||
    np.testing.assert_allclose(u, u_ref.detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(gf, f.grad.numpy(), rtol=1e-8, atol=1e-10)
    assert abs(gc - float(c.grad)) <= 1e-8 * abs(float(c.grad))
    _check_entries(A, parts, A.values.grad.numpy(), rtol=1e-7)
