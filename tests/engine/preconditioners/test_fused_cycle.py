"""The fused AMG V-cycle (Triton SpMV + smoother kernels) against the torch cycle.

* dispatch (CPU, no Triton needed): when the fused cycle applies;
* the kernels under Triton's CPU interpreter (``interp_`` tests, run by
  ``test_kernels_under_the_triton_interpreter`` in a ``TRITON_INTERPRET=1`` process): one V-cycle
  equals the torch cycle's (independent code: cuSPARSE / torch SpMVs and elementwise ops) for every
  smoother, degree, dtype, a nonsymmetric hierarchy and its transpose, and the pyamg hierarchy;
* on CUDA (``-m gpu``): the same, and CG with the fused cycle against SciPy.
"""

from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import slactl
from problems import poisson2d
from triton_interpreter import ptx_for_sm90, require_triton_compiler, run_interpreted_tests
from slactl.engine.krylov import cg
from slactl.engine.krylov import fused_cg
from slactl.engine.preconditioners import AMG, SmoothedAggregation
from slactl.engine.preconditioners import fused_cycle

INTERPRETING = fused_cg.interpreting()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 process of test_kernels_under_the_triton_interpreter")


def gpu(fn):
    fn = pytest.mark.skipif(not fused_cg.triton_available(), reason="needs triton")(fn)
    fn = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(fn)
    return pytest.mark.gpu(fn)


def _rhs(n: int, dtype=torch.float64, device="cpu", seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(n)).to(dtype=dtype, device=device)


def _convection(N: int) -> sp.csr_matrix:
    """A nonsymmetric M-matrix (2D Poisson plus upwind convection)."""
    P = poisson2d(N)
    T = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N))
    return (P + 0.5 * sp.kron(sp.eye(N), T)).tocsr()


def _cycles(M, b: torch.Tensor, interpret: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused, torch) applications of the preconditioner ``M`` to ``b``."""
    M.fused_cycle = False
    ref = M.apply(b)
    M.fused_cycle = True
    M._interpret_fused = interpret
    got = M.apply(b)
    assert isinstance(getattr(M, "_fused_plan", None), fused_cycle.FusedCycle)
    return got, ref


# ------------------------------------------------------------------------------ dispatch (CPU)
@pytest.mark.skipif(INTERPRETING, reason="dispatch on the CPU without the interpreter")
def test_cpu_vectors_run_the_torch_cycle():
    A = slactl.SparseMatrix.from_scipy(poisson2d(12))
    M = SmoothedAggregation(A, max_coarse=20)
    b = _rhs(A.shape[0])
    assert not fused_cycle.available(M, b)
    M.apply(b)
    assert getattr(M, "_fused_plan", None) is None


def test_batched_right_hand_sides_run_the_torch_cycle():
    A = slactl.SparseMatrix.from_scipy(poisson2d(12))
    M = SmoothedAggregation(A, max_coarse=20)
    assert not fused_cycle.available(M, torch.ones(A.shape[0], 2, dtype=torch.float64), interpret=True)
    assert not fused_cycle.available(M, torch.ones(A.shape[0], dtype=torch.complex128), interpret=True)


# ------------------------------------------------------------------------------ interpreter
@pytest.mark.skipif(not fused_cg.triton_available(), reason="needs triton (the interpreter runs the kernels)")
@pytest.mark.skipif(INTERPRETING, reason="already in the interpreter process")
def test_kernels_under_the_triton_interpreter():
    """Run this file's ``interp_`` tests in a process with TRITON_INTERPRET=1."""
    run_interpreted_tests(__file__)


