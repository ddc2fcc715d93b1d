"""The Lanczos tridiagonal of the sa-amg set-up (:mod:`slactl.engine.preconditioners._lanczos`).

* the torch version: its Ritz values against the dense eigenvalues of ``S A S`` (numpy), and the
  largest one approaching lambda_max from below;
* the fused Triton kernels under Triton's CPU interpreter (``interp_`` tests, run by
  ``test_kernel_under_the_triton_interpreter``): equal to the torch version to rounding, on sizes
  that are not a multiple of the row block, more blocks than programs, float32, and a breakdown
  (as many steps as unknowns: the last off-diagonal is zero);
* their compilation for sm_90 (no GPU needed), and on CUDA (``-m gpu``) the same comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from problems import poisson2d
from triton_interpreter import ptx_for_sm90, require_triton_compiler, run_interpreted_tests, with_strided_values
from slactl.engine.krylov import fused_cg
from slactl.engine.preconditioners import _lanczos
from slactl.engine.preconditioners._lanczos import lanczos_tridiagonal

INTERPRETING = fused_cg.interpreting()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 process of test_kernel_under_the_triton_interpreter")


def _spd(n: int, seed: int) -> sp.csr_matrix:
    """A random SPD matrix with a varying positive diagonal and rows of different lengths."""
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=3.0 / n, random_state=seed, format="csr")
    S = (B + B.T).tocsr()
    return (S + sp.diags(abs(S).sum(1).A1 + rng.uniform(0.5, 3.0, n))).tocsr()


def _tridiagonal(alphas, betas) -> np.ndarray:
    a, b = alphas.double().cpu().numpy(), betas.double().cpu().numpy()
    return np.diag(a) + np.diag(b, 1) + np.diag(b, -1)


def test_torch_ritz_values_approach_the_dense_spectrum():
    S = _spd(300, 0)
    A = slactl.SparseMatrix.from_scipy(S)
    d = torch.from_numpy(S.diagonal())
    s = d.rsqrt()
    alphas, betas = lanczos_tridiagonal(A, s, 30)
    ritz = np.linalg.eigvalsh(_tridiagonal(alphas, betas))
    scaled = (sp.diags(s.numpy()) @ S @ sp.diags(s.numpy())).toarray()
    exact = np.linalg.eigvalsh(scaled)
    assert ritz.max() <= exact.max() * (1 + 1e-12)
    assert ritz.max() >= 0.98 * exact.max()
    assert ritz.min() >= exact.min() * (1 - 1e-12)


@pytest.mark.skipif(not fused_cg.triton_available(), reason="needs triton (the interpreter runs the kernel)")
@pytest.mark.skipif(INTERPRETING, reason="already in the interpreter process")
def test_kernel_under_the_triton_interpreter():
    """Run this file's ``interp_`` tests in a process with TRITON_INTERPRET=1."""
    run_interpreted_tests(__file__)


def _compare(S: sp.csr_matrix, steps: int, dtype: torch.dtype, device: str = "cpu", interpret: bool = True):
    """The fused kernels against the torch steps from the same start vector on the same device
    (the seeded start of lanczos_tridiagonal differs between the CPU's and CUDA's generators)."""
    A = slactl.SparseMatrix.from_scipy(S, dtype=dtype, device=device)
    s = A.diagonal().rsqrt()
    v = torch.rand(A.shape[0], generator=torch.Generator(device=device).manual_seed(5), device=device, dtype=dtype)
    want = _lanczos._torch(A, s, v, steps)
    got = _lanczos._fused(A, s, v, steps)
    assert _lanczos._use_kernel(v, interpret)  # lanczos_tridiagonal takes the kernels here
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-4, atol=1e-5)
    for g, w in zip(got, want):
        assert g.dtype == dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, **tol)


@needs_interpreter
@pytest.mark.parametrize("programs", [512, 3])  # one partial block each; several blocks per program
def test_interp_fused_lanczos_equals_torch(programs, monkeypatch):
    monkeypatch.setattr(_lanczos, "_PROGRAMS", programs)
    _compare(_spd(1000, 1), 10, torch.float64)


@needs_interpreter
def test_interp_fused_lanczos_float32_and_long_rows():
    S = _spd(700, 2) + sp.csr_matrix(np.outer(np.arange(700) % 50 == 0, np.ones(700)) * 0.01)
    S = ((S + S.T) / 2).tocsr()  # a few rows of 700 entries: the 32-wide tiles loop
    _compare(S, 8, torch.float32)


@needs_interpreter
def test_interp_strided_values_and_the_start_vector_kept():
    """Values that are a view with a stride give the contiguous answer, and the start vector
    (written over by the kernels' in-place updates) is the caller's unchanged."""
    A = slactl.SparseMatrix.from_scipy(_spd(500, 4))
    s = A.diagonal().rsqrt()
    v = torch.rand(A.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    start = v.clone()
    got = _lanczos._fused(with_strided_values(A), s, v, 8)
    assert torch.equal(v, start)
    for g, w in zip(got, _lanczos._torch(A, s, v, 8)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@needs_interpreter
def test_interp_fused_lanczos_breakdown():
    """As many steps as unknowns: the Krylov space is exhausted, the off-diagonal after it is ~0,
    and the Ritz values are the eigenvalues (no NaN from the zero norm)."""
    S = _spd(12, 3)
    A = slactl.SparseMatrix.from_scipy(S)
    s = A.diagonal().rsqrt()
    alphas, betas = lanczos_tridiagonal(A, s, 12, interpret=True)
    assert torch.isfinite(alphas).all() and torch.isfinite(betas).all()
    scaled = (sp.diags(s.numpy()) @ S @ sp.diags(s.numpy())).toarray()
    np.testing.assert_allclose(np.linalg.eigvalsh(_tridiagonal(alphas, betas)).max(), np.linalg.eigvalsh(scaled).max(), rtol=1e-10)


_SIGNATURES = {
    "_lanczos_apply": {"crow": "*i64", "col": "*i32", "val": "*fp64", "s": "*fp64", "u": "*fp64", "u_prev": "*fp64",
                       "w": "*fp64", "norms": "*fp64", "alphas": "*fp64", "n": "i32", "step": "i32", "G": "i32", "blocks": "i32"},
    "_lanczos_orthogonalize": {"u": "*fp64", "w": "*fp64", "norms": "*fp64", "alphas": "*fp64", "n": "i32", "step": "i32",
                               "G": "i32", "blocks": "i32"},
}


@pytest.mark.parametrize("kernel", sorted(_SIGNATURES))
def test_kernel_compiles_for_sm90_without_a_gpu(kernel):
    """Triton's whole pipeline (MLIR, LLVM, PTX, ptxas) for an H100/H200, no device needed."""
    require_triton_compiler()
    from slactl.engine.preconditioners import _lanczos_kernels as K

    const = dict(BS=128, GP=512) if kernel == "_lanczos_orthogonalize" else dict(BS=128, KP=8, GP=512)
    sig = dict(_SIGNATURES[kernel], **{k: "constexpr" for k in const})
    ptx = ptx_for_sm90(getattr(K, kernel), sig, const)
    assert "fma.rn.f64" in ptx or "mul.f64" in ptx


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not fused_cg.triton_available(), reason="needs CUDA and triton")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_lanczos_on_cuda_equals_torch(dtype):
    assert _lanczos._use_kernel(torch.zeros(1, device="cuda"), False)
    _compare(poisson2d(400).tocsr() + sp.diags(np.linspace(0.0, 1.0, 160_000)), 10, dtype, device="cuda", interpret=False)
    _compare(_spd(5000, 4), 10, dtype, device="cuda", interpret=False)
