"""slactl.solve: agreement with SciPy and adjoint gradients against dense torch.linalg.solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import slactl
from slactl.errors import BackendUnavailableError, ConvergenceError, ShapeError, UsageError

from .systems import METHODS_FOR, SYSTEMS, poisson2d

CASES = [(name, m) for name, (_, kind) in SYSTEMS.items() for m in METHODS_FOR[kind]]


def _options(name: str, method: str) -> dict:
    """ILU(0) of an indefinite matrix is a poor preconditioner: GMRES runs unpreconditioned there,
    with a restart longer than n so it cannot stagnate."""
    if name == "indefinite" and method == "gmres":
        return dict(preconditioner="none", restart=100)
    return {}
# Iterative solves run to this tolerance so gradients can be compared at 1e-8.
TIGHT = 1e-13


def _leaf_matrix(a, dtype=torch.float64, device="cpu"):
    A = slactl.SparseMatrix.from_scipy(a, dtype=dtype, device=device)
    v = A.values.detach().clone().requires_grad_()
    return A.with_values(v), v


def _dense_reference(A, b, weights):
    """x and the gradients of <weights, x> w.r.t. values and b, by dense torch autograd."""
    v = A.values.detach().clone().requires_grad_()
    dense = torch.zeros(A.shape, dtype=v.dtype, device=v.device).index_put((A.row.long(), A.col.long()), v)
    bb = b.detach().clone().requires_grad_()
    x = torch.linalg.solve(dense, bb)
    gv, gb = torch.autograd.grad((x * weights).sum(), (v, bb))
    return x.detach(), gv, gb


def _rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.mark.parametrize("name,method", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_solution_matches_scipy(name, method):
    a, _ = SYSTEMS[name]
    rng = np.random.default_rng(1)
    b = rng.standard_normal(a.shape[0])
    ref = spla.spsolve(a.tocsc(), b)
    A = slactl.SparseMatrix.from_scipy(a)
    x = slactl.solve(A, torch.from_numpy(b), method=method, rtol=1e-12, maxiter=5000, **_options(name, method))
    cond_scale = 1e4 if name == "illcond" else 1.0
    assert _rel(x, torch.from_numpy(ref)) < 1e-9 * cond_scale


@pytest.mark.parametrize("name,method", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_gradients_match_dense_autograd(name, method):
    a, _ = SYSTEMS[name]
    A, v = _leaf_matrix(a)
    g = torch.Generator().manual_seed(2)
    b = torch.randn(a.shape[0], dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(a.shape[0], dtype=torch.float64, generator=g)
    x = slactl.solve(A, b, method=method, rtol=TIGHT, maxiter=5000, **_options(name, method))
    gv, gb = torch.autograd.grad((x * w).sum(), (v, b))
    x_ref, gv_ref, gb_ref = _dense_reference(A, b, w)
    assert _rel(x.detach(), x_ref) < 1e-9
    assert _rel(gb, gb_ref) < 1e-8
    assert _rel(gv, gv_ref) < 1e-8


@pytest.mark.parametrize("method,preconditioner", [
    ("cg", "jacobi"), ("cg", "ic0"), ("cg", "amg"), ("cg", "sa-amg"), ("gmres", "ilu0"), ("bicgstab", "ilu0"),
    ("gmres", "jacobi"), ("minres", "jacobi"),
])
def test_preconditioned_gradients(method, preconditioner):
    name = "spd" if method in ("cg", "minres") else "nonsymmetric"
    a, _ = SYSTEMS[name]
    A, v = _leaf_matrix(a)
    b = torch.ones(a.shape[0], dtype=torch.float64, requires_grad=True)
    x = slactl.solve(A, b, method=method, preconditioner=preconditioner, rtol=TIGHT, maxiter=5000)
    gv, gb = torch.autograd.grad(x.sum(), (v, b))
    _, gv_ref, gb_ref = _dense_reference(A, b, torch.ones_like(b))
    assert _rel(gb, gb_ref) < 1e-8 and _rel(gv, gv_ref) < 1e-8


@pytest.mark.parametrize("method", ["direct", "cg"])
def test_poisson_ones_gradient(method):
    """2D Poisson with b = ones: CG converges in few iterations along a symmetric subspace, where
    differentiating through the iterations gives a wrong gradient; the adjoint must not."""
    a = poisson2d(16)
    A, v = _leaf_matrix(a)
    b = torch.ones(a.shape[0], dtype=torch.float64, requires_grad=True)
    x = slactl.solve(A, b, method=method, rtol=TIGHT)
    loss = (x**2).sum()
    gv, gb = torch.autograd.grad(loss, (v, b))
    _, gv_ref, gb_ref = _dense_reference(A, b, 2 * x.detach())
    assert _rel(gb, gb_ref) < 1e-8 and _rel(gv, gv_ref) < 1e-8


@pytest.mark.parametrize("method", ["direct", "gmres", "bicgstab"])
def test_several_right_hand_sides(method):
    a, _ = SYSTEMS["nonsymmetric"]
    A, v = _leaf_matrix(a)
    g = torch.Generator().manual_seed(3)
    B = torch.randn(a.shape[0], 3, dtype=torch.float64, generator=g).requires_grad_()
    W = torch.randn(a.shape[0], 3, dtype=torch.float64, generator=g)
    X = slactl.solve(A, B, method=method, rtol=TIGHT, maxiter=5000)
    gv, gB = torch.autograd.grad((X * W).sum(), (v, B))
    X_ref, gv_ref, gB_ref = _dense_reference(A, B, W)
    assert X.shape == (a.shape[0], 3)
    assert _rel(X.detach(), X_ref) < 1e-9 and _rel(gB, gB_ref) < 1e-8 and _rel(gv, gv_ref) < 1e-8


@pytest.mark.parametrize("method", ["direct", "cg"])
def test_batched_matrices(method):
    a = poisson2d(6)
    base = slactl.SparseMatrix.from_scipy(a)
    vals = torch.stack([base.values, 1.5 * base.values + 0.1 * (base.row == base.col)]).clone().requires_grad_()
    A = base.with_values(vals)
    b = torch.randn(2, a.shape[0], dtype=torch.float64, requires_grad=True)
    x = slactl.solve(A, b, method=method, rtol=TIGHT)
    gv, gb = torch.autograd.grad((x**2).sum(), (vals, b))
    for i in range(2):
        x_ref, gv_ref, gb_ref = _dense_reference(A[i], b[i], 2 * x[i].detach())
        assert _rel(x[i].detach(), x_ref) < 1e-9
        assert _rel(gb[i], gb_ref) < 1e-8 and _rel(gv[i], gv_ref) < 1e-8


def test_float32_agrees_with_scipy():
    a, _ = SYSTEMS["spd"]
    b = np.ones(a.shape[0])
    ref = spla.spsolve(a.tocsc(), b)
    A = slactl.SparseMatrix.from_scipy(a, dtype=torch.float32)
    for method in ("direct", "cg"):
        x = slactl.solve(A, torch.ones(a.shape[0], dtype=torch.float32), method=method, rtol=1e-5)
        assert x.dtype == torch.float32
        assert _rel(x.double(), torch.from_numpy(ref)) < 1e-4


def test_nonconvergence_raises_with_partial_result():
    A = slactl.SparseMatrix.from_scipy(poisson2d(20))
    b = torch.ones(400, dtype=torch.float64)
    with pytest.raises(ConvergenceError) as info:
        slactl.solve(A, b, method="cg", preconditioner="none", maxiter=3)
    res = info.value.result
    assert res.x.shape == (400,) and res.iterations == 3 and not res.converged
    assert res.status is slactl.Status.MAX_ITERATIONS
    assert "maxiter" in str(info.value)


def _graph_size(t):
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(f for f, _ in fn.next_functions)
    return len(seen)


def test_autograd_graph_is_constant_in_iterations():
    A, v = _leaf_matrix(poisson2d(40))
    b = torch.randn(A.shape[0], dtype=torch.float64, requires_grad=True)
    few = slactl.solve(A, b, method="cg", preconditioner="none", rtol=0.5, return_result=True)
    many = slactl.solve(A, b, method="cg", preconditioner="none", rtol=1e-12, return_result=True)
    assert many.iterations > 5 * few.iterations
    assert _graph_size(few.x) == _graph_size(many.x) <= 4


def test_backward_reuses_the_factorization(monkeypatch):
    calls = []
    real = spla.splu
    monkeypatch.setattr(spla, "splu", lambda *a, **k: calls.append(1) or real(*a, **k))
    A, v = _leaf_matrix(SYSTEMS["nonsymmetric"][0])
    b = torch.ones(A.shape[0], dtype=torch.float64, requires_grad=True)
    x = slactl.solve(A, b, method="direct")
    x.sum().backward()
    assert len(calls) == 1 and v.grad is not None


def test_backward_reuses_the_preconditioner(monkeypatch):
    from slactl.engine.linear import iterative

    calls = []
    real = iterative.make_preconditioner
    monkeypatch.setattr(iterative, "make_preconditioner", lambda *a, **k: calls.append(1) or real(*a, **k))
    A, v = _leaf_matrix(SYSTEMS["nonsymmetric"][0])
    b = torch.ones(A.shape[0], dtype=torch.float64, requires_grad=True)
    slactl.solve(A, b, method="gmres", preconditioner="ilu0", rtol=1e-10).sum().backward()
    assert len(calls) == 1 and v.grad is not None


def test_factorize_reuses_across_right_hand_sides():
    a, _ = SYSTEMS["nonsymmetric"]
    A, v = _leaf_matrix(a)
    F = slactl.factorize(A)
    assert F.backend == "superlu"
    b1 = torch.ones(a.shape[0], dtype=torch.float64)
    b2 = torch.arange(a.shape[0], dtype=torch.float64)
    x1, x2 = F.solve(b1), F.solve(b2)
    ref = spla.splu(a.tocsc())
    assert _rel(x1.detach(), torch.from_numpy(ref.solve(b1.numpy()))) < 1e-12
    assert _rel(x2.detach(), torch.from_numpy(ref.solve(b2.numpy()))) < 1e-12
    (x1.sum() + x2.sum()).backward()
    assert v.grad is not None


def test_dispatch_explains_its_choice(capsys):
    A = slactl.SparseMatrix.from_scipy(poisson2d(10))
    res = slactl.solve(A, torch.ones(100, dtype=torch.float64), explain=True, return_result=True)
    assert res.backend == "superlu" and res.method == "direct"
    assert "n = 100" in capsys.readouterr().err
    big = slactl.engine.linear.select(1_000_000, torch.device("cpu"), torch.float64,
                                      slactl.engine.linear.analyze(A))
    assert big.method == "cg" and big.preconditioner == "sa-amg"
    on_gpu = slactl.engine.linear.select(1_000_000, torch.device("cuda"), torch.float64,
                                         slactl.engine.linear.analyze(A))
    assert on_gpu.method == "cg" and on_gpu.preconditioner == "sa-amg"


def test_dispatch_gives_a_complex_hermitian_matrix_a_preconditioner_that_takes_it(monkeypatch):
    """sa-amg and IC(0) take real matrices; a large complex hermitian one (a nonzero imaginary part:
    hermitian, not symmetric) gets CG with Jacobi, and its answer is SciPy's."""
    from slactl.engine.linear import dispatch

    a = sp.csr_array(poisson2d(10)) + sp.eye_array(100)  # diagonal 5 > 4 * |-1 + 0.5i|: "proven"
    upper = sp.triu(a, 1).tocsr()
    upper.data = np.random.default_rng(5).uniform(-0.5, 0.5, upper.nnz)
    h = (a + 1j * (upper - upper.T)).tocsr()
    assert abs(h - h.conj().T).max() == 0 and abs(h - h.T).max() > 0.1
    A = slactl.SparseMatrix.from_scipy(h)
    structure = slactl.engine.linear.analyze(A)
    assert structure.symmetric and structure.spd_evidence == "proven"
    for device in ("cpu", "cuda"):
        big = slactl.engine.linear.select(1_000_000, torch.device(device), torch.complex128, structure)
        assert big.method == "cg" and big.preconditioner == "jacobi"
    monkeypatch.setattr(dispatch, "CPU_DIRECT_MAX_ROWS", 50)  # 100 rows count as large: no SuperLU
    b = np.random.default_rng(6).standard_normal(100) + 1j
    res = slactl.solve(A, torch.from_numpy(b), rtol=1e-12, return_result=True)  # method and backend auto
    assert (res.backend, res.method, res.preconditioner) == ("torch", "cg", "jacobi")
    ref = spla.spsolve(h.tocsc(), b)
    assert _rel(res.x, torch.from_numpy(ref)) < 1e-10


