"""SpMV / SpMM (``A @ x``): forward and gradients against dense torch, gradcheck, errors, memory."""

import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl import SparseMatrix
from slactl.errors import DeviceError, DtypeError, ShapeError, UsageError

from ..catalog import (
    CATALOG,
    LargestAllocation,
    assert_matches_dense,
    complex_leaf,
    gradcheck,
)

K = [None, 3]  # x is a vector [n] (SpMV) or a block [n, 3] (SpMM)
K_IDS = ["vector", "block"]


def _x(problem, batched, k, device, requires_grad=True):
    n = problem.shape[1]
    shape = ((2,) if batched else ()) + (n,) + (() if k is None else (k,))
    return torch.randn(shape, dtype=torch.float64, device=device, requires_grad=requires_grad)


def _dense_matmul(D, x):
    return (D @ x.unsqueeze(-1)).squeeze(-1) if x.dim() == D.dim() - 1 else D @ x


@pytest.mark.parametrize("k", K, ids=K_IDS)
def test_matches_dense_autograd(problem, batched, k, device):
    v = problem.coo_values(batched, device)
    x = _x(problem, batched, k, device)
    assert_matches_dense(
        lambda v, x: problem.matrix(v) @ x,
        lambda v, x: _dense_matmul(problem.dense(v), x),
        [v, x],
    )


@pytest.mark.parametrize("k", K, ids=K_IDS)
def test_complex_gradients_match_dense_autograd(problem, batched, k, device):
    """torch's convention for complex tensors: ``grad_x = A^H g``, ``grad_values = g conj(x)^T`` on
    the pattern (not ``A^T g`` and ``g x^T``)."""
    v = complex_leaf(problem.coo_values(batched, device))
    x = complex_leaf(_x(problem, batched, k, device), seed=6)
    assert_matches_dense(
        lambda v, x: problem.matrix(v) @ x,
        lambda v, x: _dense_matmul(problem.dense(v), x),
        [v, x],
    )


@pytest.mark.parametrize("k", K, ids=K_IDS)
def test_gradcheck(problem, batched, k, device):
    v = problem.coo_values(batched, device)
    gradcheck(lambda v, x: problem.matrix(v) @ x, [v, _x(problem, batched, k, device)])


@pytest.mark.parametrize("wrt", ["values", "x"])
def test_gradient_for_one_operand(wrt, device):
    p = CATALOG["nonsymmetric"]
    v = p.coo_values(False, device).requires_grad_(wrt == "values")
    x = _x(p, False, 2, device, requires_grad=wrt == "x")
    assert_matches_dense(lambda v, x: p.matrix(v) @ x, lambda v, x: p.dense(v) @ x, [v, x])
    y = p.matrix(v) @ x
    y.sum().backward()
    assert (v.grad is None) == (wrt == "x") and (x.grad is None) == (wrt == "values")


@pytest.mark.parametrize("k", K, ids=K_IDS)
def test_no_grad_result_equals_autograd_result(problem, batched, k, device):
    A = problem.matrix(problem.coo_values(batched, device))
    x = _x(problem, batched, k, device)
    with torch.no_grad():
        plain = A @ x
    assert plain.grad_fn is None
    torch.testing.assert_close(plain, (A @ x).detach(), rtol=0, atol=0)


def test_no_grad_path_sees_in_place_value_updates(device):
    """The cached CSR view of the no-grad path shares the values' memory (as documented)."""
    p = CATALOG["nonsymmetric"]
    A = p.matrix(p.values.to(device))
    x = _x(p, False, None, device, requires_grad=False)
    y = A @ x
    A.values.mul_(3.0)
    torch.testing.assert_close(A @ x, 3 * y)
    torch.testing.assert_close(A @ x[:, None], 3 * y[:, None])
    torch.testing.assert_close(A @ x, p.dense(3 * p.values.to(device)) @ x)


@pytest.mark.parametrize("k", K, ids=K_IDS)
def test_vector_times_matrix(problem, batched, k, device):
    """``x @ A`` (``__rmatmul__``): x is [m] or [k, m]; for a batch, [B, m] or [B, k, m]."""
    v = problem.coo_values(batched, device)
    m = problem.shape[0]
    shape = ((2,) if batched else ()) + (() if k is None else (k,)) + (m,)
    x = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)

    def dense(v, x):
        return (x.unsqueeze(-2) @ problem.dense(v)).squeeze(-2) if k is None else x @ problem.dense(v)

    assert_matches_dense(lambda v, x: x @ problem.matrix(v), dense, [v, x])


def test_row_vectors_times_a_batch_whose_size_equals_m():
    """x [B, m] @ A (B matrices m x n) is one row vector per matrix, also when B == m."""
    v = torch.randn(2, 4, dtype=torch.float64)
    A = SparseMatrix(v, [0, 0, 1, 1], [0, 2, 1, 2], (2, 3))
    x = torch.randn(2, 2, dtype=torch.float64)
    torch.testing.assert_close(x @ A, torch.einsum("bm,bmn->bn", x, A.to_dense()))


