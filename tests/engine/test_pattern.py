"""`Pattern`: CSR structure from COO, and the cached symbolic work (transpose, union, diagonal,
block diagonal) checked against scipy.sparse."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from slactl.engine.pattern import Pattern, index_dtype_for
from slactl.errors import UsageError

from .catalog import CATALOG


def _scipy_pattern(problem):
    """scipy's canonical CSR of the problem (duplicates summed, columns sorted)."""
    S = sp.coo_array((problem.values.numpy(), (problem.row.numpy(), problem.col.numpy())), shape=problem.shape)
    S = S.tocsr()
    S.sum_duplicates()
    return S


def _pattern(problem):
    return Pattern.from_coo(problem.row, problem.col, problem.shape)


def test_from_coo_matches_scipy(problem):
    pat, inverse = _pattern(problem)
    S = _scipy_pattern(problem)
    assert pat.shape == problem.shape and pat.nnz == S.nnz
    assert pat.crow.tolist() == S.indptr.tolist() and pat.col.tolist() == S.indices.tolist()
    assert pat.index_dtype == torch.int32 and pat.crow.dtype == torch.int32
    # COO entry k lands on CSR position inverse[k]: summing COO values there gives scipy's data
    csr_values = torch.zeros(pat.nnz, dtype=torch.float64).index_add(0, inverse, problem.values)
    np.testing.assert_allclose(csr_values.numpy(), S.data, rtol=1e-14)
    assert torch.equal(pat.row[inverse].long(), problem.row) and torch.equal(pat.col[inverse].long(), problem.col)


def test_row_and_keys(problem):
    pat, _ = _pattern(problem)
    fresh = Pattern(pat.crow, pat.col, pat.shape)  # row computed from crow, not carried over
    assert torch.equal(fresh.row, pat.row)
    keys = fresh.keys()
    assert keys.dtype == torch.int64
    assert torch.equal(keys, fresh.row.long() * pat.shape[1] + fresh.col.long())
    assert bool((keys[1:] > keys[:-1]).all())  # sorted, no duplicates


def test_index_dtype_switches_to_int64_past_int32():
    assert index_dtype_for() == torch.int32
    assert index_dtype_for(5, 2**31 - 1) == torch.int32
    assert index_dtype_for(5, 2**31) == torch.int64
    pat, _ = Pattern.from_coo(torch.tensor([0, 2, 2]), torch.tensor([2**31 + 5, 0, 7]), (3, 2**31 + 10))
    assert pat.index_dtype == torch.int64 and pat.crow.dtype == torch.int64
    assert pat.col.tolist() == [2**31 + 5, 0, 7] and pat.row.tolist() == [0, 2, 2]


def test_empty_pattern():
    pat, inverse = Pattern.from_coo(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), (3, 4))
    assert pat.nnz == 0 and inverse.numel() == 0 and pat.crow.tolist() == [0, 0, 0, 0]
    t, perm = pat.transpose()
    assert t.shape == (4, 3) and t.crow.tolist() == [0] * 5 and perm.numel() == 0


def test_transpose_matches_scipy(problem):
    pat, inverse = _pattern(problem)
    S = _scipy_pattern(problem)
    values = torch.as_tensor(S.data)
    t, perm = pat.transpose()
    St = S.T.tocsr()
    St.sort_indices()
    assert t.shape == St.shape
    assert t.crow.tolist() == St.indptr.tolist() and t.col.tolist() == St.indices.tolist()
    np.testing.assert_array_equal(values[perm.long()].numpy(), St.data)
    assert torch.equal(t.row, Pattern(t.crow, t.col, t.shape).row)
    assert pat.transpose()[0] is t  # cached
    back, inv = t.transpose()
    assert back is pat  # the transpose of the transpose is the original pattern
    assert torch.equal(values[perm.long()][inv.long()], values)


def test_union_matches_scipy(problem):
    pa, _ = _pattern(problem)
    S = sp.random(*problem.shape, density=0.3, format="csr", rng=5)
    pb = Pattern(torch.as_tensor(S.indptr), torch.as_tensor(S.indices), S.shape)
    union, ia, ib = pa.union(pb)
    ref = ((_scipy_pattern(problem) != 0).astype(int) + (S != 0).astype(int)).tocsr()
    ref.sort_indices()
    assert union.crow.tolist() == ref.indptr.tolist() and union.col.tolist() == ref.indices.tolist()
    assert torch.equal(union.row[ia.long()], pa.row.to(union.index_dtype))
    assert torch.equal(union.col[ia.long()], pa.col.to(union.index_dtype))
    assert torch.equal(union.col[ib.long()], pb.col.to(union.index_dtype))
    assert pa.union(pb)[0] is union  # cached per (pattern, other)


