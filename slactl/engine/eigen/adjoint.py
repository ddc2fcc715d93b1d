"""Adjoint gradients of symmetric eigenpairs: one autograd Function, no differentiation through
the iterations.

For ``A v_i = lambda_i v_i`` (``A`` symmetric, ``v_i`` orthonormal), with the entries of ``A``
treated as independent (the convention of dense ``torch.linalg.eigh`` autograd, which returns
``V (diag(g_lambda) + F o V^T g_V) V^T``):

* eigenvalues: ``dL/dA = sum_i g_lambda_i v_i v_i^T``;
* eigenvectors: ``dL/dA = sum_i (w_i v_i^T + v_i w_i^T) / 2`` with ``w_i = sum_{j != i} v_j (v_j^T g_i) /
  (lambda_i - lambda_j)`` over the whole spectrum. The part in the span of the computed vectors
  ``Q`` is summed explicitly; the rest solves ``P (A - lambda_i I) P w = -P g_i`` with
  ``P = I - Q Q^T`` by a Krylov method on the projected operator (CG where ``A - lambda_i I`` is
  definite on the complement: smallest or largest eigenvalues; MINRES for ``which="LM"``; GMRES
  preconditioned by the shift-invert factorization of ``A - sigma I`` for interior eigenvalues).

The gradient lives on ``A``'s pattern: ``grad_values[e] = sum_i (g_lambda_i v_i[row e] + w_i[row
e] / 2) v_i[col e] + v_i[row e] w_i[col e] / 2``. Near-degenerate pairs (relative gap below ``GAP_RTOL``) are left out of the
explicit sum: that is exact for losses invariant to rotations inside the cluster (then the
dropped terms cancel for every symmetric perturbation), and a
:class:`~slactl.engine.eigen.result.DegenerateEigenvaluesWarning` says so when the loss is not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from slactl.engine.krylov import cg, gmres, minres
from slactl.engine.krylov.operator import LinearOperator
from slactl.engine.eigen.result import GAP_RTOL, DegenerateEigenvaluesWarning
from slactl.engine.ops.spmm import sampled_product
from slactl.errors import ConvergenceError


class ProjectedShifted(LinearOperator):
    """``x -> sign * P (A x - x diag(shifts)) P`` with ``P = I - Q Q^H`` (``Q`` orthonormal).

    Blocks ``[n, k]`` get one shift per column. Inner products use the base operator's reduce.
    """

    def __init__(self, base: LinearOperator, Q: torch.Tensor, shifts: torch.Tensor, sign: float = 1.0):
        super().__init__(base.shape, base.dtype, base.device)
        self.base, self.Q, self.shifts, self.sign = base, Q, shifts, sign

    def project(self, x: torch.Tensor) -> torch.Tensor:
        if self.Q.shape[1] == 0:
            return x
        return x - self.Q @ self.base.reduce(self.Q.mH @ x)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        shift = self.shifts if x.dim() == 2 else self.shifts.reshape(())
        return self.sign * self.project(self.base.matvec(x) - x * shift)

    def reduce(self, local: torch.Tensor) -> torch.Tensor:
        return self.base.reduce(local)


class _ProjectedPreconditioner:
    """``P M P`` (symmetric positive definite on range(P) when ``M`` is)."""

    def __init__(self, op: ProjectedShifted, apply):
        self.op, self._apply, self.name = op, apply, "projected"

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        return self.op.project(self._apply(self.op.project(r)))


@dataclass
class SymmetricAdjointInfo:
    """What the backward pass of a symmetric eigensolve needs (all detached)."""

    base: LinearOperator        # A as an operator (matvec + reduce)
    pattern: Any                # A's pattern (gradient support)
    vectors: torch.Tensor       # [n, k] returned eigenvectors
    values: torch.Tensor        # [k]
    extra_vectors: torch.Tensor  # [n, e] further converged eigenvectors (projected out too)
    extra_values: torch.Tensor  # [e]
    mode: str                   # "below" | "above" | "indefinite" | "shift"
    scale: float                # spectral scale for the degeneracy test
    rtol: float                 # tolerance of the complement solves
    preconditioner: Any = None  # SPD approximation of A^{-1} ("below" mode)
    shift_solve: Any = None     # callable r -> (A - sigma I)^{-1} r ("shift" mode)
    gap_rtol: float = GAP_RTOL


def eigenvector_adjoint(info: SymmetricAdjointInfo, gV: torch.Tensor) -> torch.Tensor:
    """``W [n, k]`` with ``w_i = sum_{j != i} v_j (v_j^T g_i) / (lambda_i - lambda_j)`` over the
    whole spectrum (see the module docstring)."""
    base, V, lam = info.base, info.vectors, info.values
    Q = torch.cat([V, info.extra_vectors], 1)
    mu = torch.cat([lam, info.extra_values])
    k = V.shape[1]
    C = base.reduce(Q.mH @ gV)  # [k + e, k]: C[j, i] = q_j^T g_i
    D = lam[None, :] - mu[:, None]  # D[j, i] = lambda_i - mu_j
    near = D.abs() <= info.gap_rtol * info.scale
    _check_degenerate(near, C, k)
    coef = torch.where(near, torch.zeros_like(C), C / torch.where(near, torch.ones_like(D), D))
    W_in = Q @ coef
    rhs = -(gV - Q @ C)
    # Rows and squared norms summed by base.reduce: on a distributed operator every rank must take
    # the same branch (the complement solve is collective).
    rows, rhs_sq, g_sq = base.reduce(torch.stack([
        torch.tensor(float(Q.shape[0]), dtype=rhs.real.dtype, device=rhs.device),
        (rhs.abs() ** 2).sum().to(rhs.real.dtype), (gV.abs() ** 2).sum().to(rhs.real.dtype)])).tolist()
    if Q.shape[1] >= rows:
        return W_in  # every eigenvector is known (dense): nothing outside their span
    # A gradient inside span(V) (e.g. of sum(V**2)) leaves only rounding outside it: solving for
    # that noise would not converge and contributes nothing.
    if rhs_sq <= (64 * torch.finfo(rhs.real.dtype).eps) ** 2 * max(g_sq, torch.finfo(rhs.real.dtype).tiny):
        return W_in
    w = _complement_solve(info, Q, rhs)
    return W_in + w


def _check_degenerate(near: torch.Tensor, C: torch.Tensor, k: int) -> None:
    off = near.clone()
    idx = torch.arange(k, device=near.device)
    off[idx, idx] = False
    if not bool(off.any()):
        return
    scale = float(C.abs().max()) or 1.0
    # Inside a cluster the loss must be rotation invariant: C restricted to the cluster symmetric.
    Ck = C[:k]
    asym = (Ck - Ck.mT).abs()
    bad = bool(((asym > 1e-6 * scale) & off[:k]).any())
    bad = bad or bool(((C[k:].abs() > 1e-6 * scale) & off[k:]).any())
    if bad:
        warnings.warn(
            "eigenvector gradient requested inside a cluster of (near-)degenerate eigenvalues, and "
            "the loss is not invariant to rotations within the cluster: the gradient is not defined "
            "there; the intra-cluster terms were left out. Use a loss of the cluster's subspace "
            "(e.g. of V V^T) or of the eigenvalues only.",
            DegenerateEigenvaluesWarning, stacklevel=3,
        )


def _complement_solve(info: SymmetricAdjointInfo, Q: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    lam = info.values
    if info.mode == "above":
        op = ProjectedShifted(info.base, Q, lam, sign=-1.0)
        res = cg(op, -rhs, rtol=info.rtol)
    elif info.mode == "below":
        op = ProjectedShifted(info.base, Q, lam, sign=1.0)
        pre = None
        if info.preconditioner is not None:
            pre = _ProjectedPreconditioner(op, info.preconditioner.apply)
        res = cg(op, rhs, rtol=info.rtol, preconditioner=pre)
        if pre is not None and not res.converged:
            # The forward preconditioner (AMG of A) need not be definite when A is not SPD.
            res = cg(op, rhs, rtol=info.rtol)
    elif info.mode == "shift":
        op = ProjectedShifted(info.base, Q, lam, sign=1.0)
        res = gmres(op, rhs, rtol=info.rtol, preconditioner=_ProjectedPreconditioner(op, info.shift_solve))
    else:
        op = ProjectedShifted(info.base, Q, lam, sign=1.0)
        res = minres(op, rhs, rtol=info.rtol)
    if not res.converged:
        raise ConvergenceError(
            "eigenvector gradient: the projected solve (A - lambda_i I) w = -(I - V V^T) g_i did not "
            f"converge ({res.message}). The returned eigenvalue is likely (nearly) degenerate with one "
            "that was not computed: ask for a larger k so the whole cluster is inside, or use a loss "
            "of the eigenvalues only.",
            result=res,
        )
    return op.project(res.x)


class EigshAdjoint(torch.autograd.Function):
    """``(values, lam, V) -> (lam, V)`` whose backward is the adjoint formula above."""

    @staticmethod
    def forward(ctx, values, lam, V, info):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.info = info
        ctx.values_dtype = values.dtype
        return lam.clone(), V.clone()

    @staticmethod
    def backward(ctx, glam, gV):  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        info: SymmetricAdjointInfo = ctx.info
        V = info.vectors
        G = torch.zeros_like(V)
        if glam is not None:
            _check_cluster_sum(info, glam)
            G = G + V * glam
        if gV is not None and bool((gV != 0).any()):
            # Symmetrized, like dense eigh: (w v^T + v w^T) / 2 (v v^T is symmetric already).
            G = G + 0.5 * eigenvector_adjoint(info, gV)
            grad = sampled_product(info.pattern, G, V, batched=False)
            grad = grad + sampled_product(info.pattern, V, G - V * glam if glam is not None else G, batched=False)
        else:
            grad = sampled_product(info.pattern, G, V, batched=False)
        return grad.to(ctx.values_dtype), None, None, None


def _check_cluster_sum(info: SymmetricAdjointInfo, glam: torch.Tensor) -> None:
    """Warn when single eigenvalues of a degenerate cluster get different weights: only symmetric
    functions of a cluster's eigenvalues (like their sum) have a basis-independent gradient."""
    lam = info.values
    near = (lam[:, None] - lam[None, :]).abs() <= info.gap_rtol * info.scale
    diff = (glam[:, None] - glam[None, :]).abs()
    if bool((near & (diff > 1e-8 * (float(glam.abs().max()) or 1.0))).any()):
        warnings.warn(
            "gradients of single eigenvalues of a degenerate cluster depend on the basis chosen "
            "inside the cluster; only symmetric functions of the cluster (e.g. its sum) have a "
            "well-defined gradient.",
            DegenerateEigenvaluesWarning, stacklevel=3,
        )