def test_bad_requests_raise_clear_errors():
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    b = torch.ones(16, dtype=torch.float64)
    with pytest.raises(UsageError, match="unknown backend"):
        slactl.solve(A, b, backend="petsc")
    with pytest.raises(UsageError, match="unknown method"):
        slactl.solve(A, b, method="jacobi")
    with pytest.raises(ShapeError, match=r"b must have shape \[16\]"):
        slactl.solve(A, torch.ones(15, dtype=torch.float64))
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="runs on cuda"):
            slactl.solve(A, b, backend="cudss")


def test_named_krylov_method_skips_the_structure_analysis(monkeypatch):
    """A Krylov method with a named preconditioner does not run the structure analysis, whose
    transposed pattern, COO rows and diagonal positions were the peak of a plain CG solve
    (issue 7); auto-dispatch still runs it."""
    from slactl.engine.linear import api

    calls, real = [], api.analyze
    monkeypatch.setattr(api, "analyze", lambda A, *a, **k: calls.append(1) or real(A, *a, **k))
    P = poisson2d(12)
    b = torch.ones(P.shape[0], dtype=torch.float64)
    A = slactl.SparseMatrix.from_scipy(P)
    res = slactl.solve(A, b, method="cg", preconditioner="none", rtol=1e-10, return_result=True)
    assert res.converged and not calls
    assert A.pattern._row is None and "transpose" not in A.pattern._cache and "diagonal" not in A.pattern._cache
    B = slactl.SparseMatrix.from_scipy(P)
    ref = slactl.solve(B, b, method="cg", preconditioner="auto", rtol=1e-10)  # reads the structure
    assert calls == [1]
    assert torch.equal(slactl.solve(slactl.SparseMatrix.from_scipy(P), b, method="cg", preconditioner="jacobi",
                                    rtol=1e-10),
                       slactl.solve(slactl.SparseMatrix.from_scipy(P), b, method="cg", backend="torch",
                                    preconditioner="jacobi", rtol=1e-10))
    assert ref.shape == res.x.shape
    C = slactl.SparseMatrix.from_scipy(P)  # sa-amg checks symmetry itself: no transposed pattern
    res_sa = slactl.solve(C, b, method="cg", preconditioner="sa-amg", rtol=1e-10, return_result=True)
    assert res_sa.converged and "transpose" not in C.pattern._cache
    assert torch.allclose(res_sa.x, res.x, rtol=1e-8, atol=0)


def test_structure_analysis_of_a_symmetric_matrix_leaves_no_caches_behind():
    """No transposed pattern, permutations, diagonal positions or COO rows (O(nnz) memory) stay
    behind for a symmetric matrix, whose transpose is itself; the answers are SciPy's."""
    from slactl.engine.linear.structure import analyze

    S = poisson2d(12)
    A = slactl.SparseMatrix.from_scipy(S)
    structure = analyze(A)
    assert structure.symmetric and structure.spd_evidence == "proven"
    assert "transpose" not in A.pattern._cache and "diagonal" not in A.pattern._cache and A.pattern._row is None
    for M in (S + sp.triu(S, 1) * 0.5, S + sp.random(144, 144, density=0.01, random_state=0)):  # values; pattern
        assert not analyze(slactl.SparseMatrix.from_scipy(M)).symmetric
        assert abs(M - M.T).max() > 0
    B = slactl.SparseMatrix.from_scipy(S)
    B.pattern.transpose()  # cached before: kept
    assert analyze(B).symmetric and "transpose" in B.pattern._cache
