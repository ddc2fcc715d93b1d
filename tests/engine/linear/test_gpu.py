"""The solve engine on CUDA (run on the lent GPU with `pytest -m gpu`)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import slactl
from slactl.engine.linear import BACKENDS

from .systems import SYSTEMS, poisson2d

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _available(name):
    return BACKENDS[name].availability()[0]


CASES = [("spd", "cg", "auto"), ("spd", "cg", "amg"), ("spd", "cg", "sa-amg"), ("nonsymmetric", "gmres", "ilu0"),
         ("nonsymmetric", "bicgstab", "jacobi"), ("indefinite", "minres", "auto"),
         ("spd", "direct", "none"), ("nonsymmetric", "direct", "none"), ("indefinite", "direct", "none")]


@pytest.mark.parametrize("name,method,pre", CASES, ids=[f"{a}-{b}-{c}" for a, b, c in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_solve_and_gradients(name, method, pre, dtype):
    if method == "direct" and not (_available("cudss") or _available("cupyx")):
        pytest.skip("no GPU direct backend")
    a, _ = SYSTEMS[name]
    A = slactl.SparseMatrix.from_scipy(a, dtype=dtype, device="cuda")
    v = A.values.detach().clone().requires_grad_()
    A = A.with_values(v)
    b = torch.ones(a.shape[0], dtype=dtype, device="cuda", requires_grad=True)
    tight = 1e-13 if dtype == torch.float64 else 1e-6
    x = slactl.solve(A, b, method=method, preconditioner=pre, rtol=tight, maxiter=5000)
    ref = spla.spsolve(a.tocsc(), np.ones(a.shape[0]))
    assert _rel(x.detach().double().cpu(), torch.from_numpy(ref)) < (1e-9 if dtype == torch.float64 else 1e-4)
    if dtype != torch.float64:
        return
    gv, gb = torch.autograd.grad(x.sum(), (v, b))
    dv = v.detach().clone().requires_grad_()
    dense = torch.zeros(A.shape, dtype=dtype, device="cuda").index_put((A.row.long(), A.col.long()), dv)
    bb = b.detach().clone().requires_grad_()
    gv_ref, gb_ref = torch.autograd.grad(torch.linalg.solve(dense, bb).sum(), (dv, bb))
    assert _rel(gb, gb_ref) < 1e-8 and _rel(gv, gv_ref) < 1e-8


@pytest.mark.skipif(not _available("cudss"), reason="cuDSS not installed")
def test_cudss_reuses_analysis_across_values():
    a = poisson2d(30)
    A = slactl.SparseMatrix.from_scipy(a, device="cuda")
    F1 = slactl.factorize(A, backend="cudss")
    F2 = slactl.factorize(A.with_values(2.0 * A.values), backend="cudss")
    assert F1.prepared.analysis_seconds > 0 and F2.prepared.analysis_seconds == 0.0
    b = torch.ones(a.shape[0], dtype=torch.float64, device="cuda")
    x1, x2 = F1.solve(b), F2.solve(b)  # F1 must re-factorize its own values, not F2's
    assert _rel(x1, 2.0 * x2) < 1e-12


def test_backward_memory_independent_of_iterations():
    a = poisson2d(200)
    A = slactl.SparseMatrix.from_scipy(a, device="cuda")
    v = A.values.detach().clone().requires_grad_()
    b = torch.randn(a.shape[0], dtype=torch.float64, device="cuda")
    peaks, iters = [], []
    for rtol in (0.5, 1e-10):  # a handful of iterations, then ~1,000
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        res = slactl.solve(A.with_values(v), b, method="cg", preconditioner="none", rtol=rtol,
                           maxiter=5000, return_result=True)
        res.x.sum().backward()
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - base)
        iters.append(res.iterations)
        v.grad = None
    assert iters[1] > 20 * max(iters[0], 1)
    # The residual history grows by 8 bytes per iteration; everything else is O(n + nnz).
    assert peaks[1] <= 1.05 * peaks[0] + 8 * 4 * iters[1]


@pytest.mark.skipif(not _available("cudss"), reason="cuDSS not installed")
def test_cudss_nonsymmetric_adjoint(capsys):
    a, _ = SYSTEMS["nonsymmetric"]
    A = slactl.SparseMatrix.from_scipy(a, device="cuda")
    F = slactl.factorize(A, backend="cudss")
    T = F.prepared.transpose()
    b = torch.randn(a.shape[0], dtype=torch.float64, device="cuda")
    x = T.solve(b).x
    assert _rel(A.T @ x, b) < 1e-12
    with capsys.disabled():
        print(f"\ncuDSS transposed solve mode reused the forward factors: {F.prepared._shared.transpose_mode_works}")


@pytest.mark.skipif(not _available("cudss"), reason="cuDSS not installed")
def test_cudss_hybrid_memory_mode(monkeypatch):
    """Factors kept in host memory (cuDSS hybrid mode) under a device limit far below the default
    mode's estimated peak: same answer as SciPy, gradient through the adjoint included."""
    a = poisson2d(200)  # 40,000 unknowns
    A0 = slactl.SparseMatrix.from_scipy(a, device="cuda")
    F0 = slactl.factorize(A0, backend="cudss")
    est = F0.prepared.memory_estimates
    peak, least = est["peak_device_memory"], est["hybrid_min_device_memory"]
    assert not F0.prepared.hybrid_memory and 0 < least < peak
    monkeypatch.setenv("SLACTL_CUDSS_DEVICE_MEMORY_LIMIT", str(least // 2))  # below cuDSS's minimum
    with pytest.raises(slactl.errors.UsageError, match="below"):
        slactl.factorize(slactl.SparseMatrix.from_scipy(a, device="cuda"), backend="cudss")
    monkeypatch.setenv("SLACTL_CUDSS_DEVICE_MEMORY_LIMIT", str(int(1.05 * least)))
    v = A0.values.detach().clone().requires_grad_()
    A = slactl.SparseMatrix.from_scipy(a, device="cuda").with_values(v)
    F = slactl.factorize(A, backend="cudss")
    assert F.prepared.hybrid_memory
    b = torch.ones(a.shape[0], dtype=torch.float64, device="cuda")
    x = F.solve(b)
    ref = spla.spsolve(a.tocsc(), np.ones(a.shape[0]))
    assert np.linalg.norm(x.detach().cpu().numpy() - ref) / np.linalg.norm(ref) < 1e-10
    x.sum().backward()  # d(sum x)/dA = -(A^-T 1) x^T on the pattern
    lam = spla.spsolve(a.T.tocsc(), np.ones(a.shape[0]))
    coo = a.tocoo()
    want = -lam[coo.row] * ref[coo.col]
    got = v.grad.cpu().numpy()
    order = np.lexsort((coo.col, coo.row))
    assert np.linalg.norm(got - want[order]) / np.linalg.norm(want) < 1e-8
