"""Real processes (Gloo on CPU, 2 and 4 ranks): distributed SpMV, Krylov solves with every
block-Jacobi preconditioner, and adjoint gradients, each compared with the single-process answer.

Each rank count runs in ONE launch shared with the other distributed test modules (conftest.py,
dist_workloads.py: process start-up dominates on a small machine); the workers
return plain numbers and arrays and every comparison happens here, against references computed in
this process.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import slactl
from slactl.io.gallery import generate

PRECONDITIONERS = ("none", "jacobi", "ilu0", "ic0", "amg")
RTOL = 1e-10


def _work(pmethod):
    """Runs on every rank: returns the gathered results (identical on every rank)."""
    import slactl.dist as sd

    out = {}
    spd = generate("poisson2d", 16)
    A = sd.DistSparseMatrix.scatter(spd.matrix, method=pmethod, coordinates=spd.coordinates)
    n = A.shape[0]
    X = torch.from_numpy(np.random.default_rng(3).standard_normal((n, 3)))
    out["spmv"] = A.gather(A @ A.distribute(X[:, 0]), root=None).numpy()
    out["spmm"] = A.gather(A @ A.distribute(X), root=None).numpy()
    out["spmv_t"] = A.gather(A.apply_transpose(A.distribute(X[:, 0])), root=None).numpy()
    out["spmv_grad"] = _spmv_grads(A, X[:, 0], X[:, 1])
    out["adjoint_pair"] = _adjoint_pair(A)
    b = torch.ones(A.n_owned, dtype=torch.float64)
    for name in PRECONDITIONERS:
        res = sd.solve(A, b, method="cg", preconditioner=name, rtol=RTOL, return_result=True)
        out[f"cg-{name}"] = (A.gather(res.x.detach(), root=None).numpy(), res.iterations)
    # the phase timers (SLACTL_DIST_PROFILE) change nothing in the answer
    plain = sd.solve(A, b, method="cg", preconditioner="jacobi", rtol=RTOL, return_result=True, profile=False)
    prof = sd.solve(A, b, method="cg", preconditioner="jacobi", rtol=RTOL, return_result=True, profile=True)
    out["profile"] = (bool(torch.equal(plain.x.detach(), prof.x.detach())), "dist_profile" in plain.info,
                      prof.info["dist_profile"], prof.iterations, A.n_halo)
    # the engine's LOBPCG runs unchanged on the distributed operator too (it reduces via op.reduce)
    from slactl.engine.eigen.lobpcg import lobpcg

    X0 = A.distribute(torch.from_numpy(np.random.default_rng(6).standard_normal((n, 6))))
    eig = lobpcg(sd.DistOperator(A), 4, X0=X0, guard=2, maxiter=300, rtol=1e-9, preconditioner=sd.BlockJacobi(A, "ic0"))
    out["lobpcg"] = (eig.eigenvalues.numpy(), eig.converged)
    # nonsymmetric: BiCGStab and GMRES with block ILU(0)
    ns = generate("convdiff2d", 14)
    B = sd.DistSparseMatrix.scatter(ns.matrix, method=pmethod, coordinates=ns.coordinates)
    bn = B.distribute(torch.from_numpy(np.random.default_rng(4).standard_normal(B.shape[0])))
    for method in ("bicgstab", "gmres"):
        x = sd.solve(B, bn, method=method, preconditioner="ilu0", rtol=RTOL)
        out[method] = B.gather(x, root=None).numpy()
    out["grad_spd"] = _grads(A, torch.ones(n, dtype=torch.float64), "cg", "ic0")
    out["grad_ns"] = _grads(B, torch.from_numpy(np.random.default_rng(4).standard_normal(B.shape[0])), "bicgstab", "ilu0")
    C = sd.DistSparseMatrix.scatter(_complex_matrix(ns.matrix), method=pmethod, coordinates=ns.coordinates,
                                    dtype=torch.complex128)
    out["grad_complex"] = _grads(C, _complex_rhs(C.shape[0]), "gmres", "jacobi")
    return out


def _complex_matrix(M):
    """A complex nonsymmetric matrix: the real one plus an imaginary part of another pattern-mate."""
    M = sp.csr_matrix(M)
    return (M + 1j * sp.csr_matrix((np.random.default_rng(8).uniform(-0.3, 0.3, M.nnz), M.indices, M.indptr),
                                  shape=M.shape)).tocsr()


def _complex_rhs(n):
    rng = np.random.default_rng(9)
    return torch.from_numpy(rng.standard_normal(n) + 1j * rng.standard_normal(n))


def _loss(x, w):
    """Real and not holomorphic in x: exercises both halves of the conjugate Wirtinger gradient."""
    if not x.is_complex():
        return (x * w).sum()
    return ((x * w).sum() * (0.3 - 0.7j)).real + (x.abs() ** 2 * w).sum()


def _spmv_grads(A, x_global, w_global):
    """Gradients of sum(w * (A @ x)) w.r.t. the local values and x, through the halo autograd rule."""
    import torch.distributed as dist

    values = A.values.detach().clone().requires_grad_(True)
    x = A.distribute(x_global).clone().requires_grad_(True)
    (A.with_values(values) @ x * A.distribute(w_global)).sum().backward()
    row, col = A.global_coo()
    allv = [None] * dist.get_world_size()
    dist.all_gather_object(allv, (row.numpy(), col.numpy(), values.grad.numpy()))
    return A.gather(x.grad, root=None).numpy(), allv


def _adjoint_pair(A):
    """<broadcast(x), g> and <x, reduce(g)> summed over ranks: equal when reduce is broadcast's adjoint."""
    import torch.distributed as dist
    from slactl.dist import ghost_broadcast, ghost_reduce

    gen = torch.Generator().manual_seed(10 + dist.get_rank())
    x = torch.randn(A.n_owned, dtype=torch.float64, generator=gen)
    g = torch.randn(A.n_halo, dtype=torch.float64, generator=gen)
    pair = torch.stack([ghost_broadcast(x, A.plan) @ g, x @ ghost_reduce(g, A.plan)])
    dist.all_reduce(pair)
    return pair.tolist()


