"""ILU(0) and IC(0): the level-scheduled factors equal a plain row-by-row reference, reproduce A on
its pattern, and are applied (and transposed) correctly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from problems import convection_diffusion2d, poisson2d, random_sparse
from slactl.engine.preconditioners import IC0, ILU0
from slactl.engine.preconditioners.incomplete import ic0_values, ilu0_values
from slactl.errors import DtypeError, StructureError


def reference_ilu0(A: sp.csr_matrix) -> np.ndarray:
    """Textbook ILU(0) (Saad, Alg. 10.4, IKJ) on a dense copy, restricted to the pattern."""
    a = A.toarray().astype(A.dtype)
    S = A.toarray() != 0
    n = a.shape[0]
    for i in range(1, n):
        for k in range(i):
            if S[i, k]:
                a[i, k] /= a[k, k]
                for j in range(k + 1, n):
                    if S[i, j]:
                        a[i, j] -= a[i, k] * a[k, j]
    return np.where(S, a, 0)


def reference_ic0(A: sp.csr_matrix) -> np.ndarray:
    """Textbook IC(0) (row-oriented Cholesky) on the lower pattern."""
    a = np.tril(A.toarray())
    S = a != 0
    n = a.shape[0]
    L = np.zeros_like(a)
    for i in range(n):
        for k in range(i):
            if S[i, k]:
                s = a[i, k]
                for j in range(k):
                    if S[i, j] and S[k, j]:
                        s -= L[i, j] * L[k, j]
                L[i, k] = s / L[k, k]
        d = a[i, i] - sum(L[i, j] ** 2 for j in range(i) if S[i, j])
        L[i, i] = np.sqrt(d)
    return L


def _factor_dense(values, A):
    return sp.csr_matrix((values, A.indices, A.indptr), shape=A.shape).toarray()


def _csr(A):
    return A.indptr.astype(np.int64), A.indices.astype(np.int64)


NONSYMMETRIC = {
    "poisson": poisson2d(7),
    "convection_diffusion": convection_diffusion2d(7),
    "random": random_sparse(60, 0.08, seed=3),
    "random_dense_ish": random_sparse(40, 0.3, seed=4),
}
SYMMETRIC = {
    "poisson": poisson2d(7),
    "random": random_sparse(60, 0.06, seed=5, symmetric=True),
}


@pytest.mark.parametrize("name", list(NONSYMMETRIC))
def test_ilu0_equals_reference(name):
    A = NONSYMMETRIC[name]
    lu = _factor_dense(ilu0_values(*_csr(A), A.data.astype(np.float64)), A)
    ref = reference_ilu0(A)
    np.testing.assert_allclose(lu, ref, rtol=1e-13, atol=1e-15)
    # (L U)_ij = a_ij on the pattern
    L = np.tril(lu, -1) + np.eye(A.shape[0])
    U = np.triu(lu)
    mask = A.toarray() != 0
    np.testing.assert_allclose((L @ U)[mask], A.toarray()[mask], rtol=1e-12, atol=1e-12)


def test_ilu0_of_tridiagonal_is_exact_lu():
    A = sp.diags([-1.0, 3.0, -2.0], [-1, 0, 1], shape=(30, 30), format="csr")
    M = ILU0(slactl.SparseMatrix.from_scipy(A))
    b = torch.randn(30, dtype=torch.float64)
    torch.testing.assert_close(torch.from_numpy(A @ M.apply(b).numpy()), b)


@pytest.mark.parametrize("name", list(SYMMETRIC))
def test_ic0_equals_reference(name):
    A = SYMMETRIC[name]
    T = sp.tril(A).tocsr()
    T.sort_indices()
    L = _factor_dense(ic0_values(*_csr(T), T.data.astype(np.float64)), T)
    np.testing.assert_allclose(L, reference_ic0(A), rtol=1e-13, atol=1e-15)
    mask = np.tril(A.toarray()) != 0
    np.testing.assert_allclose((L @ L.T)[mask], A.toarray()[mask], rtol=1e-12, atol=1e-12)


def test_ic0_and_ilu0_agree_on_symmetric_matrices():
    """For symmetric A, ILU(0) = L D L^T and IC(0) = L D^{1/2}: the same preconditioner."""
    A = slactl.SparseMatrix.from_scipy(SYMMETRIC["random"])
    E = torch.eye(A.shape[0], dtype=torch.float64)
    torch.testing.assert_close(ILU0(A).apply(E), IC0(A).apply(E), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [ILU0, IC0])
def test_apply_is_the_inverse_of_the_factors(cls, device):
    A0 = SYMMETRIC["poisson"]
    A = slactl.SparseMatrix.from_scipy(A0, device=device)
    M = cls(A)
    if cls is ILU0:
        F = (M.L.to_dense() + torch.eye(A.shape[0], dtype=torch.float64, device=device)) @ M.U.to_dense()
    else:
        F = M.L.to_dense() @ M.L.to_dense().T
    R = torch.randn(A.shape[0], 3, dtype=torch.float64, device=device)
    torch.testing.assert_close(F @ M.apply(R), R)
    torch.testing.assert_close(F @ M.apply(R[:, 0]), R[:, 0])
    assert M.L.device.type == device.type


def test_ilu0_transpose_is_the_transposed_operator(device):
    A = slactl.SparseMatrix.from_scipy(NONSYMMETRIC["convection_diffusion"], device=device)
    M = ILU0(A)
    E = torch.eye(A.shape[0], dtype=torch.float64, device=device)
    torch.testing.assert_close(M.transpose().apply(E), M.apply(E).T)
    torch.testing.assert_close(M.transpose().transpose().apply(E), M.apply(E))
    assert not M.symmetric and IC0(slactl.SparseMatrix.from_scipy(SYMMETRIC["poisson"])).transpose().symmetric


def test_ilu0_complex():
    A0 = NONSYMMETRIC["random"]
    Ac = (A0 + 1j * sp.diags(np.linspace(0.1, 1, A0.shape[0]))).tocsr()
    lu = _factor_dense(ilu0_values(*_csr(Ac), Ac.data.astype(np.complex128)), Ac)
    np.testing.assert_allclose(lu, reference_ilu0(Ac), rtol=1e-13, atol=1e-15)
    M = ILU0(slactl.SparseMatrix.from_scipy(Ac, dtype=torch.complex128))
    assert M.apply(torch.ones(Ac.shape[0], dtype=torch.complex128)).dtype == torch.complex128


def test_float32_factors_computed_in_float64():
    A = poisson2d(6)
    M = ILU0(slactl.SparseMatrix.from_scipy(A, dtype=torch.float32))
    assert M.U.dtype == torch.float32
    ref = reference_ilu0(A)
    np.testing.assert_allclose(M.U.to_dense().numpy(), np.triu(ref), rtol=1e-6)


def test_missing_diagonal_is_a_structure_error():
    A = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 2.0]]))
    A.eliminate_zeros()
    with pytest.raises(StructureError, match="row 0"):
        ILU0(slactl.SparseMatrix.from_scipy(A))


def test_zero_pivot_suggests_a_shift():
    # stored zero on the diagonal: ILU(0) divides by it
    A = sp.csr_matrix((np.array([0.0, 1.0, 1.0, 2.0]), np.array([0, 1, 0, 1]), np.array([0, 2, 4])), shape=(2, 2))
    with pytest.raises(StructureError, match="shift"):
        ILU0(slactl.SparseMatrix.from_scipy(A))


def test_ic0_breakdown_suggests_a_shift_and_the_shift_works():
    """An SPD matrix on which IC(0) breaks down (Kershaw-type): pivots go negative."""
    A = np.array([[3.0, -2.0, 0.0, 2.0], [-2.0, 3.0, -2.0, 0.0], [0.0, -2.0, 3.0, -2.0], [2.0, 0.0, -2.0, 3.0]])
    assert np.linalg.eigvalsh(A).min() > 0
    S = slactl.SparseMatrix.from_scipy(sp.csr_matrix(A))
    with pytest.raises(StructureError, match="shift"):
        IC0(S)
    M = IC0(S, shift=1.0)
    assert torch.isfinite(M.apply(torch.ones(4, dtype=torch.float64))).all()


def test_ic0_rejects_nonsymmetric_and_complex():
    with pytest.raises(StructureError, match="symmetric"):
        IC0(slactl.SparseMatrix.from_scipy(NONSYMMETRIC["convection_diffusion"]))
    with pytest.raises(DtypeError):
        IC0(slactl.SparseMatrix.from_scipy(poisson2d(3), dtype=torch.complex128))


def test_many_levels_random_permutation():
    """A randomly permuted Poisson matrix has irregular levels; the factors still match."""
    A = poisson2d(9)
    p = np.random.default_rng(7).permutation(A.shape[0])
    Ap = A[p][:, p].tocsr()
    Ap.sort_indices()
    lu = _factor_dense(ilu0_values(*_csr(Ap), Ap.data), Ap)
    np.testing.assert_allclose(lu, reference_ilu0(Ap), rtol=1e-13, atol=1e-15)
