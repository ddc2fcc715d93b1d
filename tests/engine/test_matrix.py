"""`SparseMatrix`: constructors and conversions (with their gradients), properties, batching,
structure queries and argument errors."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from slactl import SparseMatrix
from slactl.errors import DeviceError, ShapeError, UsageError

from .catalog import CATALOG, assert_matches_dense, dense_coo, densify, gradcheck


def _scipy(problem):
    S = sp.coo_array((problem.values.numpy(), (problem.row.numpy(), problem.col.numpy())), shape=problem.shape)
    return S.tocsr()


def _assert_canonical(A):
    crow, col = A.crow.long(), A.col.long()
    assert crow[0] == 0 and crow[-1] == A.nnz and bool((crow[1:] >= crow[:-1]).all())
    keys = A.row.long() * A.shape[1] + col
    assert bool((keys[1:] > keys[:-1]).all()), "columns must be sorted and unique within each row"


# ------------------------------------------------------------------------------ COO constructor
def test_coo_constructor_sums_duplicates_into_canonical_csr(problem):
    A = problem.matrix(problem.values)
    _assert_canonical(A)
    S = _scipy(problem)
    S.sum_duplicates()
    assert A.shape == problem.shape and A.nnz == S.nnz
    assert A.crow.tolist() == S.indptr.tolist() and A.col.tolist() == S.indices.tolist()
    np.testing.assert_allclose(A.values.numpy(), S.data, rtol=1e-14)


def test_coo_gradient_flows_back_in_the_given_order(problem, batched):
    v = problem.coo_values(batched)
    assert_matches_dense(lambda v: densify(problem.matrix(v)), problem.dense, [v])
    gradcheck(lambda v: problem.matrix(v).values, [v])


def test_coo_gradient_of_a_duplicated_entry_is_shared():
    v = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    A = SparseMatrix(v, [1, 0, 1, 1], [0, 1, 0, 0], (2, 2))  # (1, 0) three times
    assert A.values.tolist() == [2.0, 8.0]
    (A.values * torch.tensor([10.0, 100.0], dtype=torch.float64)).sum().backward()
    assert v.grad.tolist() == [100.0, 10.0, 100.0, 100.0]


def test_shape_is_inferred_and_index_inputs_may_be_lists_arrays_or_int32():
    p = CATALOG["rectangular_tall"]
    ref = p.matrix(p.values)
    inferred = SparseMatrix(p.values, p.row, p.col)
    assert inferred.shape == (int(p.row.max()) + 1, int(p.col.max()) + 1)
    for row, col in [(p.row.tolist(), p.col.tolist()), (p.row.numpy(), p.col.numpy()), (p.row.int(), p.col.int())]:
        A = SparseMatrix(p.values, row, col, p.shape)
        assert torch.equal(A.crow, ref.crow) and torch.equal(A.col, ref.col) and torch.equal(A.values, ref.values)


def test_integer_values_become_floating():
    A = SparseMatrix([1, 2], [0, 1], [1, 0], (2, 2))
    assert A.dtype == torch.get_default_dtype()


def test_empty_matrix_from_empty_lists():
    A = SparseMatrix([], [], [], (3, 4))
    assert A.nnz == 0 and A.shape == (3, 4) and A.dtype.is_floating_point
    assert torch.equal(A.to_dense(), torch.zeros(3, 4, dtype=A.dtype))
    assert torch.equal(A @ torch.ones(4, dtype=A.dtype), torch.zeros(3, dtype=A.dtype))


@pytest.mark.parametrize(
    "args,error,match",
    [
        (([1.0, 2.0], [0, 1], [0]), ShapeError, "row has 2 entries and col 1; they must match"),
        (([1.0], [0, 1], [0, 1], (2, 2)), ShapeError, r"values must have shape \[nnz\] or \[B, nnz\] with nnz = 2"),
        (([1.0, 2.0], [0, 2], [0, 1], (2, 2)), ShapeError, r"row indices must lie in \[0, 2\), found 0..2"),
        (([1.0, 2.0], [0, 1], [-1, 1], (2, 2)), ShapeError, r"col indices must lie in \[0, 2\), found -1..1"),
        (([1.0], [0.0], [0], (2, 2)), UsageError, "row must hold integer indices"),
        (([1.0], [[0]], [0], (2, 2)), ShapeError, "row must be 1-D"),
        (([1.0], [0], [0], (-1, 2)), ShapeError, "shape must be non-negative"),
    ],
)
def test_constructor_errors_say_what_is_expected(args, error, match):
    with pytest.raises(error, match=match):
        SparseMatrix(*args)


# ---------------------------------------------------------------------------- dense <-> sparse
def test_from_dense(problem, batched):
    v = problem.coo_values(batched)
    D = problem.dense(v).detach()
    A = SparseMatrix.from_dense(D)
    _assert_canonical(A)
    nonzero = D != 0 if not batched else (D != 0).any(0)
    assert A.nnz == int(nonzero.sum()) and A.batch_size == (2 if batched else None)
    torch.testing.assert_close(densify(A), D, rtol=0, atol=0)
    # the gradient reaches the dense input at the stored positions (and only there)
    assert_matches_dense(lambda v: densify(SparseMatrix.from_dense(problem.dense(v))), problem.dense, [v])
    mask = nonzero.to(D.dtype)  # multiplying by the mask keeps the pattern fixed under gradcheck's steps
    gradcheck(lambda d: SparseMatrix.from_dense(d * mask).values, [D.clone().requires_grad_()])


def test_from_dense_keep_zeros_stores_everything():
    D = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    A = SparseMatrix.from_dense(D, keep_zeros=True)
    assert A.nnz == 6 and torch.equal(A.values, D.reshape(-1))
    with pytest.raises(ShapeError, match=r"from_dense takes \[m, n\] or \[B, m, n\]"):
        SparseMatrix.from_dense(torch.ones(3))


def test_to_dense(problem, batched):
    v = problem.coo_values(batched)
    assert_matches_dense(lambda v: problem.matrix(v).to_dense(), problem.dense, [v])
    A = problem.matrix(v.detach())
    gradcheck(lambda w: A.with_values(w).to_dense(), [A.values.clone().requires_grad_()])


# ------------------------------------------------------------------------------------- scipy
SCIPY_FORMATS = ["csr", "csc", "coo", "lil", "dok", "bsr"]


@pytest.mark.parametrize("fmt", SCIPY_FORMATS)
def test_from_scipy_every_format(problem, fmt):
    S = sp.coo_array((problem.values.numpy(), (problem.row.numpy(), problem.col.numpy())), shape=problem.shape)
    A = SparseMatrix.from_scipy(S.asformat(fmt))
    _assert_canonical(A)
    torch.testing.assert_close(densify(A), problem.dense(problem.values), rtol=1e-14, atol=1e-14)
    assert A.dtype == torch.float64 and A.pattern.index_dtype == torch.int32


def test_from_scipy_sums_duplicates_and_sorts_unsorted_rows():
    data, indices, indptr = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 0, 1, 0]), np.array([0, 3, 4])
    S = sp.csr_matrix((data, indices, indptr), shape=(2, 2))  # row 0: columns 1, 0, 1 (unsorted, duplicate)
    A = SparseMatrix.from_scipy(S)
    assert A.crow.tolist() == [0, 2, 3] and A.col.tolist() == [0, 1, 0] and A.values.tolist() == [2.0, 4.0, 4.0]


def test_from_scipy_neither_changes_nor_aliases_its_input():
    data, indices, indptr = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 0, 1, 0]), np.array([0, 3, 4])
    S = sp.csr_array((data.copy(), indices.copy(), indptr.copy()), shape=(2, 2))
    A = SparseMatrix.from_scipy(S)
    assert S.data.tolist() == data.tolist() and S.indices.tolist() == indices.tolist()
    assert S.indptr.tolist() == indptr.tolist()
    C = sp.random(5, 5, density=0.5, format="csr", rng=0)  # canonical already
    B = SparseMatrix.from_scipy(C)
    before = B.values.clone()
    C.data[:] = 7.0
    C.indices[:] = 0
    assert torch.equal(B.values, before) and B.col.tolist() != [0] * B.nnz
    assert torch.equal(A.values, torch.tensor([2.0, 4.0, 4.0], dtype=torch.float64))


def test_from_scipy_dtype_and_errors():
    S = sp.random(4, 3, density=0.5, rng=0)
    assert SparseMatrix.from_scipy(S, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(UsageError, match="expects a scipy.sparse matrix, got ndarray"):
        SparseMatrix.from_scipy(S.toarray())


def test_to_scipy_round_trip_and_copies(problem):
    v = problem.coo_values(False)
    A = problem.matrix(v)
    before = A.values.detach().clone()
    S = A.to_scipy()
    assert isinstance(S, sp.csr_array) and S.shape == problem.shape
    ref = _scipy(problem)
    np.testing.assert_allclose(S.toarray(), ref.toarray(), rtol=1e-14)
    S.data[:] = 0.0
    S.indices[:] = 0
    assert torch.equal(A.values, before), "to_scipy must not hand out the values' memory"
    assert torch.equal(A.col, problem.matrix(v).col), "to_scipy must not hand out the pattern's arrays"
    with pytest.raises(UsageError, match=r"index one first: A\[i\]"):
        problem.matrix(problem.coo_values(True)).to_scipy()


# ------------------------------------------------------------------------------------- torch
def test_from_torch_coo_with_duplicates_is_differentiable():
    p = CATALOG["duplicates"]
    idx = torch.stack([p.row, p.col])

    def via_coo(v):
        return densify(SparseMatrix.from_torch(torch.sparse_coo_tensor(idx, v, p.shape)))

    assert_matches_dense(via_coo, p.dense, [p.coo_values(False)])
    gradcheck(lambda v: SparseMatrix.from_torch(torch.sparse_coo_tensor(idx, v, p.shape)).values, [p.coo_values(False)])


def test_from_torch_csr_is_differentiable(problem):
    S = _scipy(problem)
    S.sum_duplicates()
    crow, col = torch.as_tensor(S.indptr), torch.as_tensor(S.indices)

    def via_csr(v):
        return SparseMatrix.from_torch(torch.sparse_csr_tensor(crow, col, v, problem.shape))

    row = torch.repeat_interleave(torch.arange(problem.shape[0]), torch.as_tensor(np.diff(S.indptr)))
    v = torch.as_tensor(S.data).clone().requires_grad_()
    assert_matches_dense(lambda v: densify(via_csr(v)), lambda v: dense_coo(v, row, col.long(), problem.shape), [v])
    gradcheck(lambda v: via_csr(v).values, [v])


@pytest.mark.parametrize("layout", ["csc", "bsr", "dense"])
def test_from_torch_other_layouts(layout):
    p = CATALOG["nonsymmetric"]
    D = p.dense(p.values)
    t = {"csc": D.to_sparse_csc(), "bsr": D.to_sparse_bsr((2, 2)), "dense": D}[layout]
    A = SparseMatrix.from_torch(t)
    _assert_canonical(A)
    assert torch.equal(densify(A), D)
    # a blocked layout stores the zeros inside its blocks; the others store the nonzeros only
    assert A.nnz == (t.values().numel() if layout == "bsr" else int((D != 0).sum()))


def test_from_torch_rejects_batched_sparse_tensors():
    with pytest.raises(ShapeError, match=r"use values \[B, nnz\] for batches"):
        SparseMatrix.from_torch(torch.eye(3, dtype=torch.float64).expand(2, 3, 3).to_sparse())


def test_to_torch(problem):
    A = problem.matrix(problem.values)
    csr = A.to_torch()
    assert csr.layout == torch.sparse_csr and torch.equal(csr.to_dense(), densify(A))
    assert csr.values().data_ptr() == A.values.data_ptr()  # documented: shares memory
    coo = A.to_torch(torch.sparse_coo)
    assert coo.layout == torch.sparse_coo and coo.is_coalesced() and torch.equal(coo.to_dense(), densify(A))
    with pytest.raises(UsageError, match="layout must be torch.sparse_csr or torch.sparse_coo"):
        A.to_torch(torch.sparse_csc)
    with pytest.raises(UsageError, match=r"index one first: A\[i\]"):
        A.with_values(A.values.expand(2, -1)).to_torch()


# ----------------------------------------------------------------------------------- from_csr
def test_from_csr_canonicalizes_rows():
    A = SparseMatrix.from_csr([0, 3, 3, 4], [2, 0, 2, 1], [1.0, 2.0, 3.0, 4.0], (3, 3))
    assert A.crow.tolist() == [0, 2, 2, 3] and A.col.tolist() == [0, 2, 1] and A.values.tolist() == [2.0, 4.0, 4.0]
    trusted = SparseMatrix.from_csr(A.crow, A.col, A.values, (3, 3), check=False)
    assert trusted.pattern.crow is A.crow and torch.equal(trusted.to_dense(), A.to_dense())


@pytest.mark.parametrize(
    "crow,match",
    [
        ([0, 1, 2], r"crow must have m \+ 1 = 4 entries"),
        ([1, 2, 3, 3], "crow must start at 0, never decrease, and end at nnz"),
        ([0, 2, 1, 3], "never decrease"),
        ([0, 1, 2, 2], "end at nnz"),
    ],
)
def test_from_csr_rejects_bad_offsets(crow, match):
    with pytest.raises(ShapeError, match=match):
        SparseMatrix.from_csr(crow, [0, 1, 2], [1.0, 2.0, 3.0], (3, 3))


# -------------------------------------------------------------------------- dtype and device
def test_dtype_conversion_is_differentiable():
    p = CATALOG["random_square"]
    v = p.coo_values(False)
    A = p.matrix(v)
    for B in (A.float(), A.to(torch.float32), A.to(dtype=torch.float32)):
        assert B.dtype == torch.float32 and B.pattern is A.pattern
    A.float().values.sum().backward()
    assert v.grad.dtype == torch.float64 and torch.equal(v.grad, torch.ones_like(v))
    assert A.double() is A and A.to() is A and A.cpu() is A


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_device_round_trip_is_differentiable_and_reuses_the_pattern():
    p = CATALOG["duplicates"]
    v = p.coo_values(True)
    A = p.matrix(v)
    G = A.cuda()
    assert G.device.type == "cuda" and G.pattern.device == G.device and G.is_batched
    assert A.to("cuda").pattern is G.pattern  # the moved pattern is cached
    assert G.cuda() is G and G.to(G.device) is G and G.to("cuda") is G
    assert G.cuda(0).pattern is G.pattern
    back = G.cpu()
    assert back.pattern is not A.pattern and torch.equal(back.crow, A.crow) and torch.equal(back.values, A.values)
    (G.values * 2).sum().backward()
    assert v.grad.device.type == "cpu" and torch.equal(v.grad, 2 * torch.ones_like(v))
    with pytest.raises(DeviceError, match=r"values are on cuda:0 but the pattern is on cpu; .*values\.to\('cpu'\)"):
        A.with_values(A.values.detach().cuda())


# ------------------------------------------------------------------------- properties, batches
def test_properties_and_repr():
    p = CATALOG["rectangular_wide"]
    v = p.coo_values(True)
    A = p.matrix(v)
    assert A.shape == (7, 13) and A.nnz == 27 and A.dtype == torch.float64 and A.device == torch.device("cpu")
    assert A.is_batched and A.batch_size == 2 and len(A) == 2 and A.requires_grad
    assert repr(A) == (
        "SparseMatrix(shape=(7, 13), nnz=27 (29.67%), batch=2, dtype=torch.float64, device=cpu, "
        "index=torch.int32, requires_grad=True)"
    )
    B = A.detach()[1]
    assert not B.is_batched and B.batch_size is None and not B.requires_grad
    assert repr(B) == "SparseMatrix(shape=(7, 13), nnz=27 (29.67%), dtype=torch.float64, device=cpu, index=torch.int32)"
    assert B.requires_grad_() is B and B.requires_grad
    assert repr(SparseMatrix([], [], [], (0, 3))).startswith("SparseMatrix(shape=(0, 3), nnz=0 (0.00%)")


def test_batch_indexing_is_differentiable(problem):
    v = problem.coo_values(True)
    A = problem.matrix(v)
    for i in range(2):
        assert A[i].pattern is A.pattern
        torch.testing.assert_close(densify(A[i]), problem.dense(v[i].detach()))
    gradcheck(lambda w: A.with_values(w)[1].values, [A.values.detach().clone().requires_grad_()])


def test_unbatched_matrix_cannot_be_indexed():
    A = CATALOG["poisson2d"].matrix(CATALOG["poisson2d"].values)
    with pytest.raises(UsageError, match=r"only a batched SparseMatrix can be indexed; A\[i\] picks matrix i"):
        A[0]
    with pytest.raises(UsageError, match="len\\(\\) is the batch size; this matrix is unbatched"):
        len(A)


def test_with_values_must_fit_the_pattern():
    A = CATALOG["poisson2d"].matrix(CATALOG["poisson2d"].values)
    with pytest.raises(ShapeError, match=r"values must have shape \[64\] or \[B, 64\] for this pattern, got \(63,\)"):
        A.with_values(torch.zeros(63, dtype=torch.float64))
    with pytest.raises(ShapeError, match="for this pattern"):
        A.with_values(torch.zeros(2, 2, 64, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_degenerate_shapes(shape):
    m, n = shape
    A = SparseMatrix([], [], [], shape)
    assert A.T.shape == (n, m) and A.to_dense().shape == shape and A.to_scipy().shape == shape
    assert (A @ torch.ones(n, dtype=A.dtype)).shape == (m,) and (A @ torch.ones(n, 2, dtype=A.dtype)).shape == (m, 2)
    assert (A @ A.T).shape == (m, m) and (A + A).nnz == 0 and A.diagonal().shape == (0,)
    assert A.sum(0).shape == (n,) and A.sum(1).shape == (m,) and float(A.sum()) == 0.0
    assert A.is_symmetric() == (m == n)


# ---------------------------------------------------------------------------------- structure
def test_diagonal(problem, batched):
    v = problem.coo_values(batched)
    assert_matches_dense(
        lambda v: problem.matrix(v).diagonal(), lambda v: torch.diagonal(problem.dense(v), dim1=-2, dim2=-1), [v]
    )
    A = problem.matrix(v.detach())
    gradcheck(lambda w: A.with_values(w).diagonal(), [A.values.clone().requires_grad_()])


def test_is_symmetric(problem, batched):
    v = problem.coo_values(batched).detach()
    D = problem.dense(v)
    dense_symmetric = problem.square and torch.equal(D, D.transpose(-1, -2))
    assert problem.matrix(v).is_symmetric() == dense_symmetric == problem.symmetric


def test_is_symmetric_tolerance_and_batches():
    p = CATALOG["poisson2d"]
    A = p.matrix(p.values)
    i = int(torch.nonzero(A.row < A.col)[0])  # one entry above the diagonal
    w = A.values.clone()
    w[i] += 1e-6
    assert not A.with_values(w).is_symmetric()
    assert A.with_values(w).is_symmetric(tol=1e-6) and not A.with_values(w).is_symmetric(tol=1e-8)
    assert not A.with_values(torch.stack([A.values, w])).is_symmetric()  # every matrix of a batch
    assert A.with_values(torch.stack([A.values, 2 * A.values])).is_symmetric()
    one_sided = SparseMatrix.from_dense(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    assert not one_sided.is_symmetric()
    zeros_stored = SparseMatrix([1.0, 0.0, 1.0], [0, 0, 1], [0, 1, 1], (2, 2))  # explicit zero at (0, 1)
    assert zeros_stored.is_symmetric()
    assert SparseMatrix([], [], [], (3, 3)).is_symmetric()


@pytest.mark.parametrize("case", ["symmetric", "values", "pattern", "batched", "tolerance"])
def test_is_symmetric_by_mirror_search_matches_scipy(case):
    """``is_symmetric`` finds each entry's mirror (binary search on the device, SciPy's transpose on
    the host; no transposed pattern cached): the answer is SciPy's ``max|A - A^T| <= tol max|A|``,
    also across small chunks."""
    rng = np.random.default_rng(1)
    B = sp.random(80, 80, density=0.05, random_state=1, format="csr")
    S = (B + B.T + sp.eye(80)).tocsr()
    if case == "values":
        S = S.tolil(); S[3, 7], S[7, 3] = 1.0, 1.5; S = S.tocsr()
    if case == "pattern":
        S = (S + sp.csr_matrix(([1e-3], ([2], [50])), shape=(80, 80))).tocsr()
    if case == "tolerance":
        S = S.tolil(); S[3, 7], S[7, 3] = 1.0, 1.0 + 1e-13; S = S.tocsr()
    A = SparseMatrix.from_scipy(S)
    want = abs(S - S.T).max() <= 1e-12 * abs(S).max()
    if case == "batched":
        values = torch.stack([A.values, A.values * rng.uniform(0.5, 2.0)])
        A = SparseMatrix.from_pattern(A.pattern, values)
    # the device's binary search (in chunks or not) and the host's SciPy transpose agree exactly
    searched = A._mirror_difference_by_search()
    assert A._mirror_difference_by_search(chunk=7) == searched == A._mirror_difference_host()
    assert (A._mirror_difference() is None) == (case == "pattern")
    assert A.is_symmetric(1e-12) == want
    # only a pattern without its mirror falls back to forming (and caching) the transpose
    assert ("transpose" in A.pattern._cache) == (case == "pattern")


def _hermitian_and_complex_symmetric() -> tuple[sp.csr_array, sp.csr_array]:
    """A hermitian and a complex symmetric matrix on one structurally symmetric pattern (80 x 80)."""
    B = sp.random(80, 80, density=0.05, random_state=2, format="csr")
    S = (B + B.T + sp.eye(80)).tocsr()
    upper = sp.triu(S, 1).tocsr()
    upper.data = np.random.default_rng(3).uniform(0.5, 1.0, upper.nnz)
    return sp.csr_array(S + 1j * (upper - upper.T)), sp.csr_array(S + 1j * (upper + upper.T))


@pytest.mark.parametrize("pattern", ["mirrored", "one_sided"])
def test_is_symmetric_with_conj_tests_hermitian(pattern):
    """``is_symmetric(conj=True)`` is ``max|A - A^H| <= tol max|A|`` (SciPy's answer), on the host's
    mirror path, the device's binary search, and the transposed pattern (a pattern without all its
    mirrors; an explicit zero there keeps a matrix hermitian)."""
    H, C = _hermitian_and_complex_symmetric()
    if pattern == "one_sided":
        dense = H.toarray()
        i, j = next((i, j) for i in range(80) for j in range(i + 1, 80) if dense[i, j] == 0 == dense[j, i])

        def one_sided(M):  # an explicit zero at (i, j), (j, i) not stored
            coo = M.tocoo()
            return sp.csr_array((np.r_[coo.data, 0j], (np.r_[coo.row, i], np.r_[coo.col, j])), shape=M.shape)

        H, C = one_sided(H), one_sided(C)
    for M, hermitian in ((H, True), (C, False)):
        A = SparseMatrix.from_scipy(M)
        assert (A._mirror_difference() is None) == (pattern == "one_sided")
        assert A.is_symmetric(1e-12, conj=True) == hermitian == (abs(M - M.conj().T).max() == 0)
        assert A.is_symmetric(1e-12) == (not hermitian)
        if pattern == "mirrored":
            for conj in (False, True):
                want = float(abs(M - (M.conj() if conj else M).T).max())
                searched = A._mirror_difference_by_search(chunk=7, conj=conj)
                assert searched == A._mirror_difference_host(conj=conj) == A._mirror_difference(conj=conj)
                assert searched[0] == pytest.approx(want, rel=1e-15)


def test_lazy_conjugate_and_negative_views_on_the_host():
    """Values that are ``torch.conj`` or ``.imag`` views (conjugate / negative bit set: ``numpy()``
    refuses them) on the host's paths."""
    H = _hermitian_and_complex_symmetric()[0]
    A = SparseMatrix.from_scipy(H)
    conj = A.map(torch.conj)
    assert conj.values.is_conj()
    assert not conj.is_symmetric(1e-12) and conj.is_symmetric(1e-12, conj=True)
    np.testing.assert_array_equal(conj.to_scipy().toarray(), H.conj().toarray())
    imag = A.with_values(A.values.conj().imag)  # -Im(H): skew-symmetric
    assert imag.values.is_neg()
    assert not imag.is_symmetric(1e-12) and A.with_values(A.values.real).is_symmetric()
    np.testing.assert_array_equal(imag.to_scipy().toarray(), -H.imag.toarray())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_is_symmetric_in_half_precision_on_the_host(dtype):
    """bfloat16 (no NumPy dtype) and float16 values: the host's mirror path transposes positions and
    compares the values in torch."""
    S = SparseMatrix.from_scipy(sp.csr_array(_hermitian_and_complex_symmetric()[0].real))
    half = S.to(dtype=dtype)
    w = half.values.clone()
    w[int(torch.nonzero(half.row < half.col)[0])] += 0.5
    assert half.is_symmetric() and not half.with_values(w).is_symmetric()
    assert half.with_values(w).is_symmetric(0.6) and not half.with_values(w).is_symmetric(0.1)