@needs_interpreter
@pytest.mark.parametrize("smoother,degree", [("chebyshev", 1), ("chebyshev", 2), ("chebyshev", 3), ("jacobi", 2)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_interp_one_cycle_equals_the_torch_cycle(smoother, degree, dtype):
    A = slactl.SparseMatrix.from_scipy(poisson2d(40), dtype=dtype)
    M = SmoothedAggregation(A, smoother=smoother, degree=degree, max_coarse=50)
    assert len(M.levels) >= 3  # several fused levels, not only the coarse solve
    got, ref = _cycles(M, _rhs(A.shape[0], dtype), interpret=True)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert float((got - ref).norm() / ref.norm()) < tol


@needs_interpreter
def test_interp_nonsymmetric_hierarchy_and_its_transpose():
    """Long rows of R, rectangular P, a transposed hierarchy (levels rebuilt: a new plan)."""
    S = _convection(30)
    A = slactl.SparseMatrix.from_scipy(S)
    M = SmoothedAggregation(A, max_coarse=40)
    assert not M.symmetric
    b = _rhs(A.shape[0])
    got, ref = _cycles(M, b, interpret=True)
    assert float((got - ref).norm() / ref.norm()) < 1e-12
    Mt = M.transpose()
    got_t, ref_t = _cycles(Mt, b, interpret=True)
    assert Mt._fused_plan is not M._fused_plan
    assert float((got_t - ref_t).norm() / ref_t.norm()) < 1e-12
    assert float((got_t - got).norm() / got.norm()) > 1e-3  # the transpose is another operator


@needs_interpreter
def test_interp_pyamg_hierarchy():
    pytest.importorskip("pyamg")
    A = slactl.SparseMatrix.from_scipy(poisson2d(30))
    M = AMG(A, max_coarse=40)
    got, ref = _cycles(M, _rhs(A.shape[0]), interpret=True)
    assert float((got - ref).norm() / ref.norm()) < 1e-12


@needs_interpreter
def test_interp_cg_with_the_fused_cycle_matches_scipy():
    S = poisson2d(40)
    A = slactl.SparseMatrix.from_scipy(S)
    M = SmoothedAggregation(A, max_coarse=50)
    M._interpret_fused = True
    b = _rhs(A.shape[0])
    res = cg(A, b, preconditioner=M, rtol=1e-10, maxiter=100, fused=False)
    assert res.converged and res.iterations < 30
    assert isinstance(M._fused_plan, fused_cycle.FusedCycle)
    ref = spla.spsolve(S.tocsc(), b.numpy())
    assert np.linalg.norm(res.x.numpy() - ref) / np.linalg.norm(ref) < 1e-8


# ------------------------------------------------------------------------------ CUDA
@gpu
@pytest.mark.parametrize("smoother,degree", [("chebyshev", 2), ("chebyshev", 3), ("jacobi", 2)])
def test_gpu_cycle_equals_the_torch_cycle(smoother, degree):
    A = slactl.SparseMatrix.from_scipy(poisson2d(200), device="cuda")
    M = SmoothedAggregation(A, smoother=smoother, degree=degree, cuda_graph=False)
    got, ref = _cycles(M, _rhs(A.shape[0], device="cuda"), interpret=False)
    assert float((got - ref).norm() / ref.norm()) < 1e-12


@gpu
def test_gpu_cg_with_fused_graphed_cycle_matches_scipy():
    S = _convection(150) + _convection(150).T  # symmetric, not Poisson
    A = slactl.SparseMatrix.from_scipy(S.tocsr(), device="cuda")
    b = _rhs(A.shape[0], device="cuda")
    M = SmoothedAggregation(A)
    res = cg(A, b, preconditioner=M, rtol=1e-10, maxiter=200)
    assert res.converged
    assert isinstance(M._fused_plan, fused_cycle.FusedCycle)
    M2 = SmoothedAggregation(A, fused_cycle=False)
    res2 = cg(A, b, preconditioner=M2, rtol=1e-10, maxiter=200)
    assert abs(res.iterations - res2.iterations) <= 1
    ref = spla.spsolve(S.tocsc(), b.cpu().numpy())
    assert np.linalg.norm(res.x.cpu().numpy() - ref) / np.linalg.norm(ref) < 1e-8


@pytest.mark.skipif(not fused_cg.triton_available(), reason="needs triton")
@pytest.mark.skipif(INTERPRETING, reason="compiles for the GPU")
@pytest.mark.parametrize("mode", ["SPMV", "RESID", "ADD", "CHEB_START", "CHEB_STEP", "CHEB_FIRST", "JACOBI"])
def test_kernel_compiles_for_sm90_without_a_gpu(mode):
    """Triton's whole pipeline (MLIR, LLVM, PTX, ptxas) for an H100/H200, no device needed."""
    require_triton_compiler()
    import importlib

    K = importlib.import_module("slactl.engine.preconditioners._cycle_kernels")
    f, i = "*fp64", "*i32"
    sig = {"crow": i, "col": i, "val": f, "x": f, "xs": f, "n": "i32", "out0": f, "out1": f, "out2": f,
           "in0": f, "in1": f, "in2": f, "dinv": f, "coef": f,
           "MODE": "constexpr", "WRITE_RD": "constexpr", "BS": "constexpr", "KP": "constexpr"}
    const = dict(MODE=fused_cycle._MODES[mode], WRITE_RD=mode != "CHEB_FIRST", BS=128, KP=8)
    assert "ld.global" in ptx_for_sm90(K._level_kernel, sig, const)
