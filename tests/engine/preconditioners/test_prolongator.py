"""The smoothed prolongator ``P = (I - omega D^{-1} A) T`` (:mod:`slactl.engine.preconditioners._prolongator`).

The filtered matrix that smooths it (weak couplings lumped onto the diagonal) against its
definition applied entry by entry on the host.

Reference: SciPy's ``(I - omega D^{-1} A) @ T`` for the values, and the product of the patterns
(``|S| @ |T|`` of all-positive matrices, no cancellation) for the structure, which keeps entries
whose values sum to zero, as the SpGEMM does.

* the row-compression kernels under Triton's CPU interpreter (``interp_`` tests, run by
  ``test_kernel_under_the_triton_interpreter``): Poisson with a real aggregation, random rows of
  1 to 64 entries with unaggregated columns, float32, rows too long for the kernels (SpGEMM);
* their compilation for sm_90 (no GPU needed); on CUDA (``-m gpu``) against cuSPARSE's product.
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
from slactl.engine.preconditioners import _prolongator
from slactl.engine.preconditioners._aggregation import aggregate, sparse_product, strength_graph, tentative_prolongator
from slactl.engine.preconditioners._prolongator import filtered_matrix, smoothed_prolongator, smoothing_matrix
from slactl.io.gallery import generate

INTERPRETING = fused_cg.interpreting()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 process of test_kernel_under_the_triton_interpreter")


def _poisson_case(N: int = 24):
    A = slactl.SparseMatrix.from_scipy(poisson2d(N))
    ids, count, _ = aggregate(strength_graph(A, 0.08, 1, symmetric=True), 0)
    T = tentative_prolongator(ids, count, torch.ones((A.shape[0], 1), dtype=torch.float64)).T
    return A, T


def _random_case(n: int, nc: int, seed: int, longest: int = 64):
    """Rows of 1..longest entries (diagonal stored), about a tenth of the columns unaggregated."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, longest, n)
    rows = np.repeat(np.arange(n), lengths)
    cols = rng.integers(0, n, rows.size)
    M = sp.csr_matrix((rng.standard_normal(rows.size), (rows, cols)), shape=(n, n))
    M.sum_duplicates()
    M = (M + sp.diags(rng.uniform(1.0, 2.0, n))).tocsr()  # (a diagonal, so at most longest entries: re-cut)
    agg = rng.integers(0, nc, n)
    agg[rng.random(n) < 0.1] = -1
    live = np.flatnonzero(agg >= 0)
    T = sp.csr_matrix((rng.uniform(0.5, 1.5, live.size), (live, agg[live])), shape=(n, nc))
    return slactl.SparseMatrix.from_scipy(M), slactl.SparseMatrix.from_scipy(T)


def _check(A, T, omega=0.7, interpret=True, dtype=torch.float64, device="cpu"):
    A = slactl.SparseMatrix.from_scipy(A.to_scipy(), dtype=dtype, device=device)
    T = slactl.SparseMatrix.from_scipy(T.to_scipy(), dtype=dtype, device=device)
    inv_diag = 1.0 / A.diagonal()
    P = smoothed_prolongator(A, T, inv_diag, omega, one_per_row=True, interpret=interpret)
    As, Ts = A.to_scipy().astype(np.float64), T.to_scipy().astype(np.float64)
    S = sp.eye(As.shape[0]) - omega * sp.diags(1.0 / As.diagonal()) @ As
    want = (S @ Ts).toarray()
    structure = ((abs(S) + sp.eye(As.shape[0])) @ abs(Ts)).tocsr()  # every structural product, no cancellation
    structure.sort_indices()
    Ps = P.to_scipy()
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Ps.toarray(), want, **tol)
    assert Ps.nnz == structure.nnz and (abs(Ps) != 0).sum() <= structure.nnz
    assert np.array_equal(Ps.indptr, structure.indptr) and np.array_equal(Ps.indices, structure.indices)
    return P


def test_spgemm_path_equals_scipy():
    A, T = _poisson_case()
    _check(A, T, interpret=False)


@pytest.mark.skipif(not fused_cg.triton_available(), reason="needs triton (the interpreter runs the kernel)")
@pytest.mark.skipif(INTERPRETING, reason="already in the interpreter process")
def test_kernel_under_the_triton_interpreter():
    """Run this file's ``interp_`` tests in a process with TRITON_INTERPRET=1."""
    run_interpreted_tests(__file__)


