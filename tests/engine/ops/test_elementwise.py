"""Pattern-level operations: transpose, alpha*A + beta*B, scaling, sums, tril/triu, ``A.map`` and
``A.norm`` against dense torch autograd, with gradcheck and error messages."""

import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl import SparseMatrix
from slactl.errors import DeviceError, DtypeError, ShapeError, UsageError

from ..catalog import CATALOG, Problem, assert_matches_dense, dense_coo, densify, gradcheck


def _csr_leaf(problem, batched, device):
    """A fixed matrix and a fresh leaf over its CSR values (for gradcheck without re-sorting COO)."""
    A = problem.matrix(problem.coo_values(batched, device).detach())
    return A, A.values.clone().requires_grad_()


# ---------------------------------------------------------------------------------- transpose
def test_transpose(problem, batched, device):
    v = problem.coo_values(batched, device)
    assert_matches_dense(lambda v: densify(problem.matrix(v).T), lambda v: problem.dense(v).transpose(-1, -2), [v])
    A, w = _csr_leaf(problem, batched, device)
    gradcheck(lambda w: slactl.transpose(A.with_values(w)).values, [w])


def test_transpose_twice_is_the_same_pattern(problem):
    A = problem.matrix(problem.values)
    assert A.T.shape == A.shape[::-1]
    assert A.T.T.pattern is A.pattern
    assert torch.equal(A.T.T.values, A.values)


# ---------------------------------------------------------------------------------------- add
def _partner(p: Problem, kind: str) -> Problem:
    """A second operand of p's shape: same coordinates (other values) or an unrelated pattern."""
    g = torch.Generator().manual_seed(3)
    if kind == "same_pattern":
        values = torch.randn(p.values.shape, generator=g, dtype=torch.float64)
        return Problem(p.name + "_same", values, p.row, p.col, p.shape)
    S = sp.random(*p.shape, density=0.3, format="coo", rng=21)
    return Problem(
        p.name + "_other",
        torch.randn(S.nnz, generator=g, dtype=torch.float64),
        torch.as_tensor(S.coords[0], dtype=torch.int64),
        torch.as_tensor(S.coords[1], dtype=torch.int64),
        p.shape,
    )


ADD_CASES = [  # (partner pattern, which operands are batched)
    ("same_pattern", "none"),
    ("same_pattern", "both"),
    ("other_pattern", "none"),
    ("other_pattern", "left"),
    ("other_pattern", "right"),
    ("other_pattern", "both"),
]


@pytest.mark.parametrize("kind,batching", ADD_CASES)
def test_add(problem, kind, batching, device):
    other = _partner(problem, kind)
    va = problem.coo_values(batching in ("left", "both"), device)
    vb = other.coo_values(batching in ("right", "both"), device)
    assert_matches_dense(
        lambda va, vb: densify(problem.matrix(va) + other.matrix(vb)),
        lambda va, vb: problem.dense(va) + other.dense(vb),
        [va, vb],
    )
    A, wa = _csr_leaf(problem, batching in ("left", "both"), device)
    B, wb = _csr_leaf(other, batching in ("right", "both"), device)
    gradcheck(lambda wa, wb: (A.with_values(wa) + B.with_values(wb)).values, [wa, wb])


@pytest.mark.parametrize("kind", ["same_pattern", "other_pattern"])
def test_linear_combination_with_tensor_coefficients(kind, device):
    """``alpha*A + beta*B`` (and ``A - B``) with gradients for the 0-d coefficients too."""
    p = CATALOG["nonsymmetric"]
    other = _partner(p, kind)
    va, vb = p.coo_values(False, device), other.coo_values(False, device)
    alpha = torch.tensor(1.5, dtype=torch.float64, device=device, requires_grad=True)
    beta = torch.tensor(-0.7, dtype=torch.float64, device=device, requires_grad=True)
    assert_matches_dense(
        lambda va, vb, a, b: densify(slactl.add(p.matrix(va), other.matrix(vb), alpha=a, beta=b)),
        lambda va, vb, a, b: a * p.dense(va) + b * other.dense(vb),
        [va, vb, alpha, beta],
    )
    assert_matches_dense(
        lambda va, vb: densify(p.matrix(va) - other.matrix(vb)),
        lambda va, vb: p.dense(va) - other.dense(vb),
        [va, vb],
    )
    A, wa = _csr_leaf(p, False, device)
    B, wb = _csr_leaf(other, False, device)
    gradcheck(
        lambda wa, wb, a, b: slactl.add(A.with_values(wa), B.with_values(wb), a, b).values, [wa, wb, alpha, beta]
    )


