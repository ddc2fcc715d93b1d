"""Distributed ``eigsh``: the engine's LOBPCG on a :class:`DistOperator`, with adjoint gradients.

The algorithm is :func:`slactl.engine.eigen.lobpcg.lobpcg`, unchanged: it touches the matrix only
through the operator's halo-exchanging ``matvec`` and every Gram matrix through its all-reducing
``reduce``. What this module adds is what makes every rank agree: the global sizes (block size,
iteration limit), a start block that depends only on the global row ids and the seed (so the
partition does not change it), a global sign convention for the eigenvectors, and a symmetry probe.

Gradients follow :mod:`slactl.engine.eigen.adjoint` (dense ``torch.linalg.eigh`` convention, entries
of ``A`` independent), on each rank's own entries:

* eigenvalues: ``dL/dA[e] = sum_i g_lambda_i v_i[row e] v_i[col e]``, the column factor taken from
  ``v`` with its ghosts (one halo broadcast);
* eigenvectors: the engine's :func:`~slactl.engine.eigen.adjoint.eigenvector_adjoint` runs on the
  distributed operator (its projections reduce over ranks, its complement solve is the engine's CG
  on the distributed operator, preconditioned by the forward block preconditioner for ``SA``), and
  the symmetrized outer products are sampled on the local pattern with ghosts.

The eigenvalues are the same on every rank and each rank holds its rows of the eigenvectors. A loss
is the SAME function on every rank for the eigenvalues, and the sum over ranks of each rank's term
for the eigenvectors (``(V**2 * c).sum()`` with ``c`` this rank's rows); every rank must call
``backward`` (the backward pass is collective).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import torch
import torch.distributed as dist

from slactl.dist.matrix import DistOperator, DistSparseMatrix
from slactl.dist.solve import BlockJacobi
from slactl.engine.eigen.adjoint import SymmetricAdjointInfo, eigenvector_adjoint
from slactl.engine.eigen.lobpcg import lobpcg
from slactl.engine.eigen.result import GAP_RTOL, DegenerateEigenvaluesWarning, EigenResult, find_clusters
from slactl.engine.ops.spmm import sampled_product
from slactl.errors import ConvergenceError, NotImplementedFeatureError, StructureError, UsageError


def start_block(A: DistSparseMatrix, m: int, seed: int = 0) -> torch.Tensor:
    """This rank's rows of a pseudo-random ``[n, m]`` block that depends only on the global row ids
    and ``seed`` (the same global block for any partition, never materialized)."""
    g = A.owned.to(torch.float64)[:, None]  # on the host or the device, wherever the ids live
    j = torch.arange(1, m + 1, dtype=torch.float64, device=g.device)[None, :]
    # a hash of (row, column, seed) mapped to [-1, 1): fractional parts of large sines
    t = torch.sin(g * 12.9898 + j * 78.233 + (seed + 1) * 37.719) * 43758.5453
    return (2 * (t - torch.floor(t)) - 1).to(device=A.device, dtype=A.dtype)


def _global(value: float, op: Any, device: torch.device) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return float(t)


def _check_symmetric(A: DistSparseMatrix, op: DistOperator) -> None:
    """``||A x - A^T x|| <= tol ||A x||`` for one probe vector (a global test, same on every rank)."""
    x = start_block(A, 1, seed=12345)[:, 0]
    Ax, ATx = A.apply(x), A.apply_transpose(x)
    diff, ref = op.reduce(torch.stack([((Ax - ATx) ** 2).sum(), (Ax ** 2).sum()])).sqrt().tolist()
    tol = 1e-12 if A.dtype == torch.float64 else 1e-5
    if diff > tol * max(ref, torch.finfo(A.dtype).tiny):
        raise StructureError(f"eigsh needs a symmetric matrix: ||(A - A^T) x|| / ||A x|| = {diff / ref:.2e} for a "
                             f"probe x (above {tol:g}); use slactl.eigs for nonsymmetric matrices")


def _preconditioner(preconditioner: Any, A: DistSparseMatrix, which: str) -> Any:
    """A block preconditioner approximating ``A^{-1}`` (SA) or ``(-A)^{-1}`` (LA), as the engine's eigsh."""
    if isinstance(preconditioner, str) and preconditioner == "auto":
        if which != "SA":
            return None
        from slactl.engine.linear.structure import analyze

        # each owned diagonal block of an SPD matrix is SPD: a rank decides on its own block
        return BlockJacobi(A, "amg") if analyze(A.owned_block()).spd_likely else BlockJacobi(A, "none")
    if preconditioner is None or (isinstance(preconditioner, str) and preconditioner == "none"):
        return None
    if isinstance(preconditioner, str):
        target = A.with_values(-A.values.detach()) if which == "LA" else A
        return BlockJacobi(target, preconditioner)
    if hasattr(preconditioner, "apply"):
        return preconditioner
    raise UsageError(f"preconditioner must be 'auto', a name or an object with apply(r), got {type(preconditioner).__name__}")


