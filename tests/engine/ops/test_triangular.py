"""Sparse triangular solve: forward and gradients against ``torch.linalg.solve_triangular``,
gradcheck, structure checks, errors, and a backward that never builds an n x n array."""

import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl import SparseMatrix
from slactl.errors import DeviceError, DtypeError, ShapeError, StructureError

from ..catalog import (CATALOG, SQUARE, LargestAllocation, assert_matches_dense, complex_leaf, gradcheck,
                       triangular_problem)

# (batched, rhs): b is [n], [n, k], [B, n] or [B, n, k]
RHS = [(False, None), (False, 3), (True, None), (True, 2)]
RHS_IDS = ["vector", "block", "batched_vector", "batched_block"]


def _b(n, batched, k, device):
    shape = ((2,) if batched else ()) + (n,) + (() if k is None else (k,))
    return torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)


def _dense_solve(D, b, lower, unit):
    vector = b.dim() == D.dim() - 1
    x = torch.linalg.solve_triangular(D, b.unsqueeze(-1) if vector else b, upper=not lower, unitriangular=unit)
    return x.squeeze(-1) if vector else x


@pytest.fixture(params=SQUARE, ids=SQUARE)
def base(request):
    return CATALOG[request.param]


@pytest.mark.parametrize("lower", [True, False], ids=["lower", "upper"])
@pytest.mark.parametrize("unit", [False, True], ids=["diag", "unit"])
@pytest.mark.parametrize("batched,k", RHS, ids=RHS_IDS)
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_matches_dense_autograd(base, lower, unit, batched, k, complex_, device):
    """With ``unit``, the stored diagonal is ignored and gets zero gradient, as in torch. Complex:
    torch's convention, ``lam = T^{-H} g`` and ``grad_values = -lam conj(x)^T``."""
    T = triangular_problem(base, lower)
    v = T.coo_values(batched, device)
    b = _b(T.shape[0], batched, k, device)
    if complex_:
        v, b = complex_leaf(v), complex_leaf(b, seed=6)
    assert_matches_dense(
        lambda v, b: slactl.triangular_solve(T.matrix(v), b, lower=lower, unit_diagonal=unit),
        lambda v, b: _dense_solve(T.dense(v), b, lower, unit),
        [v, b],
        rtol=1e-9,
        atol=1e-9,
    )


@pytest.mark.parametrize("lower", [True, False], ids=["lower", "upper"])
@pytest.mark.parametrize("unit", [False, True], ids=["diag", "unit"])
@pytest.mark.parametrize("batched,k", [RHS[0], RHS[3]], ids=[RHS_IDS[0], RHS_IDS[3]])
def test_gradcheck(base, lower, unit, batched, k, device):
    T = triangular_problem(base, lower)
    A = T.matrix(T.coo_values(batched, device).detach())
    w = A.values.clone().requires_grad_()
    b = _b(T.shape[0], batched, k, device)
    gradcheck(lambda w, b: A.with_values(w).triangular_solve(b, lower=lower, unit_diagonal=unit), [w, b])


@pytest.mark.parametrize("lower", [True, False], ids=["lower", "upper"])
def test_unit_diagonal_without_stored_diagonal(base, lower, device):
    T = triangular_problem(base, lower, with_diagonal=False)
    v = T.coo_values(True, device)
    b = _b(T.shape[0], True, 2, device)
    assert_matches_dense(
        lambda v, b: slactl.triangular_solve(T.matrix(v), b, lower=lower, unit_diagonal=True),
        lambda v, b: _dense_solve(T.dense(v), b, lower, True),
        [v, b],
        rtol=1e-9,
        atol=1e-9,
    )
    A = T.matrix(v.detach())
    w = A.values.clone().requires_grad_()
    gradcheck(lambda w, b: A.with_values(w).triangular_solve(b, lower=lower, unit_diagonal=True), [w, b])


@pytest.mark.parametrize("wrt", ["values", "b"])
def test_gradient_for_one_operand(wrt, device):
    T = triangular_problem(CATALOG["nonsymmetric"], lower=False)
    v = T.coo_values(False, device).requires_grad_(wrt == "values")
    b = _b(T.shape[0], False, 2, device).requires_grad_(wrt == "b")
    assert_matches_dense(
        lambda v, b: slactl.triangular_solve(T.matrix(v), b, lower=False),
        lambda v, b: _dense_solve(T.dense(v), b, False, False),
        [v, b],
    )
    slactl.triangular_solve(T.matrix(v), b, lower=False).sum().backward()
    assert (v.grad is None) == (wrt == "b") and (b.grad is None) == (wrt == "values")


def test_no_grad_result_equals_autograd_result(device):
    T = triangular_problem(CATALOG["poisson2d"], lower=True)
    A = T.matrix(T.coo_values(True, device))
    b = _b(T.shape[0], True, 3, device)
    with torch.no_grad():
        plain = slactl.triangular_solve(A, b)
    assert plain.grad_fn is None
    torch.testing.assert_close(plain, slactl.triangular_solve(A, b).detach(), rtol=0, atol=0)


