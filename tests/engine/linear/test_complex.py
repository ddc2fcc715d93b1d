"""Complex solves: adjoint gradients against dense ``torch.linalg.solve`` with autograd, for every
method and preconditioner that takes a complex matrix.

torch's convention for complex tensors: for ``x = A^{-1} b`` and an incoming gradient ``g``,
``grad_b = A^{-H} g`` and ``grad_A = -grad_b x^H`` (on the pattern), not ``A^{-T} g`` and
``-grad_b x^T``. Hermitian matrices would hide half of that mistake (``A^H = A``), so a nonsymmetric
matrix runs every method that takes one.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl.engine.linear.api import prepare
from slactl.engine.linear.dispatch import select
from slactl.engine.linear.structure import analyze
from slactl.errors import BackendUnavailableError

from .systems import convection_diffusion, poisson2d

TIGHT = 1e-13


def _with_imaginary(a: sp.spmatrix, imag: sp.spmatrix) -> slactl.SparseMatrix:
    return slactl.SparseMatrix.from_scipy((sp.csr_array(a) + 1j * sp.csr_array(imag)).tocsr(), dtype=torch.complex128)


def _nonsymmetric() -> slactl.SparseMatrix:
    """Convection-diffusion plus an imaginary part on its pattern: neither symmetric nor hermitian."""
    a = sp.csr_array(convection_diffusion(9))
    imag = a.copy()
    imag.data = np.random.default_rng(0).uniform(-0.3, 0.3, a.nnz)
    return _with_imaginary(a, imag)


def _hermitian() -> slactl.SparseMatrix:
    """Shifted 2D Poisson plus ``i K`` with ``K`` real skew-symmetric: hermitian positive definite
    (eigenvalues >= 2.2 - ||K||, ||K|| <= 1.2), not real, not complex symmetric."""
    a = sp.csr_array(poisson2d(9)) + 2 * sp.eye_array(81)
    upper = sp.triu(a, 1).tocsr()
    upper.data = np.random.default_rng(1).uniform(-0.3, 0.3, upper.nnz)
    return _with_imaginary(a, upper - upper.T)


SYSTEMS = {"nonsymmetric": _nonsymmetric, "hermitian": _hermitian}
CASES = [  # (system, method, preconditioner): every method and preconditioner that takes complex
    ("nonsymmetric", "auto", "auto"),
    ("nonsymmetric", "direct", "auto"),
    ("nonsymmetric", "gmres", "auto"),  # ILU(0)
    ("nonsymmetric", "gmres", "jacobi"),
    ("nonsymmetric", "gmres", "none"),
    ("nonsymmetric", "bicgstab", "ilu0"),
    ("nonsymmetric", "bicgstab", "jacobi"),
    ("hermitian", "auto", "auto"),
    ("hermitian", "direct", "auto"),
    ("hermitian", "cg", "auto"),  # Jacobi
    ("hermitian", "cg", "none"),
    ("hermitian", "minres", "jacobi"),
    ("hermitian", "gmres", "ilu0"),
    ("hermitian", "bicgstab", "jacobi"),
]


def _dense(A: slactl.SparseMatrix, values: torch.Tensor) -> torch.Tensor:
    shape = values.shape[:-1] + A.shape
    flat = values.new_zeros(values.shape[:-1] + (A.shape[0] * A.shape[1],))
    return flat.index_add(-1, A.pattern.keys(), values).reshape(shape)


def _dense_solve(D: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    vector = b.dim() == D.dim() - 1
    x = torch.linalg.solve(D, b.unsqueeze(-1) if vector else b)
    return x.squeeze(-1) if vector else x


def _compare(A: slactl.SparseMatrix, b: torch.Tensor, solve) -> None:
    """``solve(A_v, b)`` on A's device against dense torch.linalg.solve on the CPU: x, and the
    gradients w.r.t. the values and b of a real, non-holomorphic loss (a complex cotangent and ``|x|^2``)."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(b.shape, generator=g, dtype=torch.complex128)
    r = torch.rand(b.shape, generator=g, dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (w.to(x.device) * x).sum().abs() + (r.to(x.device) * x.abs() ** 2).sum()

    Ah = A.to("cpu")
    results = []
    for run, dev in ((lambda v, bb: solve(A.with_values(v), bb), A.device),
                     (lambda v, bb: _dense_solve(_dense(Ah, v), bb), torch.device("cpu"))):
        v, bb = A.values.detach().to(dev).clone().requires_grad_(), b.detach().to(dev).clone().requires_grad_()
        x = run(v, bb)
        results.append(tuple(t.cpu() for t in (x.detach(), *torch.autograd.grad(loss(x), (v, bb)))))
    for got, want, what in zip(results[0], results[1], ("x", "grad values", "grad b")):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10, msg=lambda m, what=what: f"{what}: {m}")


@pytest.mark.parametrize("system,method,preconditioner", CASES, ids=["-".join(c) for c in CASES])
def test_gradients_match_dense_autograd(system, method, preconditioner):
    A = SYSTEMS[system]()
    b = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.complex128)
    _compare(A, b, lambda M, bb: slactl.solve(M, bb, method=method, preconditioner=preconditioner,
                                               rtol=TIGHT, maxiter=5000))


