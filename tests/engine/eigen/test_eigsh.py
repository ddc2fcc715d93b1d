"""slactl.eigsh against dense references: eigenpairs vs numpy.linalg.eigh, gradients vs dense
torch.linalg.eigh autograd (sign-invariant losses), for every method and mode."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl.engine.eigen import DegenerateEigenvaluesWarning
from slactl.errors import StructureError, UsageError

from problems import poisson2d_array as spd_matrix, symmetric_matrix

K = 4
CASES = [
    ("dense", "SA", None), ("dense", "LM", None), ("dense", "SA", 1.3),
    ("arpack", "SA", None), ("arpack", "LA", None), ("arpack", "LM", None), ("arpack", "SA", 1.3),
    ("lobpcg", "SA", None), ("lobpcg", "LA", None),
]


def _pick(lam: torch.Tensor, which: str, sigma, k: int) -> torch.Tensor:
    if sigma is not None:
        idx = torch.argsort((lam - sigma).abs())[:k]
    elif which == "SA":
        idx = torch.arange(k)
    elif which == "LA":
        idx = torch.arange(lam.numel() - k, lam.numel())
    else:
        idx = torch.argsort(-lam.abs())[:k]
    return idx[torch.argsort(lam[idx])]


def _loss(lam, V, c):
    # sign-invariant in each eigenvector
    w = torch.arange(1, lam.numel() + 1, dtype=lam.dtype, device=lam.device)
    return (lam * w).sum() + ((V.T @ c) ** 2).sum() + (V ** 4).sum()


def _dense_reference(A: slactl.SparseMatrix, which, sigma, k, c):
    v = A.values.detach().clone().requires_grad_()
    lam, V = torch.linalg.eigh(slactl.SparseMatrix.from_pattern(A.pattern, v).to_dense())
    idx = _pick(lam.detach(), which, sigma, k)
    _loss(lam[idx], V[:, idx], c).backward()
    return lam[idx].detach(), V[:, idx].detach(), v.grad


@pytest.mark.parametrize("method,which,sigma", CASES)
def test_eigenpairs_and_gradients_match_dense(sym300, method, which, sigma):
    A = slactl.SparseMatrix.from_scipy(sym300)
    c = torch.randn(A.shape[0], dtype=torch.float64)
    v = A.values.clone().requires_grad_()
    res = slactl.eigsh(A.with_values(v), k=K, which=which, sigma=sigma, method=method, tol=1e-10, return_result=True)
    ref_lam = np.linalg.eigvalsh(sym300.toarray())
    ref_lam = torch.from_numpy(ref_lam)[_pick(torch.from_numpy(ref_lam), which, sigma, K)]
    assert torch.allclose(res.eigenvalues.detach(), ref_lam, rtol=1e-10, atol=1e-10)
    assert res.converged and res.eigenvectors.shape == (300, K)
    assert bool((res.residual_norms <= res.tolerance).all())
    _loss(res.eigenvalues, res.eigenvectors, c).backward()
    lam_d, V_d, g_d = _dense_reference(A, which, sigma, K, c)
    # eigenvectors agree up to sign
    assert torch.allclose((res.eigenvectors.detach().T @ V_d).abs(), torch.eye(K, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(v.grad, g_d, rtol=1e-7, atol=1e-7 * float(g_d.abs().max()))


def test_eigenvalue_only_gradient_is_vvT_on_pattern(sym300):
    A = slactl.SparseMatrix.from_scipy(sym300).requires_grad_()
    lam, V = slactl.eigsh(A, k=2, method="arpack")
    lam[1].backward()
    v = V[:, 1].detach()
    expected = v[A.pattern.row.long()] * v[A.pattern.col.long()]
    assert torch.allclose(A.values.grad, expected, atol=1e-12)


def test_lobpcg_with_amg_on_poisson_and_gradient():
    P = spd_matrix(24)
    # break the grid symmetry so the wanted eigenvalues are simple
    P = sp.csr_array(P + sp.diags(np.linspace(0, 0.3, P.shape[0])))
    A = slactl.SparseMatrix.from_scipy(P)
    v = A.values.clone().requires_grad_()
    res = slactl.eigsh(A.with_values(v), k=3, method="lobpcg", preconditioner="amg", tol=1e-10, return_result=True)
    assert res.preconditioner != "none" and res.iterations < 100
    ref = np.linalg.eigvalsh(P.toarray())[:3]
    assert np.allclose(res.eigenvalues.detach().numpy(), ref, rtol=1e-10)
    c = torch.randn(A.shape[0], dtype=torch.float64)
    _loss(res.eigenvalues, res.eigenvectors, c).backward()
    _, _, g = _dense_reference(A, "SA", None, 3, c)
    assert torch.allclose(v.grad, g, rtol=1e-7, atol=1e-7 * float(g.abs().max()))


def test_sign_convention_and_sorting(sym300):
    A = slactl.SparseMatrix.from_scipy(sym300)
    lam, V = slactl.eigsh(A, k=5, which="LM")
    assert bool((lam[1:] >= lam[:-1]).all())
    piv = V.abs().argmax(0)
    assert bool((V[piv, torch.arange(5)] > 0).all())


def test_not_symmetric_raises():
    A = slactl.SparseMatrix.from_scipy(sp.diags([-1.0, 2.0, -0.5], [-1, 0, 1], shape=(30, 30)))
    with pytest.raises(StructureError):
        slactl.eigsh(A, k=2)


def test_usage_errors(sym300):
    A = slactl.SparseMatrix.from_scipy(sym300)
    with pytest.raises(UsageError):
        slactl.eigsh(A, k=2, which="XX")
    with pytest.raises(UsageError):
        slactl.eigsh(A, k=2, sigma=1.0, method="lobpcg")
    with pytest.raises(UsageError):
        slactl.eigsh(A, k=301)


def _with_coupling(d: np.ndarray) -> sp.csr_array:
    """diag(d) plus symmetric couplings that leave rows 0 and 1 alone (d[0] == d[1] stays exact)."""
    n = d.size
    C = sp.lil_array((n, n))
    for i in range(2, n - 3):
        C[i, i + 3] = C[i + 3, i] = 1e-2
    return sp.csr_array(sp.diags(d) + C)


def test_degenerate_cluster_is_reported_and_cluster_sum_gradient_is_exact():
    d = np.array([1.0, 1.0, 2.0, 3.0] + list(np.linspace(4, 9, 296)))
    A = slactl.SparseMatrix.from_scipy(_with_coupling(d))
    v = A.values.clone().requires_grad_()
    with pytest.warns(DegenerateEigenvaluesWarning):
        res = slactl.eigsh(A.with_values(v), k=3, method="arpack", tol=1e-12, return_result=True)
    assert res.degenerate and (0, 1) in res.clusters
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateEigenvaluesWarning)
        (res.eigenvalues[0] + res.eigenvalues[1]).backward()
    v2 = A.values.clone().requires_grad_()
    lam = torch.linalg.eigvalsh(slactl.SparseMatrix.from_pattern(A.pattern, v2).to_dense())
    (lam[0] + lam[1]).backward()
    assert torch.allclose(v.grad, v2.grad, atol=1e-8)


def test_rotation_invariant_cluster_loss_needs_no_warning():
    d = np.array([1.0, 1.0, 2.0] + list(np.linspace(4, 9, 97)))
    A = slactl.SparseMatrix.from_scipy(_with_coupling(d))
    v = A.values.clone().requires_grad_()
    with pytest.warns(DegenerateEigenvaluesWarning):
        lam, V = slactl.eigsh(A.with_values(v), k=3, method="dense")
    c = torch.randn(100, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateEigenvaluesWarning)
        ((V[:, :2].T @ c) ** 2).sum().backward()  # ||P_cluster c||^2: rotation invariant
    # finite differences along a symmetric perturbation on the pattern
    t = torch.randn(A.nnz, dtype=torch.float64)
    t = 0.5 * (t + t[A.pattern.transpose()[1]])
    h = 1e-6

    def f(vals):
        _, W = torch.linalg.eigh(slactl.SparseMatrix.from_pattern(A.pattern, vals).to_dense())
        return float(((W[:, :2].T @ c) ** 2).sum())

    fd = (f(A.values + h * t) - f(A.values - h * t)) / (2 * h)
    assert abs(float(v.grad @ t) - fd) < 1e-6 * max(1.0, abs(fd))


def test_float32_lobpcg(sym300):
    A = slactl.SparseMatrix.from_scipy(sym300, dtype=torch.float32)
    lam, V = slactl.eigsh(A, k=3, method="lobpcg")
    ref = np.linalg.eigvalsh(sym300.toarray())[:3]
    assert lam.dtype == torch.float32 and np.allclose(lam.numpy(), ref, rtol=1e-4)


def test_result_fields(sym300):
    A = slactl.SparseMatrix.from_scipy(sym300)
    res = slactl.eigsh(A, k=3, method="lobpcg", return_result=True)
    assert res.method == "lobpcg" and res.iterations > 0 and res.history.shape[1] == 3
    assert res.next_eigenvalue is not None and res.gap > 0 and not res.degenerate
    s = res.summary()
    assert len(s["eigenvalues"]) == 3 and s["converged"]


def test_gpu_matches_cpu(device, sym300):
    A = slactl.SparseMatrix.from_scipy(sym300, device=device)
    c = torch.randn(300, dtype=torch.float64)
    for method, which in (("lobpcg", "SA"), ("arpack", "LA")):
        v = A.values.clone().requires_grad_()
        lam, V = slactl.eigsh(A.with_values(v), k=3, which=which, method=method, tol=1e-10)
        assert lam.device.type == device.type
        _loss(lam, V, c.to(device)).backward()
        _, _, g = _dense_reference(A.cpu(), which, None, 3, c)
        assert torch.allclose(v.grad.cpu(), g, rtol=1e-7, atol=1e-7 * float(g.abs().max()))


@pytest.mark.parametrize("method", ["lobpcg", "arpack"])
def test_eigenvector_gradient_of_a_loss_inside_the_span_is_zero_not_an_error(method):
    """sum(V**2) = k for any orthonormal V: its gradient is zero, and the adjoint's projected
    right-hand side is pure rounding, which must not be 'solved' (it used to raise ConvergenceError)."""
    import scipy.sparse as sp

    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(300, 300))
    A0 = slactl.SparseMatrix.from_scipy(T)
    v = A0.values.clone().requires_grad_(True)
    lam, V = slactl.eigsh(slactl.SparseMatrix.from_pattern(A0.pattern, v), k=3, which="SA", method=method)
    (V**2).sum().backward()
    assert float(v.grad.abs().max()) < 1e-10
