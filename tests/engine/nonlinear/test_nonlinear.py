"""nonlinear_solve: Newton (colored sparse, callable, matrix-free), Picard, Anderson, and gradients by
the implicit function theorem, against dense autograd and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slactl
from slactl.engine.linear.base import Prepared
from slactl.engine.nonlinear import Linearization, check_coloring, distance2_coloring
from slactl.engine.nonlinear.jacobian import assemble
from slactl.errors import ConvergenceError, StructureError
from slactl.io.gallery import generate

DT = torch.float64


def convdiff(n: int = 10) -> slactl.SparseMatrix:
    return slactl.SparseMatrix.from_scipy(generate("convdiff2d", n).matrix)


def reaction(u, A, f):
    """Upwind convection-diffusion with a cubic reaction: nonsymmetric Jacobian A + 3 diag(u^2)."""
    return A @ u + u**3 - f


def _data(n=10, scale=1.0, seed=0):
    A = convdiff(n)
    g = torch.Generator().manual_seed(seed)
    f = scale * torch.randn(A.shape[0], generator=g, dtype=DT)
    return A, f


def _dense_solution_grads(A, f, u, w):
    """Reference gradients from a dense Jacobian: lam = J^{-T} w, df = lam, dvalues = -lam[row] u[col]."""
    J = A.to_dense().detach() + torch.diag(3 * u**2)
    lam = torch.linalg.solve(J.T, w)
    return lam, -(lam[A.row.long()] * u[A.col.long()])


@pytest.mark.parametrize("jacobian", ["sparse", "matrix-free"])
def test_newton_nonsymmetric_matches_dense_reference(jacobian):
    A, f = _data(scale=5.0)
    assert not A.is_symmetric()
    v = A.values.clone().requires_grad_(True)
    fr = f.clone().requires_grad_(True)
    res = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A.with_values(v), fr, jacobian=jacobian,
                                 rtol=1e-13, return_result=True)
    assert res.converged and res.iterations >= 3
    u = res.u.detach()
    assert float(torch.linalg.vector_norm(reaction(u, A, f))) <= 1e-12 * float(f.norm())
    w = torch.randn_like(f)
    gv, gf = torch.autograd.grad((w * res.u).sum(), [v, fr])
    lam, gv_ref = _dense_solution_grads(A, f, u, w)
    assert torch.allclose(gf, lam, rtol=1e-8, atol=1e-12)
    assert torch.allclose(gv, gv_ref, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("jacobian", ["sparse", "matrix-free"])
def test_complex_gradients_match_dense_autograd(jacobian):
    """A complex holomorphic residual: the backward solves ``J^H lam = g`` (torch's convention; the
    assembled Jacobian's solver as its adjoint, the matrix-free one by vector-Jacobian products),
    against one differentiable dense Newton step taken at the root (exact to first order)."""
    A, f = _data(n=6, scale=3.0)
    g = torch.Generator().manual_seed(1)
    A = A.with_values(torch.complex(A.values, 0.3 * torch.randn(A.nnz, generator=g, dtype=DT)))
    f = torch.complex(f, torch.randn(f.shape, generator=g, dtype=DT))
    w = torch.randn(f.shape, generator=g, dtype=torch.complex128)

    def loss(u):
        return (w * u).sum().abs() + (u.abs() ** 2).sum()

    v, fr = A.values.clone().requires_grad_(True), f.clone().requires_grad_(True)
    u = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A.with_values(v), fr, jacobian=jacobian, rtol=1e-13)
    gv, gf = torch.autograd.grad(loss(u), [v, fr])
    v2, f2 = A.values.clone().requires_grad_(True), f.clone().requires_grad_(True)
    D = torch.zeros(A.shape, dtype=torch.complex128).index_put((A.row.long(), A.col.long()), v2)
    us = u.detach()
    step = us - torch.linalg.solve(D + torch.diag(3 * us**2), D @ us + us**3 - f2)
    gv_ref, gf_ref = torch.autograd.grad(loss(step), [v2, f2])
    torch.testing.assert_close(gf, gf_ref, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(gv, gv_ref, rtol=1e-8, atol=1e-12)


def test_gradients_match_finite_differences():
    A, f = _data(n=6, scale=3.0)
    w = torch.randn_like(f)

    def loss(values, rhs):
        u = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A.with_values(values), rhs, rtol=0.0,
                                   atol=1e-14 * float(f.norm()))
        return (w * u).sum()

    v = A.values.clone().requires_grad_(True)
    fr = f.clone().requires_grad_(True)
    gv, gf = torch.autograd.grad(loss(v, fr), [v, fr])
    h = 1e-6
    for _ in range(3):
        dv, df = torch.randn_like(v) * A.values.abs(), torch.randn_like(f)
        with torch.no_grad():
            fd = (loss(v + h * dv, fr + h * df) - loss(v - h * dv, fr - h * df)) / (2 * h)
        adj = (gv * dv).sum() + (gf * df).sum()
        assert abs(float(adj - fd)) <= 1e-6 * max(abs(float(adj)), abs(float(fd)))


def test_against_dense_autograd_of_dense_newton():
    """Unrolled dense Newton (torch.linalg.solve, autograd through every step) as the reference."""
    A, f = _data(n=5, scale=2.0)
    v = A.values.clone().requires_grad_(True)
    fr = f.clone().requires_grad_(True)
    u = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A.with_values(v), fr, rtol=1e-14)
    g1 = torch.autograd.grad(u.sum(), [v, fr])
    ud = torch.zeros_like(f)
    Ad = A.with_values(v).to_dense()
    for _ in range(30):
        ud = ud - torch.linalg.solve(Ad + torch.diag(3 * ud**2), Ad @ ud + ud**3 - fr)
    g2 = torch.autograd.grad(ud.sum(), [v, fr])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def _count_backward_solves(monkeypatch, scale):
    A, f = _data(n=8, scale=scale)
    fr = f.clone().requires_grad_(True)
    res = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A, fr, return_result=True)
    calls = []
    original = Prepared.solve
    monkeypatch.setattr(Prepared, "solve", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    res.u.sum().backward()
    monkeypatch.setattr(Prepared, "solve", original)
    return res, len(calls)


def test_backward_is_one_linear_solve_whatever_the_iterations(monkeypatch):
    few, n_few = _count_backward_solves(monkeypatch, 0.1)
    many, n_many = _count_backward_solves(monkeypatch, 50.0)
    assert many.iterations > few.iterations + 3
    assert n_few == n_many == 1
    assert few.adjoint_solves == many.adjoint_solves == 1
    # The graph: one node whose inputs are the parameters, not the Newton iterations.
    node = many.u.grad_fn
    assert type(node).__name__ == "ImplicitSolveBackward"
    assert all(nxt is None or type(nxt).__name__ == "AccumulateGrad" for nxt, _ in node.next_functions)


@pytest.mark.parametrize("name,size", [("convdiff2d", 9), ("elasticity2d", 4), ("poisson3d", 4)])
def test_colored_jacobian_equals_dense_autograd(name, size):
    A = slactl.SparseMatrix.from_scipy(generate(name, size).matrix)
    colors = distance2_coloring(A.pattern)
    assert check_coloring(A.pattern, colors)
    u = torch.randn(A.shape[0], dtype=DT)
    f = torch.randn_like(u)
    fn = lambda x: A @ x + torch.sin(x) * x**2 - f  # noqa: E731
    J = assemble(Linearization(fn, u), A.pattern)
    dense = torch.autograd.functional.jacobian(fn, u)
    assert torch.allclose(J.to_dense(), dense, rtol=1e-13, atol=1e-13)


def test_coloring_is_valid_on_random_patterns():
    rng = np.random.default_rng(1)
    for _ in range(5):
        M = (rng.random((40, 40)) < 0.1) + np.eye(40, dtype=bool)
        A = slactl.SparseMatrix.from_dense(torch.tensor(M, dtype=DT))
        c = distance2_coloring(A.pattern)
        assert check_coloring(A.pattern, c)
        # Reference: no two columns sharing a row have equal colors (dense check).
        for row in M:
            cols = np.flatnonzero(row)
            assert len(set(c[cols])) == len(cols)


def test_pattern_missing_entries_is_detected():
    A, f = _data(n=5)
    coupled = lambda u, A, f: A @ u + u**3 - f + 0.1 * torch.roll(u, 7)  # noqa: E731
    with pytest.raises(StructureError, match="outside the sparsity pattern"):
        slactl.nonlinear_solve(coupled, torch.zeros_like(f), A, f, jacobian="sparse")


def test_matrix_free_agrees_with_assembled_and_callable():
    A, f = _data(n=10, scale=5.0)
    u_sparse = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A, f, jacobian="sparse", rtol=1e-12)
    u_mf = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A, f, jacobian="matrix-free", rtol=1e-12)
    jac = lambda u, A, f: A + slactl.SparseMatrix.from_dense(torch.diag(3 * u**2))  # noqa: E731
    u_cb = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A, f, jacobian=jac, rtol=1e-12)
    assert torch.allclose(u_mf, u_sparse, rtol=1e-9, atol=1e-11)
    assert torch.allclose(u_cb, u_sparse, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_fixed_point_on_a_contraction(method):
    g = torch.Generator().manual_seed(3)
    n = 30
    K = torch.randn(n, n, generator=g, dtype=DT)
    K = 0.4 * K / torch.linalg.matrix_norm(K, 2)       # T(u) = 0.5 cos(K u) + p: Lipschitz 0.2
    p = torch.randn(n, generator=g, dtype=DT, requires_grad=True)
    res = slactl.nonlinear_solve(lambda u, p: u - (0.5 * torch.cos(K @ u) + p), torch.zeros(n, dtype=DT), p,
                                 method=method, rtol=1e-13, return_result=True)
    u = res.u.detach()
    assert torch.allclose(u, 0.5 * torch.cos(K @ u) + p.detach(), atol=1e-12)
    (gp,) = torch.autograd.grad(res.u.sum(), p)
    J = torch.eye(n, dtype=DT) + 0.5 * torch.sin(K @ u)[:, None] * K   # dF/du, nonsymmetric
    assert torch.allclose(gp, torch.linalg.solve(J.T, torch.ones(n, dtype=DT)), atol=1e-10)
    if method == "anderson":
        picard = slactl.nonlinear_solve(lambda u, p: u - (0.5 * torch.cos(K @ u) + p), torch.zeros(n, dtype=DT),
                                        p.detach(), method="picard", rtol=1e-13, return_result=True)
        assert res.iterations < picard.iterations


def test_closed_over_matrix_values_get_gradients():
    A, f = _data(n=5, scale=2.0)
    v = A.values.clone().requires_grad_(True)
    B = A.with_values(v)
    u = slactl.nonlinear_solve(lambda u, f: B @ u + u**3 - f, torch.zeros_like(f), f, pattern=A)
    (gv,) = torch.autograd.grad(u.sum(), v)
    _, ref = _dense_solution_grads(A, f, u.detach(), torch.ones_like(f))
    assert torch.allclose(gv, ref, rtol=1e-9, atol=1e-12)


def test_non_convergence_raises_with_partial_result():
    A, f = _data(n=6, scale=50.0)
    with pytest.raises(ConvergenceError) as info:
        slactl.nonlinear_solve(reaction, torch.zeros_like(f), A, f, maxiter=2)
    assert info.value.result.status.name == "MAX_ITERATIONS" and info.value.result.iterations == 2
    with pytest.raises(ConvergenceError, match="diverged"):
        slactl.nonlinear_solve(lambda u: u - (3.0 * u + 1.0), torch.zeros(4, dtype=DT), method="picard")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("jacobian", ["sparse", "matrix-free"])
def test_newton_cuda_matches_cpu(jacobian):
    A, f = _data(n=12, scale=5.0)
    u_cpu = slactl.nonlinear_solve(reaction, torch.zeros_like(f), A, f, rtol=1e-12)
    Ac, fc = A.to("cuda"), f.cuda().requires_grad_(True)
    u = slactl.nonlinear_solve(reaction, torch.zeros_like(fc), Ac, fc, jacobian=jacobian, rtol=1e-12)
    assert torch.allclose(u.detach().cpu(), u_cpu, rtol=1e-8, atol=1e-10)
    (g,) = torch.autograd.grad(u.sum(), fc)
    lam, _ = _dense_solution_grads(A, f, u_cpu, torch.ones_like(f))
    assert torch.allclose(g.cpu(), lam, rtol=1e-7, atol=1e-10)