@needs_interpreter
def test_interp_poisson_with_a_real_aggregation():
    A, T = _poisson_case()
    assert _prolongator._use_kernel(torch.zeros(1), True)
    _check(A, T)


@needs_interpreter
@pytest.mark.parametrize("longest", [6, 30, 64])  # tile widths 8, 32, 64
def test_interp_random_rows_and_unaggregated_columns(longest):
    A, T = _random_case(300, 40, longest, longest=longest)
    _check(A, T)


@needs_interpreter
def test_interp_float32():
    A, T = _random_case(200, 30, 5, longest=12)
    _check(A, T, dtype=torch.float32)


@needs_interpreter
def test_interp_strided_values():
    """Values of ``A`` and ``T`` that are views with a stride give the contiguous product."""
    A, T = _poisson_case(12)
    inv_diag = 1.0 / A.diagonal()
    want = smoothed_prolongator(A, T, inv_diag, 0.7, one_per_row=True, interpret=True).to_scipy()
    got = smoothed_prolongator(with_strided_values(A), with_strided_values(T), inv_diag, 0.7,
                               one_per_row=True, interpret=True).to_scipy()
    np.testing.assert_allclose(got.toarray(), want.toarray(), rtol=1e-14, atol=1e-14)


@needs_interpreter
def test_interp_rows_too_long_take_the_spgemm(monkeypatch):
    A, T = _random_case(200, 30, 6, longest=40)
    calls = []
    monkeypatch.setattr(_prolongator, "_LONGEST_ROW", 16)
    real = _prolongator.sparse_product
    monkeypatch.setattr(_prolongator, "sparse_product", lambda *a, **k: calls.append(1) or real(*a, **k))
    _check(A, T)
    assert calls == [1]


_SIGNATURES = {
    "_count": {"crow": "*i32", "col": "*i32", "tcrow": "*i32", "tcol": "*i32", "counts": "*i64", "n": "i32"},
    "_write": {"crow": "*i32", "col": "*i32", "val": "*fp64", "dinv": "*fp64", "coef": "*fp64", "tcrow": "*i32",
               "tcol": "*i32", "tval": "*fp64", "out_crow": "*i64", "out_col": "*i32", "out_val": "*fp64", "n": "i32"},
}


