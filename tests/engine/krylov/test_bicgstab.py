"""BiCGStab: breakdown handling and agreement with scipy."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

import slactl
from krylov_problems import convection_diffusion2d
from slactl.engine.krylov import Status, bicgstab, gmres
from slactl.engine.preconditioners import ILU0


def test_breakdown_is_reported_not_hidden():
    """For the swap matrix and b = e1, (r0, A p) = 0 at the first step: a true breakdown that
    restarting cannot cure; GMRES solves it."""
    A = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    res = bicgstab(A, b)
    assert res.status is Status.BREAKDOWN and not res.converged
    assert res.recoveries == 3
    assert gmres(A, b).converged


def test_ilu0_preconditioned_agrees_with_spsolve(device):
    C = convection_diffusion2d(20, wind=50.0)
    A = slactl.SparseMatrix.from_scipy(C, device=device)
    b = torch.from_numpy(np.random.default_rng(0).standard_normal(400)).to(device)
    plain = bicgstab(A, b, rtol=1e-10)
    pre = bicgstab(A, b, rtol=1e-10, preconditioner=ILU0(A))
    assert plain.converged and pre.converged
    assert pre.iterations < plain.iterations
    np.testing.assert_allclose(pre.x.cpu().numpy(), sp.linalg.spsolve(C.tocsc(), b.cpu().numpy()), rtol=1e-7, atol=1e-12)
