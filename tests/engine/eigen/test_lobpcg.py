"""LOBPCG (slactl.engine.eigen.lobpcg) against SciPy's eigsh, over operators of several kinds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import slactl
from slactl.engine.eigen import lobpcg
from slactl.engine.krylov import MatrixOperator
from slactl.engine.preconditioners import make_preconditioner

from problems import poisson2d_array as spd_matrix


class CountingOperator(MatrixOperator):
    """Every inner product must go through reduce (the distributed layer all-reduces there)."""

    def __init__(self, A):
        super().__init__(A)
        self.reduces = 0

    def reduce(self, local):
        self.reduces += 1
        return local


@pytest.mark.parametrize("largest", [False, True])
def test_matches_scipy_and_uses_reduce(sym300, largest):
    op = CountingOperator(slactl.SparseMatrix.from_scipy(sym300))
    res = lobpcg(op, 4, rtol=1e-10, largest=largest)
    ref = spla.eigsh(sym300, k=4, which="LA" if largest else "SA", tol=1e-12)[0]
    ref = np.sort(ref)[::-1] if largest else np.sort(ref)
    assert res.converged and op.reduces > 0
    assert np.allclose(res.eigenvalues.numpy(), ref, rtol=1e-10)
    X = res.eigenvectors
    assert torch.allclose(X.T @ X, torch.eye(4, dtype=torch.float64), atol=1e-10)
    assert bool((res.residual_norms <= res.tolerance).all())


def test_degenerate_poisson_with_amg_and_x0():
    P = spd_matrix(30)
    A = slactl.SparseMatrix.from_scipy(P)
    M = make_preconditioner("amg", A)
    res = lobpcg(A, 5, rtol=1e-9, preconditioner=M)
    ref = np.linalg.eigvalsh(P.toarray())[:5]  # contains the double eigenvalue lambda(1,2) = lambda(2,1)
    assert res.converged and res.iterations < 60
    assert np.allclose(res.eigenvalues.numpy(), ref, rtol=1e-9)
    # a good initial block converges at once
    again = lobpcg(A, 5, rtol=1e-9, preconditioner=M, X0=torch.cat([res.eigenvectors, res.extra_eigenvectors], 1))
    assert again.iterations <= 2


def test_maxiter_reports_not_converged(sym300):
    res = lobpcg(slactl.SparseMatrix.from_scipy(sym300), 3, rtol=1e-12, maxiter=2)
    assert not res.converged and res.iterations == 2


def test_dense_operator_and_callable_preconditioner():
    torch.manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(120, 120, dtype=torch.float64))
    d = torch.linspace(1, 50, 120, dtype=torch.float64)
    A = Q @ torch.diag(d) @ Q.T
    res = lobpcg(A, 3, rtol=1e-10, preconditioner=lambda r: r / 10)
    assert torch.allclose(res.eigenvalues, d[:3], rtol=1e-10)