@pytest.mark.parametrize("kernel", sorted(_SIGNATURES))
@pytest.mark.parametrize("width", [8, 64])
def test_kernel_compiles_for_sm90_without_a_gpu(kernel, width):
    """Triton's whole pipeline (MLIR, LLVM, PTX, ptxas) for an H100/H200, no device needed."""
    require_triton_compiler()
    from slactl.engine.preconditioners import _prolongator_kernels as K

    const = dict(BS=max(1, 2048 // width**2), W=width)
    sig = dict(_SIGNATURES[kernel], BS="constexpr", W="constexpr")
    assert "st.global" in ptx_for_sm90(getattr(K, kernel), sig, const)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not fused_cg.triton_available(), reason="needs CUDA and triton")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernels_on_cuda_equal_scipy_and_cusparse(dtype):
    assert _prolongator._use_kernel(torch.zeros(1, device="cuda"), False)
    for A, T in (_poisson_case(200), _random_case(20_000, 2000, 7)):
        P = _check(A, T, interpret=False, dtype=dtype, device="cuda")
        Ac = slactl.SparseMatrix.from_scipy(A.to_scipy(), dtype=dtype, device="cuda")
        Tc = slactl.SparseMatrix.from_scipy(T.to_scipy(), dtype=dtype, device="cuda")
        ref = sparse_product(smoothing_matrix(Ac, 1.0 / Ac.diagonal(), 0.7), Tc)
        assert torch.equal(P.pattern.crow.cpu().long(), ref.pattern.crow.cpu().long())
        assert torch.equal(P.pattern.col.cpu().long(), ref.pattern.col.cpu().long())


def _filtered_reference(S: sp.csr_matrix, theta: float, b: np.ndarray) -> sp.csr_matrix:
    """The filtered matrix by its definition, entry by entry on the host."""
    S = S.tocsr()
    n = S.shape[0]
    off = S - sp.diags(S.diagonal())
    m = np.array([abs(off[i]).max() if off[i].nnz else 0.0 for i in range(n)])
    coo = S.tocoo()
    rows, cols, vals = [], [], []
    lump = np.zeros(n)
    for i, j, v in zip(coo.row, coo.col, coo.data):
        if i == j or (abs(v) >= theta * min(m[i], m[j]) and v != 0):
            rows.append(i); cols.append(j); vals.append(v)
        else:
            lump[i] += v * b[j]
    F = sp.csr_matrix((vals, (rows, cols)), shape=S.shape)
    d = S.diagonal()
    lumped = d + lump / b
    ok = (lumped * d > 0) & (abs(lumped) >= 0.5 * abs(d))
    return (F + sp.diags(np.where(ok, lumped, d) - d)).tocsr(), ok


@pytest.mark.parametrize("chunk", [1 << 22, 97])
@pytest.mark.parametrize("near_nullspace", ["constant", "random"])
def test_filtered_matrix_equals_its_definition(near_nullspace, chunk, monkeypatch):
    """Weak couplings (``|a_ij| < theta min(m_i, m_j)``) dropped and lumped against ``b``:
    ``A^F b = A b`` on every row whose lumped diagonal is accepted, symmetric with ``A``."""
    rng = np.random.default_rng(3)
    n = 400
    aniso = generate("anisotropic2d", 20).matrix  # couplings 1 and 1e-3
    B = sp.random(n, n, density=0.01, random_state=3, format="csr")
    B.data = rng.choice([-1.0, 1.0], B.nnz) * 10.0 ** rng.uniform(-4, 0, B.nnz)
    # rows 0-9: thirty weak couplings of -0.05 each, which would lump their diagonals to ~0
    many = sp.csr_matrix((np.full(300, -0.05), (np.repeat(np.arange(10), 30), rng.choice(np.arange(10, n), 300))), shape=(n, n))
    S = (aniso + B + B.T + many + many.T).tocsr()
    S = (S + sp.diags(np.asarray(abs(S).sum(1)).ravel() * rng.uniform(0.3, 1.2, n))).tocsr()  # some rows not dominant
    S.setdiag(np.where(np.arange(n) < 10, 2.0, S.diagonal()))
    b = np.ones(n) if near_nullspace == "constant" else rng.uniform(0.5, 2.0, n)
    A = slactl.SparseMatrix.from_scipy(S)
    monkeypatch.setattr(_prolongator, "_FILTER_CHUNK", chunk)
    F = filtered_matrix(A, 0.08, None if near_nullspace == "constant" else torch.from_numpy(b))
    want, ok = _filtered_reference(S, 0.08, b)
    Fs = F.to_scipy()
    assert Fs.nnz == want.nnz < S.nnz and not ok.all() and ok.sum() > n // 2  # both kinds of rows occur
    np.testing.assert_allclose(Fs.toarray(), want.toarray(), rtol=1e-13, atol=1e-15)
    assert abs(Fs - Fs.T).max() == 0
    np.testing.assert_allclose((Fs @ b)[ok], (S @ b)[ok], rtol=1e-12, atol=1e-12)


def test_filtered_matrix_is_none_where_little_is_weak():
    """Nothing weak, or under 5% of the entries: A smooths (None)."""
    S = poisson2d(16).tolil()
    assert filtered_matrix(slactl.SparseMatrix.from_scipy(S.tocsr()), 0.08) is None
    S[0, 1] = S[1, 0] = -1e-3  # two weak entries of 1216
    assert filtered_matrix(slactl.SparseMatrix.from_scipy(S.tocsr()), 0.08) is None
    assert filtered_matrix(slactl.SparseMatrix.from_scipy(generate("anisotropic2d", 16).matrix), 0.08) is not None
    # stored zeros (30% of the entries) are not weak couplings
    P = poisson2d(16).tocoo()
    extra = np.arange(0, 256 - 3, 3)
    rows, cols = np.r_[P.row, extra, extra + 3], np.r_[P.col, extra + 3, extra]
    padded = sp.csr_matrix((np.r_[P.data, np.zeros(2 * extra.size)], (rows, cols)), shape=P.shape)
    assert padded.nnz > 1.1 * P.nnz and filtered_matrix(slactl.SparseMatrix.from_scipy(padded), 0.08) is None
