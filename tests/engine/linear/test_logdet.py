"""slogdet / logdet / det against torch.linalg.slogdet with autograd, permutations included."""

from __future__ import annotations

import pytest
import torch

import slactl
from slactl.errors import NotImplementedFeatureError, StructureError


def _random_sparse(n: int, seed: int, permute: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n, n, dtype=torch.float64, generator=g) * (torch.rand(n, n, generator=g) < 0.2)
    D = D + torch.diag(torch.randn(n, dtype=torch.float64, generator=g) + 3.0)
    if permute:  # rows and columns permuted: the sign must follow
        D = D[torch.randperm(n, generator=g)][:, torch.randperm(n, generator=g)]
    return D


def _dense_reference(A):
    v = A.values.detach().clone().requires_grad_()
    D = torch.zeros(A.shape, dtype=v.dtype).index_put((A.row.long(), A.col.long()), v)
    sign, logabs = torch.linalg.slogdet(D)
    logabs.backward()
    return sign.detach(), logabs.detach(), v.grad


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("permute", [False, True])
def test_slogdet_and_gradient(seed, permute):
    A = slactl.SparseMatrix.from_dense(_random_sparse(40, seed, permute))
    v = A.values.detach().clone().requires_grad_()
    sign, logabs = slactl.slogdet(A.with_values(v))
    logabs.backward()
    s_ref, l_ref, g_ref = _dense_reference(A)
    sign, logabs = sign.detach(), logabs.detach()
    assert float(sign) == float(s_ref)
    assert abs(float(logabs - l_ref)) < 1e-10 * max(1.0, abs(float(l_ref)))
    assert float((v.grad - g_ref).norm() / g_ref.norm()) < 1e-10


def test_det_and_logdet_signs():
    A = slactl.SparseMatrix.from_dense(torch.tensor([[0.0, 2.0], [3.0, 0.0]], dtype=torch.float64))
    assert float(slactl.det(A)) == pytest.approx(-6.0)
    assert torch.isnan(slactl.logdet(A))
    B = slactl.SparseMatrix.from_dense(torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64))
    assert float(slactl.logdet(B)) == pytest.approx(float(torch.log(torch.tensor(5.0))))


def test_singular_and_errors():
    S = slactl.SparseMatrix.from_dense(torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
    sign, logabs = slactl.slogdet(S)
    assert float(sign) == 0.0 and float(logabs) == float("-inf")
    with pytest.raises(StructureError, match="square"):
        slactl.slogdet(slactl.SparseMatrix.from_dense(torch.ones(2, 3, dtype=torch.float64)))


def test_gradient_size_limit(monkeypatch):
    from slactl.engine.linear import logdet as mod

    monkeypatch.setattr(mod, "BACKWARD_MAX_ROWS", 10)
    A = slactl.SparseMatrix.from_dense(_random_sparse(20, 0, False))
    v = A.values.detach().clone().requires_grad_()
    _, logabs = slactl.slogdet(A.with_values(v))
    with pytest.raises(NotImplementedFeatureError, match="selected inversion"):
        logabs.backward()
