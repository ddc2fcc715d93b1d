"""SpGEMM (``A @ B``, both sparse): forward and gradients against dense torch, gradcheck, cache,
errors, and a backward that never builds an m x n array."""

import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl import SparseMatrix
from slactl.engine.ops import _spgemm_host, spgemm
from slactl.errors import DeviceError, DtypeError, ShapeError

from ..catalog import CATALOG, LargestAllocation, Problem, assert_matches_dense, dense_coo, densify, gradcheck

CASES = [  # (right operand, which operands are batched)
    ("self", "none"),
    ("self", "both"),
    ("transpose", "none"),
    ("transpose", "left"),
    ("transpose", "right"),
    ("transpose", "both"),
    ("random", "none"),
    ("random", "left"),
]


def _right_operand(p: Problem, kind: str) -> Problem:
    """A right factor for ``p``: ``p`` itself (square only), its transpose, or an unrelated pattern."""
    if kind == "self":
        return p
    if kind == "transpose":
        # same coordinates transposed, values independent of p's
        g = torch.Generator().manual_seed(7)
        vals = torch.randn(p.values.shape, generator=g, dtype=torch.float64)
        return Problem(p.name + "_T", vals, p.col, p.row, (p.shape[1], p.shape[0]))
    S = sp.random(p.shape[1], 5, density=0.4, format="coo", rng=11)
    return Problem(
        "random_right",
        torch.as_tensor(S.data, dtype=torch.float64),
        torch.as_tensor(S.coords[0], dtype=torch.int64),
        torch.as_tensor(S.coords[1], dtype=torch.int64),
        (p.shape[1], 5),
    )


def _operands(problem, kind, batching, device):
    if kind == "self" and not problem.square:
        pytest.skip("A @ A needs a square A")
    other = _right_operand(problem, kind)
    va = problem.coo_values(batching in ("left", "both"), device)
    vb = other.coo_values(batching in ("right", "both"), device)
    return other, va, vb


@pytest.mark.parametrize("kind,batching", CASES)
def test_matches_dense_autograd(problem, kind, batching, device):
    other, va, vb = _operands(problem, kind, batching, device)
    assert_matches_dense(
        lambda va, vb: densify(problem.matrix(va) @ other.matrix(vb)),
        lambda va, vb: problem.dense(va) @ other.dense(vb),
        [va, vb],
    )


@pytest.mark.parametrize("kind,batching", CASES)
def test_gradcheck(problem, kind, batching, device):
    other, va, vb = _operands(problem, kind, batching, device)
    A, B = problem.matrix(va.detach()), other.matrix(vb.detach())
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    gradcheck(lambda va, vb: (A.with_values(va) @ B.with_values(vb)).values, [va, vb])


def test_square_of_one_matrix_accumulates_both_gradients(square_problem, device):
    """``A @ A`` with one values tensor: the gradient is the sum of the left and right parts."""
    p = square_problem
    v = p.coo_values(False, device)
    assert_matches_dense(lambda v: densify(p.matrix(v) @ p.matrix(v)), lambda v: p.dense(v) @ p.dense(v), [v])
    A = p.matrix(v.detach())
    gradcheck(lambda w: (A.with_values(w) @ A.with_values(w)).values, [A.values.clone().requires_grad_()])


def test_symbolic_phase_is_cached_on_the_patterns(device):
    p = CATALOG["nonsymmetric"]
    A = p.matrix(p.coo_values(False, device).detach())
    C1 = A @ A.T
    C2 = A.with_values(2 * A.values) @ A.T.with_values(3 * A.T.values)
    assert C2.pattern is C1.pattern
    torch.testing.assert_close(C2.values, 6 * C1.values)


def test_structurally_empty_product(device):
    """A's only nonzero column meets B's empty row: the product has no stored entries."""
    va = torch.tensor([1.0, 2.0], dtype=torch.float64, device=device, requires_grad=True)
    vb = torch.tensor([3.0], dtype=torch.float64, device=device, requires_grad=True)
    A = SparseMatrix(va, [0, 2], [1, 1], (3, 3))
    B = SparseMatrix(vb, [0], [2], (3, 4))
    C = A @ B
    assert C.nnz == 0 and C.shape == (3, 4)
    (C.values.sum() + 0 * va.sum() + 0 * vb.sum()).backward()
    assert torch.equal(va.grad, torch.zeros_like(va)) and torch.equal(vb.grad, torch.zeros_like(vb))


def test_float32_matches_dense(device):
    p = CATALOG["random_square"]
    v = p.coo_values(True, device).detach().float()
    D = p.dense(v)
    torch.testing.assert_close(densify(p.matrix(v) @ p.matrix(v[0])), D @ D[0], rtol=1e-5, atol=1e-5)


