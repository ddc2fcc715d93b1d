"""The symmetry tests of the sa-amg set-up (:mod:`slactl.engine.preconditioners._symmetry`).

* the answers against SciPy's ``||A - A^T||_F <= tol ||A||_F`` (values) and the pattern of
  ``|A| - |A|^T`` on symmetric matrices, a value asymmetry, a one-sided entry that is an explicit
  zero, and float32, by both CPU paths: each entry against its mirror, and the randomized sums the
  device runs; both paths agree about asymmetries just above and below the tolerance;
* the fused Triton kernel under Triton's CPU interpreter (``interp_`` tests, run by
  ``test_kernel_under_the_triton_interpreter``): its eight sums equal torch's (independent code);
* its compilation for sm_90 (no GPU needed); on CUDA (``-m gpu``) the same comparison.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
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


def _truth(M: sp.csr_matrix, tol: float = 1e-10) -> tuple[bool, bool]:
    """SciPy's answers: ``||M - M^T||_F <= tol ||M||_F``, and whether every stored entry's mirror is."""
    stored = sp.csr_matrix((np.ones(M.nnz), M.indices, M.indptr), shape=M.shape)  # explicit zeros too
    return (bool(spla.norm(M - M.T) <= tol * spla.norm(M)),
            (stored - stored.T).count_nonzero() == 0)


def _by_path(A: slactl.SparseMatrix, path: str, tol: float = 1e-10) -> tuple[bool, bool]:
    """``symmetry`` by one CPU path: the mirrors (a structurally symmetric pattern; the sums for the
    others, as ``symmetry`` does), or the randomized sums the device runs."""
    return symmetry(A, tol) if path == "mirrors" else _symmetry._by_sums(A, tol)


@pytest.mark.parametrize("name", sorted(_cases()))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("path", ["mirrors", "sums"])
def test_answers_match_scipy(name, dtype, path):
    """Both CPU paths: each entry against its mirror (structurally symmetric matrices), and the
    randomized sums (the others, and every matrix when called directly)."""
    M = _cases()[name]
    assert _by_path(slactl.SparseMatrix.from_scipy(M, dtype=dtype), path) == _truth(M)


@functools.lru_cache(maxsize=1)
def _near_threshold() -> dict[str, tuple[sp.csr_matrix, tuple[bool, bool]]]:
    """Matrices whose asymmetry lies 40x above or 10x below ``tol = 1e-10`` in the Frobenius norm
    (n = 10^4), with the answer both paths must give."""
    n, tol = 10_000, 1e-10
    rng = np.random.default_rng(3)
    B = sp.csr_matrix((rng.uniform(size=5 * n), rng.integers(0, n, (2, 5 * n))), shape=(n, n))
    S = (B + B.T + sp.eye(n) * 4).tocsr()
    upper = sp.triu(S, 1).tocsr()
    noise = upper.copy()
    noise.data = rng.standard_normal(noise.nnz)
    spread = (S + noise * (30 * tol * spla.norm(S) / spla.norm(noise))).tocsr()  # ||D||_F ~ 42 tol ||S||_F
    # one entry off by 0.1 tol ||S||_F: far above tol * max|S| entrywise, below tol in the Frobenius norm
    one = S.tolil()
    i, j = upper.nonzero()[0][0], upper.nonzero()[1][0]
    one[i, j] += 0.1 * tol * spla.norm(S)
    extra = sp.csr_matrix(([0.5, -0.7], ([1, 7], [9000, 4000])), shape=(n, n))
    cases = {"symmetric": (S, (True, True)), "slightly_nonsymmetric": (spread, (False, True)),
             "below_tolerance": (one.tocsr(), (True, True)), "pattern_nonsymmetric": ((S + extra).tocsr(), (False, False))}
    for M, want in cases.values():
        assert _truth(M, tol) == want  # SciPy agrees with the intended answers
    return cases


@pytest.mark.parametrize("name", ["symmetric", "slightly_nonsymmetric", "below_tolerance", "pattern_nonsymmetric"])
def test_paths_share_one_tolerance(name):
    """The exact mirror comparison of the host and the randomized sums of the device apply the same
    relative tolerance, ``||A - A^T||_F <= tol ||A||_F``: an asymmetry 40x above it is seen by both,
    one 10x below it by neither (the entrywise test would see that one, the sums never could)."""
    M, want = _near_threshold()[name]
    A = slactl.SparseMatrix.from_scipy(M)
    mirrored = _symmetry._values_by_mirrors(A, 1e-10)
    assert mirrored is (None if name == "pattern_nonsymmetric" else want[0])
    assert _by_path(A, "mirrors") == _by_path(A, "sums") == want


@pytest.mark.parametrize("path", ["mirrors", "sums"])
def test_empty_matrix_is_symmetric(path):
    assert _by_path(slactl.SparseMatrix.from_scipy(sp.csr_matrix((0, 0))), path) == (True, True)


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
