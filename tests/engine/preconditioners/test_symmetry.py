"""The randomized symmetry tests of the sa-amg set-up (:mod:`slactl.engine.preconditioners._symmetry`).

* the answers against SciPy's ``A - A^T`` (values, and the pattern of ``|A| - |A|^T``) on symmetric
  matrices, a value asymmetry, a one-sided entry that is an explicit zero, and float32;
* the fused Triton kernel under Triton's CPU interpreter (``interp_`` tests, run by
  ``test_kernel_under_the_triton_interpreter``): its eight sums equal torch's (independent code);
* its compilation for sm_90 (no GPU needed); on CUDA (``-m gpu``) the same comparison.
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
from slactl.engine.preconditioners import _symmetry
from slactl.engine.preconditioners._symmetry import symmetry

INTERPRETING = fused_cg.interpreting()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 process of test_kernel_under_the_triton_interpreter")


def _cases() -> dict[str, sp.csr_matrix]:
    rng = np.random.default_rng(0)
    B = sp.random(300, 300, density=0.02, random_state=0, format="csr")
    S = (B + B.T + sp.eye(300) * 3).tocsr()
    values = S.tolil()
    i, j = S.nonzero()
    k = np.flatnonzero(i != j)[0]
    values[i[k], j[k]] = S[i[k], j[k]] + 0.5  # one entry changed, its mirror not
    # a stored zero whose mirror is not stored (the pattern test counts stored entries, not values)
    free = next((a, b) for a in range(300) for b in range(a + 1, 300) if S[a, b] == 0 and S[b, a] == 0)
    coo = S.tocoo()
    one_sided = sp.csr_matrix((np.r_[coo.data, 0.0], (np.r_[coo.row, free[0]], np.r_[coo.col, free[1]])), shape=S.shape)
    assert one_sided.nnz == S.nnz + 1
    long_rows = (S + sp.csr_matrix(np.outer(np.arange(300) % 60 == 0, np.ones(300)) * rng.uniform(0.1, 0.2))).tocsr()
    return {"poisson": poisson2d(17).tocsr(), "symmetric": S, "values": values.tocsr(), "pattern": one_sided,
            "long_rows_pattern": long_rows, "long_rows_symmetric": (long_rows + long_rows.T).tocsr()}


def _truth(M: sp.csr_matrix) -> tuple[bool, bool]:
    D = (M - M.T).tocsr()
    D.eliminate_zeros()
    stored = sp.csr_matrix((np.ones(M.nnz), M.indices, M.indptr), shape=M.shape)  # explicit zeros too
    return D.nnz == 0 or abs(D).max() <= 1e-10 * abs(M).max(), (stored - stored.T).count_nonzero() == 0


@pytest.mark.parametrize("name", sorted(_cases()))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("path", ["mirrors", "sums"])
def test_answers_match_scipy(name, dtype, path, monkeypatch):
    """Both CPU paths: each entry against its mirror (structurally symmetric matrices), and the
    randomized sums (the others, and every matrix when the mirror check is switched off)."""
    if path == "sums":
        monkeypatch.setattr(slactl.SparseMatrix, "_max_mirror_difference", lambda self, chunk=0: None)
    M = _cases()[name]
    assert symmetry(slactl.SparseMatrix.from_scipy(M, dtype=dtype)) == _truth(M)


def test_not_square():
    assert symmetry(slactl.SparseMatrix.from_scipy(sp.random(5, 7, density=0.5, random_state=1, format="csr"))) == (False, False)


@pytest.mark.skipif(not fused_cg.triton_available(), reason="needs triton (the interpreter runs the kernel)")
@pytest.mark.skipif(INTERPRETING, reason="already in the interpreter process")
def test_kernel_under_the_triton_interpreter():
    """Run this file's ``interp_`` tests in a process with TRITON_INTERPRET=1."""
    run_interpreted_tests(__file__)


def _compare_sums(M: sp.csr_matrix, dtype: torch.dtype, device: str = "cpu"):
    A = slactl.SparseMatrix.from_scipy(M, dtype=dtype, device=device)
    n = A.shape[0]
    x, y = torch.rand((2, n), dtype=dtype, device=device) - 0.5
    h, g = torch.rand((2, n), dtype=torch.float64, device=device)
    got, want = _symmetry._fused_sums(A, x, y, h, g), _symmetry._torch_sums(A, x, y, h, g)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got, want, **tol)


@needs_interpreter
@pytest.mark.parametrize("name", ["poisson", "pattern", "long_rows_pattern"])
def test_interp_fused_sums_equal_torch(name):
    _compare_sums(_cases()[name], torch.float64)
    assert _symmetry._use_kernel(torch.zeros(1), True)
    M = _cases()[name]
    assert symmetry(slactl.SparseMatrix.from_scipy(M), interpret=True) == _truth(M)


@needs_interpreter
def test_interp_fused_sums_float32():
    _compare_sums(_cases()["values"], torch.float32)


@needs_interpreter
@pytest.mark.parametrize("name", ["symmetric", "values"])
def test_interp_strided_values(name):
    """Values that are a view with a stride (a column of a batch) give the contiguous answer."""
    M = _cases()[name]
    A = with_strided_values(slactl.SparseMatrix.from_scipy(M))
    assert symmetry(A, interpret=True) == _truth(M)


@pytest.mark.parametrize("width", [8, 32])
def test_kernel_compiles_for_sm90_without_a_gpu(width):
    """Triton's whole pipeline (MLIR, LLVM, PTX, ptxas) for an H100/H200, no device needed."""
    require_triton_compiler()
    from slactl.engine.preconditioners import _symmetry_kernels as K

    sig = {"crow": "*i32", "col": "*i32", "val": "*fp64", "x": "*fp64", "y": "*fp64", "h": "*fp64", "g": "*fp64",
           "out": "*fp64", "n": "i32", "BS": "constexpr", "KP": "constexpr"}
    assert "st.global" in ptx_for_sm90(K._symmetry_sums, sig, dict(BS=1024 // width, KP=width))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not fused_cg.triton_available(), reason="needs CUDA and triton")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_sums_on_cuda_equal_torch(dtype):
    assert _symmetry._use_kernel(torch.zeros(1, device="cuda"), False)
    for name, M in _cases().items():
        _compare_sums(M, dtype, device="cuda")
        assert symmetry(slactl.SparseMatrix.from_scipy(M, dtype=dtype, device="cuda")) == _truth(M), name