def _signed(V: torch.Tensor, A: DistSparseMatrix) -> torch.Tensor:
    """Each column signed so that its largest-magnitude entry (lowest global row among ties) is
    positive: the single-process convention, decided globally."""
    k = V.shape[1]
    absV = V.abs()
    big = torch.full((k,), float("inf"), dtype=torch.float64, device=V.device)
    top = absV.max(0).values.double() if V.shape[0] else torch.zeros(k, dtype=torch.float64, device=V.device)
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    gid = A.owned.to(torch.float64)[:, None].expand(V.shape[0], k).to(V.device)
    cand = torch.where(absV.double() == top, gid, big).min(0).values if V.shape[0] else big
    dist.all_reduce(cand, op=dist.ReduceOp.MIN)
    sign = (torch.sign(V.double()) * (gid == cand)).sum(0) if V.shape[0] else torch.zeros_like(top)
    dist.all_reduce(sign, op=dist.ReduceOp.SUM)
    return V * torch.where(sign == 0, torch.ones_like(sign), sign).to(V.dtype)


def eigsh(
    A: DistSparseMatrix,
    k: int = 6,
    which: str = "SA",
    *,
    preconditioner: Any = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    X0: torch.Tensor | None = None,
    seed: int = 0,
    return_result: bool = False,
) -> Any:
    """``k`` extreme eigenpairs of a distributed symmetric matrix by LOBPCG; differentiable w.r.t.
    ``A.values`` on every rank.

    Convergence rule (per pair, global norms): ``||A v - lambda v|| <= tol * max(|lambda|,
    sqrt(eps) * scale)`` with ``scale`` the largest Ritz value magnitude seen.

    Parameters
    ----------
    A : DistSparseMatrix
        Symmetric (probed: :class:`StructureError` otherwise), real.
    k : int
        Number of eigenpairs; every rank must own at least ``k + guard`` rows (guard
        ``min(n - k, max(2, min(k, 8)))``).
    which : {"SA", "LA"}
        Smallest or largest algebraic. ``"LM"`` and shift-invert are not distributed.
    preconditioner : "auto", a local preconditioner name, an object with ``apply`` or None
        A name is block Jacobi (:class:`BlockJacobi`) of ``A`` (SA) or ``-A`` (LA) with that local
        preconditioner; ``"auto"`` is block AMG for SA when the owned blocks look SPD, none for LA.
        The backward pass reuses it for SA.
    tol : float, optional
        Default 1e-8 in float64, 1e-4 in float32.
    maxiter : int, optional
        LOBPCG iterations (default ``max(200, min(n, 2000))``, global ``n``).
    X0 : Tensor ``[n_owned, j]``, optional
        This rank's rows of the initial block; default :func:`start_block` (depends only on the
        global row ids and ``seed``).
    return_result : bool
        Return an :class:`~slactl.engine.eigen.result.EigenResult` (``eigenvectors``: this rank's rows).

    Returns
    -------
    (eigenvalues ``[k]``, eigenvectors ``[n_owned, k]``) or EigenResult
        Ascending eigenvalues (the same on every rank); this rank's rows of orthonormal
        eigenvectors, each signed so that its largest-magnitude entry is positive.

    Raises
    ------
    ConvergenceError
        On every rank alike; ``err.result`` is the :class:`EigenResult`.

    Examples
    --------
    >>> A = DistSparseMatrix.from_store("poisson.parts.zarr")    # doctest: +SKIP
    >>> lam, V = eigsh(A, k=4, which="SA", preconditioner="ic0")   # doctest: +SKIP
    >>> lam.sum().backward()          # on every rank: gradient w.r.t. its A.values   # doctest: +SKIP
    """
    if not isinstance(A, DistSparseMatrix):
        raise UsageError(f"A must be a DistSparseMatrix, got {type(A).__name__}")
    if which not in ("SA", "LA"):
        raise NotImplementedFeatureError(f"distributed eigsh finds extreme eigenvalues (which='SA' or 'LA'), got {which!r}; "
                                         "gather the matrix for which='LM' or shift-invert")
    if A.dtype.is_complex:
        raise UsageError(f"eigsh supports real matrices; got {A.dtype}")
    n, k = A.shape[0], int(k)
    if not 1 <= k or 3 * (k + 1) > n:
        raise UsageError(f"distributed LOBPCG needs 1 <= k and n > 3 (k + 1); n = {n}, k = {k}")
    guard = min(n - k, max(2, min(k, 8)))
    fewest = int(_global(A.n_owned, dist.ReduceOp.MIN, A.device))
    if fewest < k + guard:
        raise UsageError(f"a rank owns only {fewest} rows; distributed LOBPCG needs k + guard = {k + guard} rows on "
                         "every rank: ask for fewer eigenpairs or use fewer ranks")
    op = DistOperator(A)
    _check_symmetric(A, op)
    tol = (1e-8 if A.dtype == torch.float64 else 1e-4) if tol is None else float(tol)
    maxiter = max(200, min(n, 2000)) if maxiter is None else int(maxiter)
    if X0 is None:
        X0 = start_block(A, k + guard, seed)
    elif X0.dim() not in (1, 2) or X0.shape[0] != A.n_owned:
        raise UsageError(f"X0 must hold this rank's {A.n_owned} rows, got shape {tuple(X0.shape)}")
    M = _preconditioner(preconditioner, A, which)
    t0 = time.perf_counter()
    res = lobpcg(op, k, X0=X0, rtol=tol, maxiter=maxiter, preconditioner=M, largest=which == "LA",
                 guard=guard, seed=seed)
    seconds = time.perf_counter() - t0
    return _finish(A, op, res, k, which, tol, M, seconds, return_result)


