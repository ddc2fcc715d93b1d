"""Jacobi: the inverse diagonal, columnwise, and a clear error on a zero diagonal."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from problems import convection_diffusion2d
from slactl.engine.preconditioners import Jacobi, make_preconditioner
from slactl.errors import StructureError, UsageError


def test_apply_divides_by_the_diagonal(device):
    C = convection_diffusion2d(5)
    A = slactl.SparseMatrix.from_scipy(C, device=device)
    M = Jacobi(A)
    R = torch.randn(25, 2, dtype=torch.float64, device=device)
    d = torch.from_numpy(C.diagonal()).to(device)
    torch.testing.assert_close(M.apply(R), R / d[:, None])
    torch.testing.assert_close(M.apply(R[:, 1]), R[:, 1] / d)
    assert M.transpose() is M and M.positive_definite


def test_zero_diagonal_is_a_structure_error():
    A = slactl.SparseMatrix.from_scipy(sp.csr_matrix(np.array([[1.0, 2.0], [3.0, 0.0]])))
    with pytest.raises(StructureError, match="row 1"):
        Jacobi(A)


def test_apply_before_setup_and_batched_are_usage_errors():
    with pytest.raises(UsageError):
        Jacobi().apply(torch.ones(3))
    A = slactl.SparseMatrix.from_dense(torch.eye(3, dtype=torch.float64))
    batched = A.with_values(torch.stack([A.values, A.values]))
    with pytest.raises(UsageError):
        Jacobi(batched)


def test_make_preconditioner():
    A = slactl.SparseMatrix.from_scipy(convection_diffusion2d(4))
    for name in ("none", "jacobi", "ilu0", "amg"):
        M = make_preconditioner(name, A)
        assert M.name == name and M.apply(torch.ones(16, dtype=torch.float64)).shape == (16,)
    assert make_preconditioner(None, A).name == "none"
    fresh = Jacobi()
    assert make_preconditioner(fresh, A) is fresh and fresh.shape == (16, 16)
    custom = type("Custom", (), {"apply": lambda self, r: r})()
    assert make_preconditioner(custom, A) is custom
    assert make_preconditioner(Jacobi, A).name == "jacobi"
    assert make_preconditioner("ILU0", A, shift=0.1).shift == 0.1
    with pytest.raises(UsageError, match="unknown preconditioner"):
        make_preconditioner("ilut", A)
