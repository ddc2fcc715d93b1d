"""The operator protocol: conversions, block inner products, and methods that touch vectors only
through matvec and the operator's reductions (what the distributed layer overrides)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slactl
from problems import poisson2d
from slactl.engine.krylov import METHODS, DenseOperator, FunctionOperator, LinearOperator, MatrixOperator, as_operator
from slactl.errors import DeviceError, DtypeError, ShapeError, UsageError


def test_as_operator_variants_agree():
    P = poisson2d(5)
    x = torch.randn(25, 2, dtype=torch.float64)
    want = torch.from_numpy(P @ x.numpy())
    A = slactl.SparseMatrix.from_scipy(P)
    ops = [
        as_operator(A),
        as_operator(A.to_dense()),
        as_operator(A.to_torch()),
        as_operator(P, like=x),
        as_operator(lambda v: A @ v, like=x),
    ]
    assert isinstance(ops[0], MatrixOperator) and isinstance(ops[1], DenseOperator)
    assert isinstance(ops[4], FunctionOperator)
    for op in ops:
        torch.testing.assert_close(op.matvec(x), want)
        torch.testing.assert_close(op.matvec(x[:, 0]), want[:, 0])
        assert op.shape == (25, 25)


def test_dot_is_columnwise_and_conjugate_linear():
    op = as_operator(torch.eye(3, dtype=torch.complex128))
    x = torch.tensor([[1j, 1.0], [0, 2.0], [0, 0]], dtype=torch.complex128)
    torch.testing.assert_close(op.dot(x, x), torch.tensor([1.0, 5.0], dtype=torch.complex128))
    torch.testing.assert_close(op.norm(x), torch.tensor([1.0, 5.0**0.5], dtype=torch.float64))
    V = torch.stack([x, 2 * x])
    torch.testing.assert_close(op.dot_many(V, x), torch.stack([op.dot(x, x), 2 * op.dot(x, x)]))


class CountingOperator(LinearOperator):
    """Stands in for a distributed operator: every reduction goes through ``reduce``."""

    def __init__(self, A):
        super().__init__(A.shape, A.dtype, A.device)
        self.inner = MatrixOperator(A)
        self.reductions = 0
        self.matvecs = 0

    def matvec(self, x):
        self.matvecs += 1
        return self.inner.matvec(x)

    def reduce(self, local):
        self.reductions += 1
        return local


@pytest.mark.parametrize("method", list(METHODS))
def test_methods_use_only_matvec_and_reduce(method):
    A = slactl.SparseMatrix.from_scipy(poisson2d(10))
    b = torch.from_numpy(np.random.default_rng(0).standard_normal(100))
    op = CountingOperator(A)
    res = METHODS[method](op, b, rtol=1e-10)
    ref = METHODS[method](A, b, rtol=1e-10)
    assert res.converged and res.iterations == ref.iterations
    torch.testing.assert_close(res.x, ref.x, rtol=0, atol=0)
    assert op.reductions >= 2 * res.iterations and op.matvecs >= res.iterations


def test_system_checks():
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    with pytest.raises(ShapeError):
        METHODS["cg"](A, torch.ones(15, dtype=torch.float64))
    with pytest.raises(DtypeError):
        METHODS["cg"](A, torch.ones(16, dtype=torch.float32))
    with pytest.raises(ShapeError):
        METHODS["cg"](A, torch.ones(16, dtype=torch.float64), x0=torch.ones(16, 2, dtype=torch.float64))
    with pytest.raises(ShapeError):
        METHODS["cg"](torch.ones(3, 4, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    with pytest.raises(UsageError):
        as_operator(object())
    with pytest.raises(UsageError):
        METHODS["cg"](A, torch.ones(16, dtype=torch.float64), rtol=-1.0)
    batched = slactl.SparseMatrix.from_pattern(A.pattern, torch.stack([A.values, A.values]))
    with pytest.raises(UsageError):
        as_operator(batched)


def test_gradients_are_not_tracked_through_iterations():
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    A.requires_grad_()
    b = torch.ones(16, dtype=torch.float64, requires_grad=True)
    res = METHODS["cg"](A, b)
    assert not res.x.requires_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_mismatch_is_reported():
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    with pytest.raises(DeviceError):
        METHODS["cg"](A, torch.ones(16, dtype=torch.float64, device="cuda"))


def test_matrix_operator_residual_is_b_minus_ax_bit_for_bit():
    """MatrixOperator.residual subtracts in place over the fresh product (issue 7: one n-vector at
    the true-residual check, not two); the values are those of ``b - A x``."""
    P = poisson2d(6)
    op = as_operator(slactl.SparseMatrix.from_scipy(P))
    g = torch.Generator().manual_seed(0)
    for shape in ((36,), (36, 3)):
        x = torch.randn(shape, dtype=torch.float64, generator=g)
        b = torch.randn(shape, dtype=torch.float64, generator=g)
        b0, x0 = b.clone(), x.clone()
        r = op.residual(b, x)
        assert torch.equal(r, b - op.matvec(x))
        assert torch.equal(b, b0) and torch.equal(x, x0)  # the operands are untouched
    # an operator whose matvec may return its input keeps the out-of-place default
    ident = FunctionOperator(lambda v: v, (3, 3), torch.float64, "cpu")
    v = torch.ones(3, dtype=torch.float64)
    assert torch.equal(ident.residual(2 * v, v), v) and torch.equal(v, torch.ones(3, dtype=torch.float64))