def _grads(A, b_global, method, preconditioner):
    import slactl.dist as sd

    values = A.values.detach().clone().requires_grad_(True)
    Ad = A.with_values(values)
    b = Ad.distribute(b_global).clone().requires_grad_(True)
    w = torch.from_numpy(np.random.default_rng(5).standard_normal(A.shape[0]))
    x = sd.solve(Ad, b, method=method, preconditioner=preconditioner, rtol=1e-12)
    _loss(x, Ad.distribute(w)).backward()
    row, col = A.global_coo()
    # every rank's local entries, gathered by hand (plain lists survive pickling)
    import torch.distributed as dist

    mine = (row.numpy(), col.numpy(), values.grad.numpy())
    allv = [None] * dist.get_world_size()
    dist.all_gather_object(allv, mine)
    return A.gather(b.grad, root=None).numpy(), allv


def _reference_grads(M, b, method_kwargs):
    A = slactl.SparseMatrix.from_scipy(M).requires_grad_(True)
    b = b.clone().requires_grad_(True)
    w = torch.from_numpy(np.random.default_rng(5).standard_normal(M.shape[0]))
    x = slactl.solve(A, b, **method_kwargs)
    (x * w).sum().backward()
    return A, b.grad.numpy(), A.values.grad.numpy()


def _check_grads(M, b, got, kwargs):
    A, gb_ref, gv_ref = _reference_grads(M, b, kwargs)
    gb, parts = got
    np.testing.assert_allclose(gb, gb_ref, rtol=1e-7, atol=1e-9 * np.abs(gb_ref).max())
    _check_entries(A, parts, gv_ref, rtol=1e-6)


def _check_entries(A, parts, gv_ref, rtol):
    """Scatter every rank's local entry gradients to the global pattern and compare."""
    n = A.shape[0]
    keys = A.pattern.keys().numpy()
    gv = np.full(len(keys), np.nan, dtype=np.result_type(gv_ref.dtype, np.float64))
    for row, col, g in parts:
        pos = np.searchsorted(keys, row * n + col)
        assert np.array_equal(keys[pos], row * n + col)
        gv[pos] = g
    assert not np.isnan(gv).any()  # every global entry lives on exactly one rank
    np.testing.assert_allclose(gv, gv_ref, rtol=rtol, atol=1e-8 * np.abs(gv_ref).max())


