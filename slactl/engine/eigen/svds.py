"""`slactl.svds`: the largest singular triplets of a sparse matrix, differentiable.

Gradients through the symmetric embedding ``H = [[0, A], [A^T, 0]]``, whose eigenpairs are
``(+-s_i, [u_i; +-v_i] / sqrt(2))``:

* singular values: ``ds = u^T dA v``, so ``grad_values[e] = sum_i g_s_i u_i[row e] v_i[col e]``;
* singular vectors: the eigenvector adjoint of :mod:`slactl.engine.eigen.adjoint` applied to
  ``H`` (``g_z = sqrt(2) [g_u; g_v]``), with the computed ``+-`` pairs projected out and the
  complement solved by CG (``s_i I - H`` is positive definite there, as ``s_i`` are the largest),
  then ``dL/dA = (W_top V^T + U W_bottom^T) / sqrt(2)`` on the pattern.

The gauge: each pair ``(u_i, v_i)`` is signed so that the largest-magnitude entry of ``u_i`` is
positive; only losses invariant to flipping both signs have meaningful gradients (as with
``torch.linalg.svd``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from slactl.engine.eigen.adjoint import SymmetricAdjointInfo, eigenvector_adjoint
from slactl.engine.eigen.result import EigenResult, find_clusters
from slactl.engine.krylov.operator import LinearOperator, MatrixOperator
from slactl.engine.matrix import SparseMatrix
from slactl.engine.ops.spmm import sampled_product
from slactl.errors import ConvergenceError, UsageError

DENSE_MAX = 200


class _Embedding(LinearOperator):
    """``[x1; x2] -> [A x2; A^T x1]`` (symmetric, of size ``m + n``)."""

    def __init__(self, A: SparseMatrix):
        m, n = A.shape
        super().__init__((m + n, m + n), A.dtype, A.device)
        self.m, self.op, self.opT = m, MatrixOperator(A), MatrixOperator(A.T.detach())

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.op.matvec(x[self.m:]), self.opT.matvec(x[: self.m])], 0)


class _SvdsAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, U, S, V, info):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.info = info
        return U.clone(), S.clone(), V.clone()

    @staticmethod
    def backward(ctx, gU, gS, gV):  # type: ignore[override]
        info = ctx.info
        U, S, V, pattern = info["U"], info["S"], info["V"], info["pattern"]
        GU, GV = torch.zeros_like(U), torch.zeros_like(V)
        if gS is not None:
            GU = GU + U * gS
        if gU is not None or gV is not None:
            gz = math.sqrt(2) * torch.cat([gU if gU is not None else torch.zeros_like(U),
                                           gV if gV is not None else torch.zeros_like(V)], 0)
            if bool((gz != 0).any()):
                W = eigenvector_adjoint(info["adjoint"], gz) / math.sqrt(2)
                m = U.shape[0]
                GU, GV = GU + W[:m], GV + W[m:]
        grad = sampled_product(pattern, GU, V, batched=False) + sampled_product(pattern, U, GV, batched=False)
        return grad, None, None, None, None


def svds(
    A: SparseMatrix,
    k: int = 6,
    *,
    method: str = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    return_result: bool = False,
) -> Any:
    """The ``k`` largest singular triplets of a sparse matrix; differentiable w.r.t. ``A.values``.

    Parameters
    ----------
    A : SparseMatrix
        Real, ``m x n``, unbatched, on any device (ARPACK runs on the host with A's products on its
        device).
    k : int
        ``1 <= k < min(m, n)`` for ARPACK; up to ``min(m, n)`` for the dense method.
    method : {"auto", "arpack", "dense"}
        ``auto``: dense ``torch.linalg.svd`` when ``min(m, n) <= 200``, else ARPACK.
    tol : float, optional
        Rule ``sqrt(||A v - s u||^2 + ||A^T u - s v||^2) <= tol * max(s, sqrt(eps) s_max)``
        (default 1e-8 in float64).
    maxiter : int, optional
        ARPACK restarts.
    return_result : bool
        Return an :class:`EigenResult` (``eigenvalues`` = singular values, ``left_vectors`` = U,
        ``eigenvectors`` = V) instead of the tuple.

    Returns
    -------
    (U ``[m, k]``, S ``[k]``, Vh ``[k, n]``) or EigenResult
        Singular values in descending order, as ``torch.linalg.svd``.

    Examples
    --------
    >>> import torch, slactl
    >>> D = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    >>> U, S, Vh = slactl.svds(slactl.SparseMatrix.from_dense(D), k=1)
    >>> S
    tensor([3.], dtype=torch.float64)
    """
    if not isinstance(A, SparseMatrix) or A.is_batched:
        raise UsageError("svds takes one SparseMatrix (unbatched)")
    if A.dtype.is_complex:
        raise UsageError(f"svds supports real matrices; got {A.dtype}")
    m, n = A.shape
    p = min(m, n)
    if not 1 <= int(k) <= p:
        raise UsageError(f"k must lie in [1, min(m, n) = {p}], got {k}")
    if method not in ("auto", "arpack", "dense"):
        raise UsageError(f"method must be auto, arpack or dense, got {method!r}")
    if method == "arpack" and k >= p:
        raise UsageError(f"ARPACK (svds) needs k < min(m, n) = {p}: use method='dense'")
    if method == "auto":
        method = "dense" if p <= DENSE_MAX or k >= p else "arpack"
    tol = (1e-8 if A.dtype == torch.float64 else 1e-4) if tol is None else float(tol)
    Ad = A.detach()
    t0 = time.perf_counter()
    if method == "dense":
        U, S, Vh = torch.linalg.svd(Ad.to_dense(), full_matrices=False)
        V = Vh.mT
    else:
        U, S, V = _arpack(Ad, k, tol, maxiter)
    seconds = time.perf_counter() - t0
    nxt = float(S[k]) if S.numel() > k else None
    xU, xS, xV = U[:, k:k + 1], S[k:k + 1], V[:, k:k + 1]
    U, S, V = U[:, :k], S[:k], V[:, :k]
    piv = U.abs().argmax(0)
    sign = torch.sign(U[piv, torch.arange(k, device=U.device)])
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    U, V = U * sign, V * sign
    with torch.no_grad():
        rn = torch.sqrt(torch.linalg.vector_norm(Ad @ V - U * S, dim=0) ** 2
                        + torch.linalg.vector_norm(Ad.T @ U - V * S, dim=0) ** 2)
    scale = float(S.max())
    eps = torch.finfo(A.dtype).eps
    tolv = tol * torch.clamp(S, min=math.sqrt(eps) * scale)
    converged = method == "dense" or bool((rn <= tolv).all())
    r2 = 1 / math.sqrt(2)
    Zp, Zm = torch.cat([U, V]) * r2, torch.cat([U, -V]) * r2
    xZ = torch.cat([torch.cat([xU, xV]) * r2, torch.cat([xU, -xV]) * r2], 1)
    adjoint = SymmetricAdjointInfo(
        base=_Embedding(Ad), pattern=None, vectors=Zp, values=S, extra_vectors=torch.cat([Zm, xZ], 1),
        extra_values=torch.cat([-S, xS, -xS]), mode="above", scale=scale, rtol=max(tol * 1e-3, 1e3 * eps),
    )
    info = dict(U=U, S=S, V=V, pattern=A.pattern, adjoint=adjoint)
    U_t, S_t, V_t = _SvdsAdjoint.apply(A.values, U, S, V, info)
    result = EigenResult(
        eigenvalues=S_t, eigenvectors=V_t, left_vectors=U_t, residual_norms=rn, tolerance=tolv,
        converged=converged, method=method, which="LM", iterations=-1 if method == "arpack" else 0,
        clusters=find_clusters(S, scale), next_eigenvalue=nxt,
        gap=None if nxt is None else (float(S[-1]) - nxt) / scale, timings={"solve": seconds},
    )
    if not converged:
        raise ConvergenceError(result.message, result=result)
    return result if return_result else (U_t, S_t, V_t.mT)


def _arpack(A: SparseMatrix, k: int, tol: float, maxiter: int | None):
    import scipy.sparse.linalg as spla

    m, n = A.shape
    kk = min(k + 1, min(m, n) - 1)
    if A.device.type == "cpu":
        Asp = A.to_scipy()
    else:
        op, opT = MatrixOperator(A), MatrixOperator(A.T.detach())

        def _wrap(o, rows):
            def f(x):
                x = np.asarray(x)
                t = torch.as_tensor(x.reshape(x.shape[0], -1), device=A.device, dtype=A.dtype)
                return o.matvec(t).cpu().numpy().reshape((rows,) + x.shape[1:])
            return f

        Asp = spla.LinearOperator((m, n), matvec=_wrap(op, m), rmatvec=_wrap(opT, n), matmat=_wrap(op, m),
                                  rmatmat=_wrap(opT, n), dtype=np.float64 if A.dtype == torch.float64 else np.float32)
    try:
        u, s, vt = spla.svds(Asp, k=kk, tol=tol * 0.1, maxiter=maxiter, solver="arpack", random_state=0)
    except spla.ArpackNoConvergence as exc:
        raise ConvergenceError(f"ARPACK (svds) did not converge ({exc}); raise maxiter or loosen tol") from exc
    order = np.argsort(-s, kind="stable")
    to = dict(device=A.device, dtype=A.dtype)
    return (torch.as_tensor(np.ascontiguousarray(u[:, order]), **to), torch.as_tensor(s[order].copy(), **to),
            torch.as_tensor(np.ascontiguousarray(vt[order].T), **to))