def test_union_keeps_entries_that_cancel(device):
    """A - A on two copies of a pattern stores explicit zeros rather than changing the pattern."""
    p = CATALOG["poisson2d"]
    A = p.matrix(p.values.to(device))
    B = SparseMatrix(A.values.clone(), A.row, A.col, A.shape)
    D = A - B
    assert D.nnz == A.nnz and torch.equal(D.values, torch.zeros_like(D.values))


def test_add_errors_say_what_to_do():
    A = CATALOG["random_square"].matrix(CATALOG["random_square"].values)
    with pytest.raises(UsageError, match=r"A\.map\(lambda v: v \+ c\).*A\.to_dense\(\) \+ B"):
        A + 1.0
    with pytest.raises(UsageError, match="A.map"):
        A + torch.ones(A.shape, dtype=A.dtype)
    W = CATALOG["rectangular_wide"].matrix(CATALOG["rectangular_wide"].values)
    with pytest.raises(ShapeError, match=r"\(12, 12\).*\(7, 13\).*needs both of the same shape"):
        A + W
    with pytest.raises(DtypeError, match=r"convert one with \.to\(dtype="):
        A + A.float()
    Ab = A.with_values(A.values.expand(2, -1))
    with pytest.raises(ShapeError, match=r"batch sizes differ: 2 and 3.*same batch size or an unbatched"):
        Ab + A.with_values(A.values.expand(3, -1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_add_device_mismatch_says_how_to_move():
    A = CATALOG["random_square"].matrix(CATALOG["random_square"].values)
    with pytest.raises(DeviceError, match=r"move one with \.to\(device\)"):
        A + A.cuda()


# -------------------------------------------------------------------------------------- scale
@pytest.mark.parametrize("how", ["number", "tensor0d", "per_matrix"])
def test_scale(problem, how, device):
    batched = how == "per_matrix"
    v = problem.coo_values(batched, device)
    shape = (2,) if batched else ()
    alpha = torch.tensor([-1.5, 0.25] if batched else -1.5, dtype=torch.float64, device=device, requires_grad=True)
    assert alpha.shape == shape

    def dense_scaled(v, a):
        return (a[:, None, None] if batched else a) * problem.dense(v)

    if how == "number":
        assert_matches_dense(lambda v: densify(2.5 * problem.matrix(v)), lambda v: 2.5 * problem.dense(v), [v])
        assert_matches_dense(lambda v: densify(problem.matrix(v) / 4), lambda v: problem.dense(v) / 4, [v])
        assert_matches_dense(lambda v: densify(-problem.matrix(v)), lambda v: -problem.dense(v), [v])
        A, w = _csr_leaf(problem, batched, device)
        gradcheck(lambda w: slactl.scale(A.with_values(w), 2.5).values, [w])
        return
    assert_matches_dense(lambda v, a: densify(problem.matrix(v) * a), dense_scaled, [v, alpha])
    assert_matches_dense(lambda v, a: densify(a * problem.matrix(v)), dense_scaled, [v, alpha])
    assert_matches_dense(
        lambda v, a: densify(problem.matrix(v) / a), lambda v, a: dense_scaled(v, 1 / a), [v, alpha]
    )
    A, w = _csr_leaf(problem, batched, device)
    gradcheck(lambda w, a: slactl.scale(A.with_values(w), a).values, [w, alpha])


def test_scale_errors_say_what_to_do():
    A = CATALOG["random_square"].matrix(CATALOG["random_square"].values)
    with pytest.raises(ShapeError, match=r"scalar or a \[B\] tensor for a batch of B matrices"):
        A * torch.ones(2, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"\[B\] tensor"):
        A.with_values(A.values.expand(2, -1)) * torch.ones(3, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"\[B\] tensor"):
        A * torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(UsageError, match="use A @ x for products"):
        A * "2"


# ---------------------------------------------------------------------------------------- sum
def test_sum(problem, batched, device):
    """``A.sum(dim)`` uses the matrix's own axes: dim=1 (or -1) gives row sums, dim=0 (or -2) column sums."""
    v = problem.coo_values(batched, device)
    A, w = _csr_leaf(problem, batched, device)
    for dim in [None, 0, 1, -1, -2]:

        def dense_sum(v):
            D = problem.dense(v)
            return D.sum((-2, -1)) if dim is None else D.sum(dim - 2 if dim >= 0 else dim)

        assert_matches_dense(lambda v: problem.matrix(v).sum(dim), dense_sum, [v])
        gradcheck(lambda w: A.with_values(w).sum(dim), [w])


def test_sum_rejects_other_dims():
    A = CATALOG["random_square"].matrix(CATALOG["random_square"].values)
    with pytest.raises(UsageError, match="dim must be None, 0 or 1, got 2"):
        A.sum(2)


# ------------------------------------------------------------------------------- tril / triu
@pytest.mark.parametrize("which", ["tril", "triu"])
def test_triangle_selection(problem, batched, which, device):
    v = problem.coo_values(batched, device)
    A, w = _csr_leaf(problem, batched, device)
    dense_op = torch.tril if which == "tril" else torch.triu
    for k in [-1, 0, 2]:
        assert_matches_dense(
            lambda v: densify(getattr(problem.matrix(v), which)(k)), lambda v: dense_op(problem.dense(v), k), [v]
        )
        gradcheck(lambda w: getattr(A.with_values(w), which)(k).values, [w])


# ---------------------------------------------------------------------------------------- map
MAPS = {
    "square": lambda t: t * t,
    "exp": torch.exp,  # exp(0) = 1 must not appear where nothing is stored
    "sin": torch.sin,
    "neg_abs": lambda t: -t.abs(),
}


def test_map_applies_to_stored_values_only(problem, batched, device):
    v = problem.coo_values(batched, device)
    A, w = _csr_leaf(problem, batched, device)
    ones = torch.ones(problem.row.numel(), dtype=torch.float64, device=device)
    stored = dense_coo(ones, problem.row.to(device), problem.col.to(device), problem.shape) > 0
    for f in MAPS.values():
        assert_matches_dense(
            lambda v: densify(problem.matrix(v).map(f)),
            lambda v: torch.where(stored, f(problem.dense(v)), 0.0),
            [v],
        )
        gradcheck(lambda w: A.with_values(w).map(f).values, [w])


def test_abs_is_a_map(device):
    p = CATALOG["nonsymmetric"]
    A = p.matrix(p.values.to(device))
    assert torch.equal(A.abs().values, A.values.abs()) and A.abs().pattern is A.pattern


def test_map_must_keep_the_values_shape():
    A = CATALOG["random_square"].matrix(CATALOG["random_square"].values)
    with pytest.raises(ShapeError, match="map\\(fn\\) must return a tensor of the values' shape"):
        A.map(lambda t: t.sum())
    with pytest.raises(ShapeError, match="values' shape"):
        A.map(lambda t: t.tolist())


# --------------------------------------------------------------------------------------- norm
def test_frobenius_norm(problem, batched, device):
    v = problem.coo_values(batched, device)
    assert_matches_dense(
        lambda v: problem.matrix(v).norm(), lambda v: torch.linalg.matrix_norm(problem.dense(v), "fro"), [v]
    )
    A, w = _csr_leaf(problem, batched, device)
    gradcheck(lambda w: A.with_values(w).norm(), [w])
