"""cuSPARSE ALG2 products through ctypes (:mod:`slactl.engine.ops.cusparse_spgemm`).

Reference: SciPy's product (values, and the pattern of ``|A| @ |B|``: every structural product,
no cancellation). On CUDA (``-m gpu``): random rectangular factors in float64 and float32, empty
rows and an empty factor, and the chunked Galerkin products of sa-amg; on the CPU, which inputs
it declines (the callers fall back to ``torch.sparse.mm`` or SciPy).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl.engine.ops import cusparse_spgemm



def _random(m: int, n: int, density: float, seed: int) -> sp.csr_matrix:
    M = sp.random(m, n, density=density, random_state=seed, format="csr")
    M.data = np.random.default_rng(seed).standard_normal(M.nnz)
    return M


def _reference(A: sp.csr_matrix, B: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    C = (A @ B).tocsr()
    structure = (abs(A) @ abs(B)).tocsr()  # the structural product (no entry cancels)
    structure.sort_indices()
    return C, structure


def test_declines_cpu_tensors():
    A = slactl.SparseMatrix.from_scipy(_random(20, 20, 0.2, 0))
    a = A.pattern.torch_csr(A.values)
    assert not cusparse_spgemm.available(a, a)
    assert not cusparse_spgemm.available_for(A, A)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_declines_what_it_cannot_multiply_on_cuda():
    S = _random(20, 20, 0.2, 0)
    Ac = slactl.SparseMatrix.from_scipy(S, device="cuda")
    a = Ac.pattern.torch_csr(Ac.values)
    assert cusparse_spgemm.available(a, a) and cusparse_spgemm.available_for(Ac, Ac)
    wide = torch.sparse_csr_tensor(Ac.pattern.crow.long(), Ac.pattern.col.long(), Ac.values, size=Ac.shape)
    assert not cusparse_spgemm.available(wide, wide)  # 64-bit indices
    half = Ac.pattern.torch_csr(Ac.values.half())
    assert not cusparse_spgemm.available(half, half)
    assert not cusparse_spgemm.available(a, a.to(torch.float32))  # mixed dtypes
    single = slactl.SparseMatrix.from_scipy(S, device="cuda", dtype=torch.float32)
    assert not cusparse_spgemm.available_for(Ac, single)
    batch = slactl.SparseMatrix.from_pattern(Ac.pattern, torch.stack([Ac.values, Ac.values]))
    assert not cusparse_spgemm.available_for(Ac, batch)  # a batch of value vectors


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(300, 200, 250), (2, 50, 7), (400, 30, 500)])
def test_product_equals_scipy(dtype, shape):
    m, k, n = shape
    As, Bs = _random(m, k, 0.2 if m < 10 else 0.05, 1).tolil(), _random(k, n, 0.05, 2)
    As[m - 1, :] = 0  # an empty row
    As = As.tocsr()
    As.eliminate_zeros()
    A = slactl.SparseMatrix.from_scipy(As, dtype=dtype, device="cuda")
    B = slactl.SparseMatrix.from_scipy(Bs, dtype=dtype, device="cuda")
    a, b = A.pattern.torch_csr(A.values), B.pattern.torch_csr(B.values)
    assert cusparse_spgemm.available(a, b)
    crow, col, val = cusparse_spgemm.spgemm(a, b)
    C, structure = _reference(As.astype(np.float64), Bs.astype(np.float64))
    assert crow.dtype == col.dtype == torch.int32 and val.dtype == dtype
    assert np.array_equal(crow.cpu().numpy(), structure.indptr) and np.array_equal(col.cpu().numpy(), structure.indices)
    got = sp.csr_matrix((val.double().cpu().numpy(), col.cpu().numpy(), crow.cpu().numpy()), shape=(m, n))
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(got.toarray(), C.toarray(), rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_empty_products():
    """An empty factor (answered without cuSPARSE), and two nonempty factors whose product is
    empty (A's columns meet only B's empty rows: cuSPARSE's own answer)."""
    A = slactl.SparseMatrix.from_scipy(_random(30, 20, 0.1, 3), device="cuda")
    Z = slactl.SparseMatrix.from_scipy(sp.csr_matrix((20, 10)), device="cuda")
    crow, col, val = cusparse_spgemm.spgemm(A.pattern.torch_csr(A.values), Z.pattern.torch_csr(Z.values))
    assert crow.shape == (31,) and int(crow.abs().sum()) == 0 and col.numel() == val.numel() == 0
    left = sp.csr_matrix((np.ones(3), ([0, 1, 2], [0, 1, 2])), shape=(4, 6))  # columns 0-2 only
    right = sp.csr_matrix((np.ones(2), ([4, 5], [1, 3])), shape=(6, 5))  # rows 4-5 only
    L, R = (slactl.SparseMatrix.from_scipy(M, device="cuda") for M in (left, right))
    crow, col, val = cusparse_spgemm.spgemm(L.pattern.torch_csr(L.values), R.pattern.torch_csr(R.values))
    assert crow.tolist() == [0] * 5 and col.numel() == val.numel() == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("chunked", [True, False])
def test_chunked_galerkin_products_by_alg2_equal_scipy(chunked, monkeypatch):
    """sa-amg's Galerkin product through ALG2, in chunks and whole, against SciPy; the same as the
    default algorithm's (torch.sparse.mm) to rounding; and above _ALG2_MAX_PRODUCTS products the
    default algorithm multiplies."""
    from slactl.engine.preconditioners import SmoothedAggregation, _aggregation
    from problems import poisson2d

    S = poisson2d(60)
    A = slactl.SparseMatrix.from_scipy(S, device="cuda")
    M = SmoothedAggregation(A, max_coarse=20)
    P, R = M.levels[0].P, M.levels[0].R
    assert cusparse_spgemm.available_for(R, A, P)
    calls = []
    real = cusparse_spgemm.spgemm
    monkeypatch.setattr(cusparse_spgemm, "spgemm", lambda a, b, *stats: calls.append(1) or real(a, b, *stats))
    got = _aggregation.sparse_product(R, A, P, max_products=3000 if chunked else None, alg2_products=10**7).to_scipy()
    ref = (R.to_scipy() @ S @ P.to_scipy()).tocsr()
    ref.sort_indices()
    assert (got.indptr == ref.indptr).all() and (got.indices == ref.indices).all()
    np.testing.assert_allclose(got.data, ref.data, rtol=1e-13, atol=1e-13)
    # two products per chunk: one chunk with the large budget, several with 3000 products
    assert (len(calls) > 2 and len(calls) % 2 == 0) if chunked else len(calls) == 2
    calls.clear()
    default = _aggregation.sparse_product(R, A, P).to_scipy()  # (no alg2_products: the default algorithm)
    np.testing.assert_allclose(default.toarray(), got.toarray(), rtol=1e-13, atol=1e-13)
    monkeypatch.setattr(_aggregation, "_ALG2_MAX_PRODUCTS", 100)
    _aggregation.sparse_product(R, A, P, alg2_products=10**7)
    assert calls == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stats_report_the_memory_the_product_held():
    """``stats["peak_bytes"]`` against torch's own count of the peak the product allocated."""
    As, Bs = _random(20000, 15000, 0.0008, 4), _random(15000, 18000, 0.0008, 5)
    A = slactl.SparseMatrix.from_scipy(As, device="cuda")
    B = slactl.SparseMatrix.from_scipy(Bs, device="cuda")
    a, b = A.pattern.torch_csr(A.values), B.pattern.torch_csr(B.values)
    cusparse_spgemm.spgemm(a, b)  # (the handle and the library's own allocations first)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    stats: dict = {}
    out = cusparse_spgemm.spgemm(a, b, stats)
    torch.cuda.synchronize()
    actual = torch.cuda.max_memory_allocated() - before
    assert out[1].numel() == (As @ Bs).nnz
    assert abs(actual - stats["peak_bytes"]) <= 0.02 * actual + 64 * 512  # (the allocator's rounding)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_budgeted_galerkin_product_equals_scipy(monkeypatch):
    """Chunks sized by the memory left (none: the floor's 16 chunks; a little; all of it in one)
    give SciPy's product, in fewer cuSPARSE calls the more room there is."""
    from slactl.engine.preconditioners import SmoothedAggregation, _aggregation
    from problems import poisson2d

    S = poisson2d(80)
    A = slactl.SparseMatrix.from_scipy(S, device="cuda")
    M = SmoothedAggregation(A, max_coarse=20)
    P, R = M.levels[0].P, M.levels[0].R
    ref = (R.to_scipy() @ S @ P.to_scipy()).tocsr()
    ref.sort_indices()
    monkeypatch.setattr(_aggregation, "_CHUNK_PRODUCTS", 1000)
    calls = []
    real = cusparse_spgemm.spgemm
    monkeypatch.setattr(cusparse_spgemm, "spgemm", lambda a, b, *stats: calls.append(1) or real(a, b, *stats))
    counts = []
    for room in (0, 200_000, 10**10):
        calls.clear()
        memory = _aggregation.MemoryBudget(torch.cuda.memory_allocated() + room)
        got = _aggregation.sparse_product(R, A, P, alg2_products=500, memory=memory).to_scipy()
        assert (got.indptr == ref.indptr).all() and (got.indices == ref.indices).all()
        np.testing.assert_allclose(got.data, ref.data, rtol=1e-13, atol=1e-13)
        assert memory.measured and memory.bytes_per_product > 0
        counts.append(len(calls))
    assert counts[0] >= counts[1] >= counts[2] == 2 and counts[0] > 2