def test_distributed_agrees_with_single_process(launched):
    results = [r["test_dist_solve:_work"] for r in launched[2]]
    for r in results[1:]:  # gathered with root=None: every rank holds the same global answers
        np.testing.assert_array_equal(r["spmv"], results[0]["spmv"])
    out = results[0]
    spd = generate("poisson2d", 16).matrix
    ns = generate("convdiff2d", 14).matrix
    X = np.random.default_rng(3).standard_normal((spd.shape[0], 3))
    for key, want in (("spmv", spd @ X[:, 0]), ("spmm", spd @ X), ("spmv_t", spd.T @ X[:, 0])):
        assert np.linalg.norm(out[key] - want) <= 1e-10 * np.linalg.norm(want), key
    # Solves: the single-process solve (slactl.solve, direct) is the reference; the distributed
    # iterate must meet the stopping rule on the global system and agree to the tolerance.
    ones = np.ones(spd.shape[0])
    x_ref = slactl.solve(slactl.SparseMatrix.from_scipy(spd), torch.from_numpy(ones), rtol=1e-14).numpy()
    for name in PRECONDITIONERS:
        x, its = out[f"cg-{name}"]
        assert np.linalg.norm(ones - spd @ x) <= RTOL * np.linalg.norm(ones) * (1 + 1e-6), name
        assert np.linalg.norm(x - x_ref) <= 1e3 * RTOL * np.linalg.norm(x_ref), name
    iters = {name: out[f"cg-{name}"][1] for name in PRECONDITIONERS}
    for r in results:
        same, plain_has_profile, p, its, n_halo = r["profile"]
        assert same and not plain_has_profile
        parts = p["compute_seconds"] + p["halo_seconds"] + p["allreduce_seconds"]
        assert abs(parts - p["total_seconds"]) <= 1e-9 + 1e-9 * p["total_seconds"] and min(parts, p["halo_seconds"]) >= 0
        # CG: one matvec and two all-reduces (p^T A p; ||r||^2 with r^T M r) per iteration, plus set-up
        assert its <= p["matvecs"] <= its + 8 and 2 * its <= p["allreduces"] <= 2 * its + 16
        assert p["halo_exchanges"] == (p["matvecs"] if n_halo else 0)
    assert iters["ic0"] < iters["none"] and iters["amg"] < iters["jacobi"]
    bn = np.random.default_rng(4).standard_normal(ns.shape[0])
    xn_ref = spla.spsolve(sp.csc_matrix(ns), bn)
    for method in ("bicgstab", "gmres"):
        x = out[method]
        assert np.linalg.norm(bn - ns @ x) <= RTOL * np.linalg.norm(bn) * (1 + 1e-6), method
        assert np.linalg.norm(x - xn_ref) <= 1e3 * RTOL * np.linalg.norm(xn_ref), method
    lam, converged = out["lobpcg"]
    assert converged
    np.testing.assert_allclose(lam, np.sort(spla.eigsh(sp.csc_matrix(spd), 4, sigma=0)[0]), rtol=1e-9)
    a, c = out["adjoint_pair"]
    assert abs(a - c) <= 1e-12 * abs(a) and a != 0
    gx, parts = out["spmv_grad"]
    Aref = slactl.SparseMatrix.from_scipy(spd).requires_grad_(True)
    xr = torch.from_numpy(X[:, 0]).requires_grad_(True)
    ((Aref @ xr) * torch.from_numpy(X[:, 1])).sum().backward()
    np.testing.assert_allclose(gx, xr.grad.numpy(), rtol=1e-12)
    _check_entries(Aref, parts, Aref.values.grad.numpy(), rtol=1e-12)
    _check_grads(spd, torch.ones(spd.shape[0], dtype=torch.float64), out["grad_spd"], dict(rtol=1e-13))
    _check_grads(ns, torch.from_numpy(bn), out["grad_ns"], dict(rtol=1e-13))
    _check_complex_grads(_complex_matrix(ns), _complex_rhs(ns.shape[0]), out["grad_complex"])


def _check_complex_grads(M, b, got):
    """Against dense torch.linalg.solve with autograd (an independent reference)."""
    D = torch.from_numpy(M.toarray()).requires_grad_(True)
    b = b.clone().requires_grad_(True)
    w = torch.from_numpy(np.random.default_rng(5).standard_normal(M.shape[0]))
    _loss(torch.linalg.solve(D, b), w).backward()
    gb, parts = got
    np.testing.assert_allclose(gb, b.grad.numpy(), rtol=1e-7, atol=1e-9 * np.abs(b.grad.numpy()).max())
    A = slactl.SparseMatrix.from_scipy(M)
    row, col = A.pattern.row.numpy(), A.pattern.col.numpy()
    _check_entries(A, parts, D.grad.numpy()[row, col], rtol=1e-6)