def test_public_spgemm_is_the_operator():
    p = CATALOG["poisson2d"]
    A = p.matrix(p.values)
    torch.testing.assert_close(slactl.spgemm(A, A).values, (A @ A).values, rtol=0, atol=0)


# ------------------------------------------------------------------------------------- errors
def _pair(m, k, n, device="cpu", dtype=torch.float64):
    A = SparseMatrix.from_scipy(sp.random(m, k, density=0.5, rng=0), dtype=dtype, device=device)
    B = SparseMatrix.from_scipy(sp.random(k, n, density=0.5, rng=1), dtype=dtype, device=device)
    return A, B


def test_inner_dimension_mismatch_says_what_must_match():
    A, _ = _pair(4, 5, 3)
    _, B = _pair(4, 6, 3)
    with pytest.raises(ShapeError, match=r"\(4, 5\) by \(6, 3\).*column count \(5\) must equal B's row count \(6\)"):
        A @ B


def test_batch_size_mismatch_says_what_to_do():
    A, B = _pair(4, 5, 3)
    A = A.with_values(A.values.expand(2, -1))
    B = B.with_values(B.values.expand(3, -1))
    with pytest.raises(ShapeError, match=r"batch sizes differ: 2 and 3.*same batch size or an unbatched"):
        A @ B


def test_dtype_mismatch_says_how_to_convert():
    A, _ = _pair(4, 5, 3)
    _, B = _pair(4, 5, 3, dtype=torch.float32)
    with pytest.raises(DtypeError, match=r"torch.float64 and B is torch.float32; convert one with \.to\(dtype="):
        A @ B


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_device_mismatch_says_how_to_move():
    A, _ = _pair(4, 5, 3)
    _, B = _pair(4, 5, 3, device="cuda")
    with pytest.raises(DeviceError, match=r"move one with \.to\(device\)"):
        A @ B


# ------------------------------------------------------------------------------------- memory
def test_backward_never_builds_a_dense_matrix(device):
    m, k, n = 3000, 2500, 3200
    A = SparseMatrix.from_scipy(sp.random(m, k, density=4e-4, rng=0), device=device).requires_grad_()
    B = SparseMatrix.from_scipy(sp.random(k, n, density=4e-4, rng=1), device=device).requires_grad_()
    with LargestAllocation() as rec:
        C = A @ B
        C.values.square().sum().backward()
    assert C.nnz > 0 and A.values.grad.abs().sum() > 0 and B.values.grad.abs().sum() > 0
    assert 0 < rec.largest < m * n / 100, (rec.largest, rec.largest_op)


# ------------------------------------------------------------------- the host's SciPy product
def _gather_scatter(A: SparseMatrix, B: SparseMatrix) -> SparseMatrix:
    """``A @ B`` by the gather/scatter of the product triples (the device's numeric phase), on the
    host plan's pattern: independent of SciPy's numeric product."""
    plan = _spgemm_host.structural_product(A.pattern, B.pattern)[0]
    return spgemm._numeric(A, B, plan.pattern, *spgemm._host_triples(A.pattern, B.pattern, plan))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.complex128])
def test_host_product_without_graph_matches_scipy_and_the_gather_scatter_path(problem, dtype):
    """No gradient asked for: the values come from SciPy's product; they equal SciPy's own product
    and the gather/scatter path's over the product triples, entry for entry on the same pattern."""
    p = problem
    other = _right_operand(p, "transpose")
    g = torch.Generator().manual_seed(3)
    A = p.matrix(p.coo_values(False, "cpu").detach()).to(dtype=dtype)
    B = other.matrix(other.coo_values(False, "cpu").detach()).to(dtype=dtype)
    if dtype.is_complex:
        A = A.with_values(A.values + 1j * torch.randn(A.nnz, generator=g, dtype=torch.float64).to(dtype))
    C = A @ B
    ref = (A.to_scipy() @ B.to_scipy()).toarray()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(C.to_dense(), torch.as_tensor(ref), **tol)
    G = _gather_scatter(A, B)
    assert G.pattern.same_as(C.pattern) and G.nnz == C.nnz
    torch.testing.assert_close(G.values, C.values, **tol)
    Cg = A.with_values(A.values.clone().requires_grad_()) @ B  # SciPy's product inside autograd
    assert Cg.pattern is C.pattern
    torch.testing.assert_close(Cg.values.detach(), C.values, rtol=0, atol=0)