def _finish(A, op, res, k, which, tol, M, seconds, return_result):
    eps = torch.finfo(A.dtype).eps
    scale = res.info["norm_estimate"]
    # Guard columns join the backward projector only when they are converged eigenvectors (a prefix).
    xtol = tol * torch.clamp(res.extra_eigenvalues.abs(), min=math.sqrt(eps) * scale)
    ok = (res.extra_residual_norms <= xtol).to(torch.int64)
    prefix = int(torch.cumprod(ok, 0).sum()) if ok.numel() else 0
    order = torch.argsort(res.eigenvalues, stable=True)
    vals = res.eigenvalues[order]
    vecs = _signed(res.eigenvectors[:, order], A)
    with torch.no_grad():
        R = op.matvec(vecs) - vecs * vals
        rn = torch.sqrt(op.reduce((R * R).sum(0)))
    scale = max(float(vals.abs().max()), scale)
    tolv = tol * torch.clamp(vals.abs(), min=math.sqrt(eps) * scale)
    converged = bool((rn <= tolv).all())
    nxt = res.extra_eigenvalues[0] if res.extra_eigenvalues.numel() else None
    gap = None
    if nxt is not None:
        edge = vals.max() if which == "SA" else vals.min()
        gap = float((edge - nxt).abs()) / scale
    info = SymmetricAdjointInfo(
        base=op, pattern=A.local.pattern, vectors=vecs, values=vals,
        extra_vectors=res.extra_eigenvectors[:, :prefix], extra_values=res.extra_eigenvalues[:prefix],
        mode="below" if which == "SA" else "above", scale=scale, rtol=max(tol * 1e-3, 1e3 * eps),
        preconditioner=M if which == "SA" else None,
    )
    lam, V = _DistEigshAdjoint.apply(A.values, vals, vecs, info, A.detach())
    clusters = find_clusters(vals, scale)
    result = EigenResult(
        eigenvalues=lam, eigenvectors=V, residual_norms=rn, tolerance=tolv, converged=converged,
        method="lobpcg", which=which, iterations=res.iterations,
        preconditioner="none" if M is None else getattr(M, "name", type(M).__name__), clusters=clusters,
        next_eigenvalue=None if nxt is None else float(nxt), gap=gap, history=res.history,
        timings={"solve": seconds}, info={"parts": A.parts, "block_size": res.info["block_size"]},
    )
    if result.degenerate:
        warnings.warn(f"near-degenerate eigenvalues (relative gap below {GAP_RTOL:g}): clusters {clusters}; "
                      "eigenvectors inside a cluster are not unique and their gradients are undefined",
                      DegenerateEigenvaluesWarning, stacklevel=3)
    if not converged:
        raise ConvergenceError(result.message, result=result)
    return result if return_result else (lam, V)


def _with_ghosts(A: DistSparseMatrix, X: torch.Tensor) -> torch.Tensor:
    return torch.cat([X, A.plan.start(X.contiguous()).wait()])


class _DistEigshAdjoint(torch.autograd.Function):
    """``(values, lam, V) -> (lam, V)``; the backward is the engine's eigen adjoint, distributed."""

    @staticmethod
    def forward(ctx, values, lam, V, info, A):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.info, ctx.A = info, A
        return lam.clone(), V.clone()

    @staticmethod
    def backward(ctx, glam, gV):  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        info: SymmetricAdjointInfo = ctx.info
        A, V = ctx.A, info.vectors
        # Collective decision: does any rank have an eigenvector gradient?
        mine = float(gV is not None and bool((gV != 0).any()))
        with_vectors = _global(mine, dist.ReduceOp.MAX, V.device) > 0
        G = V * glam if glam is not None else torch.zeros_like(V)
        if not with_vectors:
            return sampled_product(info.pattern, G, _with_ghosts(A, V), batched=False), None, None, None, None
        gV = torch.zeros_like(V) if gV is None else gV
        # Symmetrized, like dense eigh: (w v^T + v w^T) / 2 (v v^T is symmetric already).
        G = G + 0.5 * eigenvector_adjoint(info, gV)
        H = G - V * glam if glam is not None else G
        grad = sampled_product(info.pattern, G, _with_ghosts(A, V), batched=False)
        grad = grad + sampled_product(info.pattern, V, _with_ghosts(A, H), batched=False)
        return grad, None, None, None, None
