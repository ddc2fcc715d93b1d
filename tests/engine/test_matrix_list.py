"""SparseMatrixList: different patterns solved in one call, gradients to every member."""

from __future__ import annotations

import pytest
import torch

import slactl
from slactl.errors import ShapeError


def _members():
    g = torch.Generator().manual_seed(0)
    out = []
    for n in (5, 8, 3):
        D = torch.randn(n, n, dtype=torch.float64, generator=g) * (torch.rand(n, n, generator=g) < 0.4)
        out.append(D + 4 * torch.eye(n, dtype=torch.float64))
    return out


@pytest.mark.parametrize("method", ["direct", "gmres"])
def test_solve_list_matches_dense(method):
    dense = _members()
    mats, leaves = [], []
    for D in dense:
        A = slactl.SparseMatrix.from_dense(D)
        v = A.values.detach().clone().requires_grad_()
        mats.append(A.with_values(v))
        leaves.append(v)
    L = slactl.SparseMatrixList(mats)
    bs = [torch.ones(D.shape[0], dtype=torch.float64, requires_grad=True) for D in dense]
    xs = slactl.solve(L, bs, method=method, rtol=1e-13)
    sum(x.square().sum() for x in xs).backward()
    for D, A, v, b, x in zip(dense, mats, leaves, bs, xs):
        dv = v.detach().clone().requires_grad_()
        Dd = torch.zeros(D.shape, dtype=torch.float64).index_put((A.row.long(), A.col.long()), dv)
        bb = b.detach().clone().requires_grad_()
        xr = torch.linalg.solve(Dd, bb)
        xr.square().sum().backward()
        assert torch.allclose(x.detach(), xr.detach(), rtol=1e-10, atol=1e-12)
        assert torch.allclose(v.grad, dv.grad, rtol=1e-8, atol=1e-12)
        assert torch.allclose(b.grad, bb.grad, rtol=1e-8, atol=1e-12)


def test_matmul_and_errors():
    mats = [slactl.SparseMatrix.from_dense(D) for D in _members()]
    L = slactl.SparseMatrixList(mats)
    xs = [torch.ones(A.shape[1], dtype=torch.float64) for A in mats]
    for y, A, D in zip(L @ xs, mats, _members()):
        assert torch.allclose(y, D @ torch.ones(D.shape[1], dtype=torch.float64))
    with pytest.raises(ShapeError, match="3 matrices need 3"):
        slactl.solve(L, xs[:2])


def test_sparse_matrix_solve_method():
    A = slactl.SparseMatrix.from_dense(4 * torch.eye(3, dtype=torch.float64))
    assert torch.allclose(A.solve(torch.ones(3, dtype=torch.float64)), torch.full((3,), 0.25, dtype=torch.float64))
    assert torch.allclose(A.factorize().solve(torch.ones(3, dtype=torch.float64)), torch.full((3,), 0.25, dtype=torch.float64))
