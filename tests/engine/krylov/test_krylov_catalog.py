"""Every Krylov method agrees with scipy's sparse direct solve on the catalog problems it suits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from krylov_problems import SUITS
from slactl.engine.krylov import METHODS, Status

CASES = [
    (method, problem)
    for method in METHODS
    for problem in ("poisson", "ill_conditioned", "convection_diffusion", "indefinite")
]

# rtol of the solve; the error bound is cond(A) * rtol (with margin).
DTYPES = {torch.float64: 1e-10, torch.float32: 1e-5}


def _suits(method, problem) -> bool:
    return problem.structure in SUITS[method]


@pytest.mark.parametrize("dtype", list(DTYPES), ids=["float64", "float32"])
@pytest.mark.parametrize("method,name", CASES)
def test_agrees_with_spsolve(method, name, dtype, catalog, device):
    problem = catalog[name]
    if not _suits(method, problem):
        pytest.skip(f"{method} does not suit a {problem.structure} matrix")
    rtol = DTYPES[dtype]
    if dtype == torch.float32 and problem.cond > 1e4:
        pytest.skip("float32 cannot reach a meaningful accuracy at this condition number")
    A = problem.matrix(dtype, device)
    b = problem.rhs(dtype=dtype, device=device)
    kwargs = {"restart": A.shape[0] if name == "ill_conditioned" else 60} if method == "gmres" else {}
    res = METHODS[method](A, b, rtol=rtol, **kwargs)
    assert res.status is Status.CONVERGED, res.message
    # the true residual meets the stopping rule
    true = torch.linalg.vector_norm(b.double() - A.double() @ res.x.double())
    assert float(true) <= 1.01 * float(res.tolerance) + 1e-30
    x_ref = problem.reference(b)
    err = np.linalg.norm(res.x.double().cpu().numpy() - x_ref) / np.linalg.norm(x_ref)
    assert err <= 10 * problem.cond * rtol, (err, problem.cond)
    assert res.residual_norms.shape == (res.iterations + 1,)
    assert float(res.residual_norms[-1]) <= float(res.tolerance) * 1.01 or res.recoveries > 0


@pytest.mark.parametrize("method", list(METHODS))
def test_block_rhs_columns_are_independent(method, catalog, device):
    """b of shape [n, k]: each column equals its own single-vector solve (zero column included)."""
    problem = catalog["poisson"]
    A = problem.matrix(device=device)
    B = problem.rhs(k=3, device=device)
    B[:, 1] *= 1e-6  # a small column converges on its own (relative) scale
    B[:, 2] = 0.0
    res = METHODS[method](A, B, rtol=1e-10)
    assert res.converged, res.message
    assert res.x.shape == B.shape
    assert res.residual_norms.shape == (res.iterations + 1, 3)
    assert res.column_status == (Status.CONVERGED,) * 3
    assert torch.all(res.x[:, 2] == 0)
    for j in range(2):
        single = METHODS[method](A, B[:, j], rtol=1e-10)
        torch.testing.assert_close(res.x[:, j], single.x, rtol=1e-6, atol=1e-12)  # SpMM vs SpMV rounding
        x_ref = problem.reference(B[:, j])
        err = np.linalg.norm(res.x[:, j].cpu().numpy() - x_ref) / np.linalg.norm(x_ref)
        assert err < 1e-7


@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_complex_system(method, catalog):
    problem = catalog["convection_diffusion"]
    import scipy.sparse as sp

    Ac = (problem.A + 0.3j * sp.identity(problem.A.shape[0])).tocsr()
    import slactl

    A = slactl.SparseMatrix.from_scipy(Ac, dtype=torch.complex128)
    b = torch.from_numpy(np.random.default_rng(1).standard_normal(Ac.shape[0]) * (1 + 0.5j))
    res = METHODS[method](A, b, rtol=1e-10)
    assert res.converged, res.message
    import scipy.sparse.linalg as spla

    x_ref = spla.spsolve(Ac.tocsc(), b.numpy())
    assert np.linalg.norm(res.x.numpy() - x_ref) / np.linalg.norm(x_ref) < 1e-8


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_complex_hermitian_system(method, catalog):
    """CG and MINRES use the conjugated inner product: a complex Hermitian positive definite
    matrix is solved like a real SPD one."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    import slactl

    P = catalog["poisson"].A
    S = sp.random(P.shape[0], P.shape[0], density=0.01, random_state=3, format="csr")
    H = (P + 0.1j * (S - S.T)).tocsr()  # Hermitian
    assert np.linalg.eigvalsh(H.toarray()).min() > 0.05  # and positive definite
    A = slactl.SparseMatrix.from_scipy(H, dtype=torch.complex128)
    b = torch.from_numpy(np.random.default_rng(2).standard_normal(H.shape[0]) * (1 - 2j))
    res = METHODS[method](A, b, rtol=1e-10)
    assert res.converged, res.message
    x_ref = spla.spsolve(H.tocsc(), b.numpy())
    assert np.linalg.norm(res.x.numpy() - x_ref) / np.linalg.norm(x_ref) < 1e-7