def test_non_contiguous_rhs(device):
    T = triangular_problem(CATALOG["nonsymmetric"], lower=False)
    v = T.coo_values(True, device)
    b = torch.randn(2, 3, 12, dtype=torch.float64, device=device).transpose(1, 2).requires_grad_()
    assert not b.is_contiguous()
    assert_matches_dense(
        lambda v, b: slactl.triangular_solve(T.matrix(v), b, lower=False),
        lambda v, b: _dense_solve(T.dense(v), b, False, False),
        [v, b],
    )
    assert_matches_dense(
        lambda v, b: slactl.triangular_solve(T.matrix(v[1]), b[0, :, 1], lower=False),
        lambda v, b: _dense_solve(T.dense(v[1]), b[0, :, 1], False, False),
        [v, b],
    )


def test_float32(device):
    T = triangular_problem(CATALOG["random_square"], lower=True)
    v = T.coo_values(True, device).detach().float()
    b = torch.randn(2, T.shape[0], 3, device=device)
    x = slactl.triangular_solve(T.matrix(v), b)
    torch.testing.assert_close(x, _dense_solve(T.dense(v), b, True, False), rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------- structure errors
def _lower(device="cpu", dtype=torch.float64):
    T = triangular_problem(CATALOG["random_square"], lower=True)
    return T.matrix(T.values.to(device=device, dtype=dtype))


def test_entry_above_the_diagonal_is_a_structure_error():
    A = CATALOG["nonsymmetric"].matrix(CATALOG["nonsymmetric"].values)  # tridiagonal + random
    b = torch.ones(12, dtype=torch.float64)
    entry = r"entry \(\d+, \d+\) lies"
    lower_msg = rf"not lower triangular: {entry} above the diagonal; pass lower=False or take A\.tril\(\)"
    upper_msg = rf"not upper triangular: {entry} below the diagonal; pass lower=True or take A\.triu\(\)"
    with pytest.raises(StructureError, match=lower_msg):
        slactl.triangular_solve(A, b)
    with pytest.raises(StructureError, match=upper_msg):
        slactl.triangular_solve(A, b, lower=False)
    with pytest.raises(StructureError, match="not upper triangular"):
        slactl.triangular_solve(_lower(), torch.ones(12, dtype=torch.float64), lower=False)


def test_missing_diagonal_is_a_structure_error():
    T = triangular_problem(CATALOG["poisson2d"], lower=True, with_diagonal=False)  # strictly lower
    A = T.matrix(T.values)
    b = torch.ones(16, dtype=torch.float64)
    missing = r"row 0 has no stored diagonal entry.*store the diagonal or pass unit_diagonal=True"
    with pytest.raises(StructureError, match=missing):
        slactl.triangular_solve(A, b)
    slactl.triangular_solve(A, b, unit_diagonal=True)  # a unit diagonal need not be stored


def test_zero_diagonal_is_a_structure_error():
    A = _lower()
    rows, pos = A.pattern.diagonal_positions()
    b = torch.ones(2, 12, dtype=torch.float64)
    values = A.values.expand(2, -1).clone()
    values[1, pos[5]] = 0.0  # only the second matrix of the batch is singular, in row 5
    with pytest.raises(StructureError, match="diagonal entry of row 5 is zero: the triangular matrix is singular"):
        slactl.triangular_solve(A.with_values(values), b)
    slactl.triangular_solve(A.with_values(values), b, unit_diagonal=True)


def test_rectangular_matrix_is_a_structure_error():
    A = CATALOG["rectangular_tall"].matrix(CATALOG["rectangular_tall"].values).tril()
    with pytest.raises(StructureError, match="needs a square matrix, got 14x6"):
        slactl.triangular_solve(A, torch.ones(14, dtype=torch.float64))


# ------------------------------------------------------------------------------ usage errors
@pytest.mark.parametrize("shape", [(11,), (12, 2, 2), (2, 12)])
def test_wrong_rhs_shape_says_which_shape_is_needed(shape):
    with pytest.raises(ShapeError, match=r"b must have shape \[12\] or \[12, k\], got"):
        slactl.triangular_solve(_lower(), torch.ones(shape, dtype=torch.float64))


def test_wrong_rhs_shape_for_a_batch():
    A = _lower()
    A = A.with_values(A.values.expand(3, -1))
    with pytest.raises(ShapeError, match=r"b must have shape \[3, 12\] or \[3, 12, k\], got \(12,\)"):
        slactl.triangular_solve(A, torch.ones(12, dtype=torch.float64))


def test_dtype_mismatch_says_how_to_convert():
    with pytest.raises(DtypeError, match=r"b\.to\(A\.dtype\) or A\.to\(dtype=b\.dtype\)"):
        slactl.triangular_solve(_lower(), torch.ones(12, dtype=torch.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_device_mismatch_says_how_to_move():
    with pytest.raises(DeviceError, match=r"b\.to\(A\.device\) or A\.to\(b\.device\)"):
        slactl.triangular_solve(_lower("cuda"), torch.ones(12, dtype=torch.float64))


# ------------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("lower", [True, False], ids=["lower", "upper"])
def test_backward_never_builds_a_dense_matrix(lower, device):
    n = 3000
    S = sp.tril(sp.random(n, n, density=4e-4, rng=0), k=-1) + 3 * sp.eye_array(n)
    A = SparseMatrix.from_scipy(S if lower else S.T, device=device).requires_grad_()
    b = torch.randn(n, 2, dtype=torch.float64, device=device, requires_grad=True)
    with LargestAllocation() as rec:
        slactl.triangular_solve(A, b, lower=lower).square().sum().backward()
    assert A.values.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    assert 0 < rec.largest < n * n / 100, (rec.largest, rec.largest_op)
