"""slactl.eigs and slactl.svds against dense torch.linalg.eig / svd (values and autograd)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl.engine.eigen.eigs import _order
from slactl.errors import StructureError, UsageError


@pytest.fixture(scope="module")
def nonsym():
    n = 250
    return sp.csr_array(sp.diags([-1.0, 2.5, -0.6], [-1, 0, 1], shape=(n, n))
                        + sp.random(n, n, density=0.01, random_state=2) + sp.diags(np.linspace(0, 3, n)))


def _eig_loss(lam, V, c):
    # invariant to the phase of each eigenvector
    w = torch.arange(1, lam.numel() + 1, dtype=torch.float64)
    return (lam.real * w).sum() + (lam.imag ** 2).sum() + (V.abs() ** 4).sum() + ((V.conj().T @ c).abs() ** 2).sum()


@pytest.mark.parametrize("method,which,sigma,k", [
    ("dense", "LM", None, 4), ("arpack", "LM", None, 4), ("arpack", "SR", None, 4), ("arpack", "LR", None, 3),
    ("arpack", "LM", 1.7, 3),
])
def test_eigs_matches_dense_eig(nonsym, method, which, sigma, k):
    A = slactl.SparseMatrix.from_scipy(nonsym)
    c = torch.randn(A.shape[0], dtype=torch.complex128)
    v = A.values.clone().requires_grad_()
    lam, V = slactl.eigs(A.with_values(v), k=k, which=which, sigma=sigma, method=method, tol=1e-10)
    v2 = A.values.clone().requires_grad_()
    lam2, V2 = torch.linalg.eig(slactl.SparseMatrix.from_pattern(A.pattern, v2).to_dense())
    idx = _order(lam2.detach(), which, sigma)[:k]
    assert torch.allclose(lam.detach(), lam2[idx].detach(), atol=1e-9)
    # same eigenvectors up to phase; the gauge: unit norm, largest entry real positive
    assert torch.allclose((V.detach().conj().T @ V2[:, idx].detach()).diagonal().abs(), torch.ones(k, dtype=torch.float64), atol=1e-8)
    piv = V.detach().abs().argmax(0)
    top = V.detach()[piv, torch.arange(k)]
    assert torch.allclose(top.imag, torch.zeros(k, dtype=torch.float64), atol=1e-12) and bool((top.real > 0).all())
    _eig_loss(lam, V, c).backward()
    _eig_loss(lam2[idx], V2[:, idx], c).backward()
    assert torch.allclose(v.grad, v2.grad, rtol=1e-7, atol=1e-7 * float(v2.grad.abs().max()))


def test_eigs_gauge_dependent_loss_matches_finite_differences(nonsym):
    """A loss that is not phase invariant: the gradient refers to slactl's documented gauge."""
    A = slactl.SparseMatrix.from_scipy(nonsym)
    c = torch.randn(A.shape[0], dtype=torch.complex128)

    def f(vals):
        lam, V = slactl.eigs(A.with_values(vals), k=2, which="LM", method="dense")
        return (V.conj().T @ c).real.sum()

    v = A.values.clone().requires_grad_()
    f(v).backward()
    t = torch.randn(A.nnz, dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        fd = (f(A.values + h * t) - f(A.values - h * t)) / (2 * h)
    assert abs(float(v.grad @ t) - float(fd)) < 1e-6 * max(1.0, abs(float(fd)))


def test_eigs_errors(nonsym):
    with pytest.raises(StructureError):
        slactl.eigs(slactl.SparseMatrix.from_scipy(sp.random(5, 6, density=0.5, random_state=0)), k=1)
    with pytest.raises(UsageError):
        slactl.eigs(slactl.SparseMatrix.from_scipy(nonsym), k=2, which="SA")


def _svd_loss(U, S, Vh, cu, cv):
    # invariant to flipping the sign of a pair (u_i, v_i)
    w = torch.arange(1, S.numel() + 1, dtype=S.dtype)
    return (S * w).sum() + ((U.T @ cu) ** 2).sum() + (Vh ** 4).sum() + ((U.T @ cu) * (Vh @ cv)).sum()


@pytest.mark.parametrize("shape", [(260, 230), (230, 260)])
@pytest.mark.parametrize("method", ["dense", "arpack"])
def test_svds_matches_dense_svd(shape, method):
    m, n = shape
    M = sp.csr_array(sp.random(m, n, density=0.03, random_state=3) + sp.eye(m, n))
    A = slactl.SparseMatrix.from_scipy(M)
    cu, cv = torch.randn(m, dtype=torch.float64), torch.randn(n, dtype=torch.float64)
    v = A.values.clone().requires_grad_()
    U, S, Vh = slactl.svds(A.with_values(v), k=3, method=method, tol=1e-10)
    v2 = A.values.clone().requires_grad_()
    U2, S2, Vh2 = torch.linalg.svd(slactl.SparseMatrix.from_pattern(A.pattern, v2).to_dense(), full_matrices=False)
    assert torch.allclose(S.detach(), S2[:3].detach(), rtol=1e-10)
    assert torch.allclose((U.detach().T @ U2[:, :3].detach()).abs(), torch.eye(3, dtype=torch.float64), atol=1e-8)
    _svd_loss(U, S, Vh, cu, cv).backward()
    _svd_loss(U2[:, :3], S2[:3], Vh2[:3], cu, cv).backward()
    assert torch.allclose(v.grad, v2.grad, rtol=1e-7, atol=1e-7 * float(v2.grad.abs().max()))


def test_svds_result_and_gpu(device):
    M = sp.csr_array(sp.random(240, 220, density=0.03, random_state=4) + sp.eye(240, 220))
    A = slactl.SparseMatrix.from_scipy(M, device=device).requires_grad_()
    res = slactl.svds(A, k=2, method="arpack", return_result=True)
    ref = np.linalg.svd(M.toarray(), compute_uv=False)[:2]
    assert np.allclose(res.eigenvalues.detach().cpu().numpy(), ref, rtol=1e-8)
    assert res.left_vectors.shape == (240, 2) and res.converged
    res.eigenvalues.sum().backward()
    assert A.values.grad.device.type == device.type


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_eigs_on_cuda_matrix(nonsym):
    A = slactl.SparseMatrix.from_scipy(nonsym, device="cuda").requires_grad_()
    lam, V = slactl.eigs(A, k=2, method="arpack")
    assert lam.device.type == "cuda"
    lam.real.sum().backward()
    assert A.values.grad.device.type == "cuda"