@pytest.mark.parametrize("method", ["direct", "gmres", "bicgstab"])
def test_batched_matrices_and_several_right_hand_sides(method):
    """A batch of two matrices (one block-diagonal system) and two right-hand sides each."""
    A = _nonsymmetric()
    values = torch.stack([A.values, A.values * (1.2 - 0.1j)])
    b = torch.randn(2, A.shape[0], 2, generator=torch.Generator().manual_seed(4), dtype=torch.complex128)
    _compare(A.with_values(values), b, lambda M, bb: slactl.solve(M, bb, method=method, rtol=TIGHT, maxiter=5000))


def test_factorization_reused_for_the_adjoint():
    A = _nonsymmetric()
    b = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.complex128)
    _compare(A, b, lambda M, bb: slactl.factorize(M).solve(bb, rtol=TIGHT))


@pytest.mark.parametrize("system,method,preconditioner", CASES, ids=["-".join(c) for c in CASES])
def test_transpose_and_adjoint_solve_with_the_transpose_and_the_adjoint(system, method, preconditioner):
    """``prepared.transpose()`` solves with ``A^T`` and ``prepared.adjoint()`` with ``A^H`` (the
    backward's system), from the same set-up; transposing twice gives ``A`` again."""
    A = SYSTEMS[system]()
    structure = analyze(A)
    prepared = prepare(A, select(A.shape[0], A.device, A.dtype, structure, method=method,
                                 preconditioner=preconditioner), structure)
    b = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(6), dtype=torch.complex128)
    D = A.to_dense()
    for solver, M in ((prepared, D), (prepared.transpose(), D.T), (prepared.adjoint(), D.mH),
                      (prepared.transpose().transpose(), D), (prepared.adjoint().adjoint(), D)):
        x = solver.solve(b, rtol=TIGHT, maxiter=5000).raise_if_failed().x
        torch.testing.assert_close(x, torch.linalg.solve(M, b), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_a_hermitian_solver_is_its_own_adjoint(method, monkeypatch):
    """The backward of a hermitian solve reuses the solver as it is: no conjugated copy of A."""
    from slactl.engine.linear import base

    def refuse(self, inner):
        raise AssertionError("a conjugated copy of A was built")

    A = _hermitian()
    b = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(8), dtype=torch.complex128)
    monkeypatch.setattr(base.Conjugated, "__init__", refuse)
    _compare(A, b, lambda M, bb: slactl.solve(M, bb, method=method, rtol=TIGHT, maxiter=5000))


@pytest.mark.parametrize("method,preconditioner", [("direct", "auto"), ("gmres", "ilu0")])
def test_values_that_are_a_lazy_conjugate_view(method, preconditioner):
    """Values with the conjugate bit set (``A.map(torch.conj)``): SuperLU and ILU(0) read them
    through NumPy, which refuses such a view. ``conj(conj_physical(v))`` has the bit set and the
    values ``v``: the solve and its gradients must be those of ``A``."""
    A = _nonsymmetric()
    b = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(7), dtype=torch.complex128)

    def conjugated_twice(M: slactl.SparseMatrix) -> slactl.SparseMatrix:
        out = M.map(torch.conj_physical).map(torch.conj)
        assert out.values.is_conj()
        return out

    _compare(A, b, lambda M, bb: slactl.solve(conjugated_twice(M), bb, method=method,
                                               preconditioner=preconditioner, rtol=TIGHT))


GPU_CASES = [  # on CUDA: cuDSS and cupyx (direct, where installed) and the Krylov methods
    ("nonsymmetric", "direct", "cudss", "auto"),
    ("nonsymmetric", "direct", "cupyx", "auto"),
    ("nonsymmetric", "gmres", "auto", "jacobi"),
    ("nonsymmetric", "bicgstab", "auto", "none"),
    ("hermitian", "direct", "cudss", "auto"),
    ("hermitian", "direct", "cupyx", "auto"),
    ("hermitian", "cg", "auto", "jacobi"),
    ("hermitian", "minres", "auto", "none"),
]


@pytest.mark.gpu
@pytest.mark.parametrize("lazy", [False, True], ids=["plain", "lazy-conj"])
@pytest.mark.parametrize("system,method,backend,preconditioner", GPU_CASES, ids=["-".join(c) for c in GPU_CASES])
def test_gradients_match_dense_autograd_on_the_gpu(system, method, backend, preconditioner, lazy):
    """With ``lazy``, the values and b are lazy conjugate views (the conj bit set): CuPy reads raw
    memory, so they must be materialized before it sees them."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    A = SYSTEMS[system]().to("cuda")
    b = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.complex128).cuda()

    def run(M: slactl.SparseMatrix, bb: torch.Tensor) -> torch.Tensor:
        if lazy:
            M, bb = M.map(torch.conj_physical).map(torch.conj), torch.conj(torch.conj_physical(bb))
            assert M.values.is_conj() and bb.is_conj()
        return slactl.solve(M, bb, method=method, backend=backend, preconditioner=preconditioner,
                            rtol=TIGHT, maxiter=5000)

    try:
        _compare(A, b, run)
    except BackendUnavailableError as exc:  # no cuDSS/cupyx on this machine
        pytest.skip(str(exc))