@pytest.mark.parametrize("view", ["conj", "neg"])
@pytest.mark.parametrize("grad", [False, True], ids=["values", "graph"])
def test_host_product_of_lazy_conjugate_and_negative_views(view, grad):
    """``A.map(torch.conj) @ B`` (conjugate bit) and ``.imag`` of one (negative bit) on the host,
    where SciPy's product reads the values through ``numpy()``, which refuses such views."""
    p = CATALOG["nonsymmetric"]
    other = _right_operand(p, "transpose")
    g = torch.Generator().manual_seed(8)
    z = torch.complex(p.values, torch.randn(p.values.shape, generator=g, dtype=torch.float64))
    z.requires_grad_(grad)
    vb = other.values.to(torch.complex128 if view == "conj" else torch.float64)
    A, B = p.matrix(z), other.matrix(vb)
    A = A.map(torch.conj) if view == "conj" else A.with_values(A.values.conj().imag)
    assert A.values.is_conj() if view == "conj" else A.values.is_neg()
    C = A @ B
    want = dense_coo(A.values.detach().resolve_conj().resolve_neg(), p.row, p.col, p.shape) @ other.dense(vb)
    torch.testing.assert_close(densify(C).detach(), want, rtol=1e-12, atol=1e-12)


def test_host_product_values_where_sums_cancel():
    """The host plan places SciPy's product by the recorded order when no sum cancels and by the
    keys when some do: the entry count and the values, against dense torch, either way."""
    g = torch.Generator().manual_seed(10)
    A = SparseMatrix.from_scipy(sp.random(40, 30, density=0.2, rng=12))
    B = SparseMatrix.from_scipy(sp.random(30, 50, density=0.2, rng=13))
    C = A @ B  # builds the plan
    for va in (A.values, torch.randn(A.nnz, generator=g, dtype=torch.float64), torch.zeros(A.nnz, dtype=torch.float64)):
        D = A.with_values(va) @ B  # the plan reused: only the numeric product runs
        assert D.pattern is C.pattern and D.nnz == C.nnz
        torch.testing.assert_close(D.to_dense(), A.with_values(va).to_dense() @ B.to_dense(), rtol=1e-12, atol=1e-12)


def test_host_product_keeps_entries_that_cancel_and_their_gradient():
    """[1 1] @ [1 -1]^T sums to exactly 0: SciPy's product drops that entry, the structural pattern
    keeps it (stored as 0), and the gradient reaches it: d(C[0, 0]) / dA = B^T."""
    A = SparseMatrix(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64), [0, 0, 1], [0, 1, 1], (2, 2))
    B = SparseMatrix(torch.tensor([1.0, -1.0, 3.0], dtype=torch.float64), [0, 1, 1], [0, 0, 1], (2, 2))
    C = A @ B
    assert (A.to_scipy() @ B.to_scipy()).nnz == 3  # SciPy dropped the cancelled (0, 0)
    assert C.nnz == 4
    torch.testing.assert_close(C.to_dense(), torch.tensor([[0.0, 3.0], [-2.0, 6.0]], dtype=torch.float64))
    va = A.values.clone().requires_grad_()
    Cg = A.with_values(va) @ B
    Cg.values[0].backward()  # the entry (0, 0)
    torch.testing.assert_close(va.grad, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))


def test_host_triples_match_the_device_symbolic_phase():
    """NumPy's triples and the sort-based symbolic phase the GPU runs list the same products."""
    from slactl.engine.ops.spgemm import _symbolic

    A = SparseMatrix.from_scipy(sp.random(300, 200, density=0.03, rng=4))
    B = SparseMatrix.from_scipy(sp.random(200, 250, density=0.03, rng=5))
    pc_ref, a_ref, b_ref, c_ref = _symbolic(A.pattern, B.pattern)
    pc = _spgemm_host.structural_product(A.pattern, B.pattern)[0].pattern
    a_idx, b_idx, c_idx = _spgemm_host.product_triples(A.pattern, B.pattern, pc)
    assert pc.same_as(pc_ref)
    got = sorted(zip(a_idx.tolist(), b_idx.tolist(), c_idx.tolist()))
    assert got == sorted(zip(a_ref.tolist(), b_ref.tolist(), c_ref.tolist()))


def test_host_product_complex_gradients_match_dense_autograd():
    """The host product's backward conjugates as torch does (grad_A = G conj(B)^T on A's pattern)."""
    p = CATALOG["nonsymmetric"]
    g = torch.Generator().manual_seed(9)
    va = torch.complex(p.values, torch.randn(p.values.shape, generator=g, dtype=torch.float64)).requires_grad_()
    other = _right_operand(p, "transpose")
    vb = torch.complex(other.values, torch.randn(other.values.shape, generator=g, dtype=torch.float64))
    vb.requires_grad_()
    assert_matches_dense(
        lambda va, vb: densify(p.matrix(va) @ other.matrix(vb)),
        lambda va, vb: p.dense(va) @ other.dense(vb),
        [va, vb],
    )


def test_host_product_has_a_second_derivative():
    """Double backward (e.g. a Hessian-vector product through ``A @ B``) against torch's gradgradcheck."""
    p = CATALOG["nonsymmetric"]
    A = p.matrix(p.values)
    B = A.T.with_values(A.T.values * 0.5)
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda va, vb: (A.with_values(va) @ B.with_values(vb)).values, (va, vb))