def test_non_contiguous_operands(device):
    p = CATALOG["rectangular_tall"]
    v = p.coo_values(True, device)
    x = torch.randn(2, 4, 6, dtype=torch.float64, device=device).transpose(1, 2)  # [2, 6, 4], strided
    assert not x.is_contiguous()
    assert_matches_dense(lambda v, x: p.matrix(v) @ x, lambda v, x: p.dense(v) @ x, [v, x.requires_grad_()])
    assert_matches_dense(lambda v, x: p.matrix(v[0]) @ x[1], lambda v, x: p.dense(v[0]) @ x[1], [v, x])
    assert_matches_dense(lambda v, x: p.matrix(v[1]) @ x[0, :, 2], lambda v, x: p.dense(v[1]) @ x[0, :, 2], [v, x])


def test_second_derivatives(device):
    p = CATALOG["duplicates"]
    v = p.coo_values(False, device)
    x = _x(p, False, 2, device)
    assert torch.autograd.gradgradcheck(lambda v, x: p.matrix(v) @ x, (v, x), fast_mode=False)


def test_float32_matches_dense(problem, batched, device):
    v = problem.coo_values(batched, device).detach().float()
    x = _x(problem, batched, 3, device, requires_grad=False).float()
    torch.testing.assert_close(problem.matrix(v) @ x, problem.dense(v) @ x, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------- errors
def _matrix(device="cpu", batched=False):
    p = CATALOG["rectangular_wide"]  # 7 x 13
    return p.matrix(p.coo_values(batched, device).detach())


@pytest.mark.parametrize("shape", [(7,), (13, 2, 2), (12, 3)])
def test_wrong_shape_says_which_shape_is_needed(shape):
    A = _matrix()
    with pytest.raises(ShapeError, match=r"x must have shape \[13\] or \[13, k\], got"):
        A @ torch.zeros(shape, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(13,), (3, 13), (2, 12, 4)])
def test_wrong_shape_for_a_batch_names_the_batch(shape):
    A = _matrix(batched=True)
    with pytest.raises(ShapeError, match=r"batch of 2.*x must have shape \[2, 13\] or \[2, 13, k\]"):
        A @ torch.zeros(shape, dtype=torch.float64)


def test_dtype_mismatch_says_how_to_convert():
    with pytest.raises(DtypeError, match=r"x\.to\(A\.dtype\) or A\.to\(dtype=x\.dtype\)"):
        _matrix() @ torch.zeros(13, dtype=torch.float32)


def test_non_tensor_operand_is_rejected():
    with pytest.raises(UsageError, match="x must be a torch.Tensor"):
        _matrix() @ ([0.0] * 13)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_device_mismatch_says_how_to_move():
    with pytest.raises(DeviceError, match=r"x\.to\(A\.device\) or A\.to\(x\.device\)"):
        _matrix("cuda") @ torch.zeros(13, dtype=torch.float64)
    with pytest.raises(DeviceError, match=r"x\.to\(A\.device\)"):
        _matrix("cpu") @ torch.zeros(13, dtype=torch.float64, device="cuda")


# ------------------------------------------------------------------------------------- memory
def test_largest_allocation_sees_the_backward_pass(device):
    """The watchdog used below must catch a dense array made only in a backward pass (which runs
    on another thread for CUDA tensors)."""

    class DenseBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            return v.clone()

        @staticmethod
        def backward(ctx, g):
            return g + torch.zeros(300, 300, dtype=g.dtype, device=g.device).sum()

    v = torch.ones(5, dtype=torch.float64, device=device, requires_grad=True)
    with LargestAllocation() as rec:
        y = DenseBackward.apply(v).sum()
    assert rec.largest < 300 * 300
    with LargestAllocation() as rec:
        y.backward()
    assert rec.largest >= 300 * 300


@pytest.mark.parametrize("k", K, ids=K_IDS)
def test_backward_never_builds_a_dense_matrix(k, device):
    m, n = 3000, 2800
    A = SparseMatrix.from_scipy(sp.random(m, n, density=3e-4, rng=0), device=device).requires_grad_()
    x = torch.randn((n,) if k is None else (n, k), dtype=torch.float64, device=device, requires_grad=True)
    with LargestAllocation() as rec:
        (A @ x).square().sum().backward()
    assert A.values.grad.shape == (A.nnz,) and x.grad.shape == x.shape
    assert 0 < rec.largest < m * n / 100, (rec.largest, rec.largest_op)


def test_public_matmul_is_the_operator():
    A = _matrix()
    x = torch.randn(13, dtype=torch.float64)
    torch.testing.assert_close(slactl.matmul(A, x), A @ x, rtol=0, atol=0)