def test_same_as():
    p = CATALOG["poisson2d"]
    a, _ = _pattern(p)
    b, _ = _pattern(p)
    assert a is not b and a.same_as(b) and b.same_as(a) and a.same_as(a)
    c, _ = Pattern.from_coo(p.row[1:], p.col[1:], p.shape)
    assert not a.same_as(c)
    d, _ = Pattern.from_coo(p.row, p.col, (17, 16))
    assert not a.same_as(d)
    e, _ = Pattern.from_coo(p.row, (p.col + 1) % 16, p.shape)  # same nnz and shape, other columns
    assert not a.same_as(e)


def test_diagonal_positions(problem):
    pat, _ = _pattern(problem)
    rows, pos = pat.diagonal_positions()
    S = _scipy_pattern(problem)
    stored = [i for i in range(min(S.shape)) if i in S.indices[S.indptr[i] : S.indptr[i + 1]]]
    assert rows.tolist() == stored
    assert torch.equal(pat.row[pos].long(), rows) and torch.equal(pat.col[pos].long(), rows)


@pytest.mark.parametrize("copies", [1, 3])
def test_block_diagonal_matches_scipy(problem, copies):
    pat, _ = _pattern(problem)
    block = pat.block_diagonal(copies)
    if copies == 1:
        assert block is pat
        return
    S = _scipy_pattern(problem)
    ref = sp.block_diag([S] * copies, format="csr")
    ref.sort_indices()
    assert block.shape == ref.shape
    assert block.crow.tolist() == ref.indptr.tolist() and block.col.tolist() == ref.indices.tolist()
    assert block.crow.dtype == block.col.dtype
    assert pat.block_diagonal(copies) is block


def test_pair_cache_is_bounded_and_keyed_by_identity():
    base, _ = _pattern(CATALOG["random_square"])
    calls = []

    def build(i):
        def f():
            calls.append(i)
            return i
        return f

    others = [_pattern(CATALOG["random_square"])[0] for _ in range(10)]
    assert base.cached_pair("op", others[0], build(0)) == 0
    assert base.cached_pair("op", others[0], build(99)) == 0 and calls == [0]  # hit
    for i, other in enumerate(others[1:], start=1):
        base.cached_pair("op", other, build(i))
    assert len(base._pair_cache) <= 8
    assert base.cached_pair("op", others[0], build(100)) == 100  # the oldest entry was evicted


def test_pair_with_itself_is_cached_without_a_reference_cycle():
    """``A @ A`` caches its symbolic work on A's pattern paired with itself; that entry must not
    keep the pattern (and its O(nnz) arrays) alive once the caller drops it: no cycle for the
    garbage collector to find, freed by reference counting alone."""
    import gc
    import weakref

    pat, _ = _pattern(CATALOG["random_square"])
    calls = []
    assert pat.cached_pair("op", pat, lambda: calls.append(1) or "v") == "v"
    assert pat.cached_pair("op", pat, lambda: calls.append(2) or "w") == "v" and calls == [1]
    ref = weakref.ref(pat)
    gc.disable()
    try:
        del pat
        assert ref() is None
    finally:
        gc.enable()


def test_cached_builds_once():
    pat, _ = _pattern(CATALOG["duplicates"])
    calls = []
    assert pat.cached("k", lambda: calls.append(1) or "v") == "v"
    assert pat.cached("k", lambda: calls.append(2) or "w") == "v" and calls == [1]


def test_to_same_device_is_identity_and_torch_csr_is_unbatched():
    pat, _ = _pattern(CATALOG["poisson2d"])
    assert pat.to("cpu") is pat and pat.device == torch.device("cpu")
    values = torch.arange(pat.nnz, dtype=torch.float64)
    csr = pat.torch_csr(values)
    assert csr.layout == torch.sparse_csr and torch.equal(csr.values(), values)
    with pytest.raises(UsageError, match="use block_diagonal for batches"):
        pat.torch_csr(values.expand(2, -1))
    assert repr(pat) == "Pattern(shape=(16, 16), nnz=64, index=torch.int32, device=cpu)"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_to_cuda_is_cached_and_keeps_rows():
    pat, _ = _pattern(CATALOG["duplicates"])
    gpu = pat.to("cuda")
    assert gpu.device.type == "cuda" and pat.to("cuda") is gpu
    assert gpu.to("cuda") is gpu and gpu.to(torch.device("cuda", torch.cuda.current_device())) is gpu
    assert gpu.to("cpu") is not pat and gpu.to("cpu").same_as(pat)
    assert torch.equal(gpu.row.cpu(), pat.row) and torch.equal(gpu.crow.cpu(), pat.crow)
