"""`slactl.eigsh`: a few eigenpairs of a sparse symmetric matrix, differentiable by the adjoint method.

Methods: LOBPCG (slactl's own, :mod:`slactl.engine.eigen.lobpcg`, any device), ARPACK (SciPy's
implicitly restarted Lanczos; matrix products on A's device) with shift-invert through one
:func:`slactl.factorize` of ``A - sigma I`` (reused by the backward pass), and dense
``torch.linalg.eigh`` for tiny matrices. Gradients: :mod:`slactl.engine.eigen.adjoint`.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch

from slactl.engine.eigen.adjoint import EigshAdjoint, SymmetricAdjointInfo
from slactl.engine.eigen.lobpcg import lobpcg
from slactl.engine.eigen.result import GAP_RTOL, DegenerateEigenvaluesWarning, EigenResult, find_clusters
from slactl.engine.krylov.operator import MatrixOperator
from slactl.engine.matrix import SparseMatrix
from slactl.errors import ConvergenceError, StructureError, UsageError

DENSE_MAX_N = 1000       # auto: dense eigh up to this size (exact; ARPACK SA stalls on ill-conditioned small problems)
ARPACK_MAX_N_CPU = 200_000  # auto: ARPACK up to this size (any device), LOBPCG (+AMG) beyond
WHICH = ("SA", "LA", "LM")
METHODS = ("auto", "lobpcg", "arpack", "dense")


def check_symmetric_input(A: Any, name: str = "eigsh") -> SparseMatrix:
    if not isinstance(A, SparseMatrix):
        raise UsageError(f"{name}: A must be a SparseMatrix, got {type(A).__name__}; build one with SparseMatrix.from_scipy/from_dense")
    if A.is_batched:
        raise UsageError(f"{name} takes one matrix; call it on each A[i] of the batch")
    if A.shape[0] != A.shape[1]:
        raise StructureError(f"{name} needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
    if A.dtype.is_complex:
        raise UsageError(f"{name} supports real matrices; got {A.dtype}")
    return A


def default_tol(dtype: torch.dtype) -> float:
    return 1e-8 if dtype == torch.float64 else 1e-4


def eigsh(
    A: SparseMatrix,
    k: int = 6,
    which: str = "SA",
    sigma: float | None = None,
    *,
    method: str = "auto",
    preconditioner: Any = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    X0: torch.Tensor | None = None,
    return_result: bool = False,
) -> Any:
    """``k`` eigenpairs of a symmetric sparse matrix; differentiable w.r.t. ``A.values``.

    Convergence rule (per pair): ``||A v - lambda v|| <= tol * max(|lambda|, sqrt(eps) * scale)``
    with ``scale`` the largest eigenvalue magnitude seen (an estimate of ``||A||_2``).

    Parameters
    ----------
    A : SparseMatrix
        Square, symmetric (``StructureError`` otherwise), real, unbatched, on any device.
    k : int
        Number of eigenpairs.
    which : {"SA", "LA", "LM"}
        Smallest algebraic, largest algebraic or largest magnitude. Ignored with ``sigma``.
    sigma : float, optional
        Shift-invert: the ``k`` eigenvalues nearest ``sigma``, by ARPACK on ``(A - sigma I)^{-1}``
        applied through one :func:`slactl.factorize` (reused by the backward pass).
    method : {"auto", "lobpcg", "arpack", "dense"}
        ``auto``: dense ``eigh`` for ``n <= 1000``; ARPACK for ``sigma``, ``which="LM"`` and up to
        ``n = 200,000`` on any device; LOBPCG beyond, with AMG for SA on a
        likely-SPD matrix.
    preconditioner : "auto", a name ("amg", "jacobi", ...), an object with ``apply`` or None
        LOBPCG only: approximates ``A^{-1}`` (``(-A)^{-1}`` for ``which="LA"``, the operator LOBPCG
        works on). Also used by the backward pass for SA.
    tol : float, optional
        Relative tolerance on eigen-residuals (default 1e-8 in float64, 1e-4 in float32).
    maxiter : int, optional
        LOBPCG iterations / ARPACK restarts.
    X0 : Tensor ``[n, j]``, optional
        Initial block (LOBPCG) or its first column as ARPACK's start vector.
    return_result : bool
        Return an :class:`EigenResult` (eigenvalues and eigenvectors carry gradients there too).

    Returns
    -------
    (eigenvalues ``[k]``, eigenvectors ``[n, k]``) or EigenResult
        Ascending eigenvalues (for every ``which`` and ``sigma``); orthonormal eigenvectors, each
        signed so its largest-magnitude entry is positive.

    Raises
    ------
    StructureError
        A is not square or not symmetric.
    ConvergenceError
        The tolerance was not met; ``err.result`` is the :class:`EigenResult`.

    Notes
    -----
    Gradients follow dense ``torch.linalg.eigh`` (entries of ``A`` independent): eigenvalues give
    ``g_lambda_i v_i v_i^T`` on the pattern; eigenvectors solve one projected system per pair (see
    :mod:`slactl.engine.eigen.adjoint`). Eigenvectors are defined up to sign, so only sign-invariant
    losses (``(v^T c)^2``, ``v**2``...) have meaningful gradients. Near-degenerate eigenvalues
    (relative gap below 1e-8) are reported in ``result.clusters``/``result.gap`` with a
    :class:`DegenerateEigenvaluesWarning`; in a cluster only rotation-invariant losses (e.g. sums of
    the cluster's eigenvalues) have a gradient.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(300, 300))
    >>> A = slactl.SparseMatrix.from_scipy(T).requires_grad_()
    >>> lam, V = slactl.eigsh(A, k=2, which="SA")
    >>> exact = 2 - 2 * torch.cos(torch.arange(1, 3, dtype=torch.float64) * torch.pi / 301)
    >>> bool(torch.allclose(lam, exact, rtol=1e-8))
    True
    >>> lam.sum().backward()   # d(lambda_1 + lambda_2)/dA on A's pattern
    """
    A = check_symmetric_input(A)
    n = A.shape[0]
    if which not in WHICH:
        raise UsageError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 1 <= int(k) <= n:
        raise UsageError(f"k must lie in [1, n = {n}], got {k}")
    k = int(k)
    sym_tol = 1e-12 if A.dtype == torch.float64 else 1e-5
    if not A.is_symmetric(sym_tol):
        raise StructureError("eigsh needs a symmetric matrix (max|A - A^T| is above "
                             f"{sym_tol:g} max|A|); use slactl.eigs for nonsymmetric ones")
    tol = default_tol(A.dtype) if tol is None else float(tol)
    method = _choose(method, A, k, which, sigma)
    Ad = A.detach()
    t0 = time.perf_counter()
    if method == "dense":
        out = _dense(Ad, k, which, sigma)
    elif method == "lobpcg":
        out = _lobpcg(Ad, k, which, tol, maxiter, X0, preconditioner)
    else:
        out = _arpack(Ad, k, which, sigma, tol, maxiter, X0)
    seconds = time.perf_counter() - t0
    return _finish(A, out, k, which, sigma, tol, method, seconds, return_result)


def _choose(method: str, A: SparseMatrix, k: int, which: str, sigma: float | None) -> str:
    n = A.shape[0]
    if method == "lobpcg" and (sigma is not None or which == "LM"):
        raise UsageError("LOBPCG finds extreme eigenvalues (which='SA' or 'LA'); for sigma or which='LM' "
                         "use method='arpack' or 'auto'")
    if method == "lobpcg" and 3 * (k + 1) > n:
        raise UsageError(f"LOBPCG needs n > 3 (k + 1); n = {n}, k = {k}: use method='dense'")
    if method == "arpack" and k >= n:
        raise UsageError(f"ARPACK needs k < n; n = {n}, k = {k}: use method='dense'")
    if method != "auto":
        return method
    if n <= DENSE_MAX_N or k >= n - 1:
        return "dense"
    if sigma is not None or which == "LM" or 3 * (k + 1) > n:
        return "arpack"
    if n <= ARPACK_MAX_N_CPU:
        # ARPACK (host iteration, matvecs on A's device) is the robust choice up to this size on
        # any device; LOBPCG stalls on clustered or high-contrast spectra without a strong
        # preconditioner (measured on the gallery on an H100).
        return "arpack"
    return "lobpcg"


def _order(vals: torch.Tensor, which: str, sigma: float | None) -> torch.Tensor:
    """Indices of ``vals`` best first for ``which``/``sigma``."""
    if sigma is not None:
        return torch.argsort((vals - sigma).abs(), stable=True)
    if which == "SA":
        return torch.argsort(vals, stable=True)
    if which == "LA":
        return torch.argsort(-vals, stable=True)
    return torch.argsort(-vals.abs(), stable=True)


def _dense(A: SparseMatrix, k: int, which: str, sigma: float | None) -> dict:
    vals, vecs = torch.linalg.eigh(A.to_dense())
    idx = _order(vals, which, sigma)
    # Every other eigenvector is known: the backward pass needs no complement solve.
    return dict(vals=vals[idx[:k]], vecs=vecs[:, idx[:k]], xvals=vals[idx[k:]], xvecs=vecs[:, idx[k:]],
                next=vals[idx[k]] if k < vals.numel() else None, iterations=0, scale=float(vals.abs().max()),
                preconditioner="none", M=None, F=None, history=None)


def _preconditioner(preconditioner: Any, A: SparseMatrix, which: str) -> Any:
    from slactl.engine.linear.structure import analyze
    from slactl.engine.preconditioners import make_preconditioner

    if isinstance(preconditioner, str) and preconditioner == "auto":
        if which == "SA" and analyze(A).spd_likely:
            return make_preconditioner("amg", A)
        return None
    if preconditioner is None or (isinstance(preconditioner, str) and preconditioner == "none"):
        return None
    target = -A if which == "LA" else A
    return make_preconditioner(preconditioner, target)


def _lobpcg(A, k, which, tol, maxiter, X0, preconditioner) -> dict:
    M = _preconditioner(preconditioner, A, which)
    res = lobpcg(MatrixOperator(A), k, X0=X0, rtol=tol, maxiter=maxiter, preconditioner=M, largest=which == "LA")
    eps = torch.finfo(A.dtype).eps
    xtol = tol * torch.clamp(res.extra_eigenvalues.abs(), min=math.sqrt(eps) * res.info["norm_estimate"])
    ok = (res.extra_residual_norms <= xtol).to(torch.int64)
    # Guard columns join the backward projector only when they are converged eigenvectors (a prefix).
    prefix = int(torch.cumprod(ok, 0).sum()) if ok.numel() else 0
    return dict(vals=res.eigenvalues, vecs=res.eigenvectors, xvals=res.extra_eigenvalues[:prefix],
                xvecs=res.extra_eigenvectors[:, :prefix],
                next=res.extra_eigenvalues[0] if res.extra_eigenvalues.numel() else None,
                iterations=res.iterations, scale=res.info["norm_estimate"], history=res.history,
                preconditioner="none" if M is None else getattr(M, "name", type(M).__name__),
                M=M if which == "SA" else None, F=None, converged=res.converged)


def _scipy_operator(A: SparseMatrix):
    if A.device.type == "cpu":
        return A.to_scipy()
    import scipy.sparse.linalg as spla

    op = MatrixOperator(A)

    def mv(x):
        t = torch.as_tensor(np.asarray(x).reshape(A.shape[1], -1), device=A.device, dtype=A.dtype)
        return op.matvec(t).cpu().numpy().reshape(np.asarray(x).shape)

    return spla.LinearOperator(A.shape, matvec=mv, matmat=mv, dtype=np.float64 if A.dtype == torch.float64 else np.float32)


def shift_factorization(A: SparseMatrix, sigma: float):
    """``slactl.factorize(A - sigma I)`` and a callable applying its inverse to tensors."""
    from slactl.engine.linear.api import factorize

    n = A.shape[0]
    idx = torch.arange(n, device=A.device)
    shift = SparseMatrix(torch.full((n,), float(sigma), dtype=A.dtype, device=A.device), idx, idx, (n, n))
    F = factorize(A.detach() - shift)
    return F, (lambda r: F.prepared.solve(r, rtol=torch.finfo(r.dtype).eps * 10).x)


def _arpack(A, k, which, sigma, tol, maxiter, X0) -> dict:
    import scipy.sparse.linalg as spla

    n = A.shape[0]
    kk = min(k + 1, n - 1)  # one more: the gap to the next eigenvalue, and a sharper backward
    if X0 is not None:
        v0 = X0.reshape(n, -1)[:, 0].detach().cpu().double().numpy()
    else:  # a fixed start vector: the same matrix gives the same eigenvectors on every call
        v0 = np.random.default_rng(0).standard_normal(n)
    F = solve_fn = None
    # ARPACK's tol bounds the Ritz values' relative error; our check bounds ||A v - lambda v||,
    # which needs a margin of about three digits for small |lambda|.
    kwargs: dict = dict(k=kk, tol=tol * 1e-3, maxiter=maxiter, v0=v0)
    if sigma is not None:
        F, solve_fn = shift_factorization(A, sigma)

        def opinv(x):
            t = torch.as_tensor(np.asarray(x).reshape(n, -1), device=A.device, dtype=A.dtype)
            return solve_fn(t).cpu().numpy().reshape(np.asarray(x).shape)

        kwargs.update(sigma=float(sigma), which="LM",
                      OPinv=spla.LinearOperator((n, n), matvec=opinv, dtype=np.float64 if A.dtype == torch.float64 else np.float32))
    else:
        kwargs.update(which=which)
    try:
        vals, vecs = spla.eigsh(_scipy_operator(A), **kwargs)
    except spla.ArpackNoConvergence as exc:
        vals, vecs = exc.eigenvalues, exc.eigenvectors
        if len(vals) < k:
            raise ConvergenceError(f"ARPACK converged {len(vals)} of {k} eigenpairs; raise maxiter, loosen tol or "
                                   "use shift-invert (sigma) or method='lobpcg'") from exc
    vals = torch.as_tensor(vals, dtype=A.dtype, device=A.device)
    vecs = torch.as_tensor(np.ascontiguousarray(vecs), dtype=A.dtype, device=A.device)
    idx = _order(vals, which, sigma)
    return dict(vals=vals[idx[:k]], vecs=vecs[:, idx[:k]], xvals=vals[idx[k:]], xvecs=vecs[:, idx[k:]],
                next=vals[idx[k]] if idx.numel() > k else None, iterations=-1,
                scale=float(vals.abs().max()), preconditioner="none", M=None, F=(F, solve_fn), history=None)


def _finish(A, out, k, which, sigma, tol, method, seconds, return_result):
    vals, vecs = out["vals"], out["vecs"]
    order = torch.argsort(vals, stable=True)
    vals, vecs = vals[order], vecs[:, order]
    # Sign convention: the largest-magnitude entry of each eigenvector is positive.
    piv = vecs.abs().argmax(0)
    signs = torch.sign(vecs[piv, torch.arange(k, device=vecs.device)])
    vecs = vecs * torch.where(signs == 0, torch.ones_like(signs), signs)
    scale = max(float(vals.abs().max()), out["scale"])
    eps = torch.finfo(A.dtype).eps
    with torch.no_grad():
        Ad = A.detach()
        rn = torch.linalg.vector_norm(Ad @ vecs - vecs * vals, dim=0)
    tolv = tol * torch.clamp(vals.abs(), min=math.sqrt(eps) * scale)
    converged = bool((rn <= tolv).all()) if method != "dense" else True
    clusters = find_clusters(vals, scale)
    nxt = out["next"]
    gap = None
    if nxt is not None:
        if sigma is None and which in ("SA", "LA"):
            edge = vals.max() if which == "SA" else vals.min()
        else:  # LM / sigma: the returned eigenvalue nearest the next one in that order
            edge = vals[(vals - nxt).abs().argmin()]
        gap = float((edge - nxt).abs()) / scale
    shift = out.get("F") or (None, None)
    mode = "shift" if sigma is not None else {"SA": "below", "LA": "above", "LM": "indefinite"}[which]
    info = SymmetricAdjointInfo(
        base=MatrixOperator(A.detach()), pattern=A.pattern, vectors=vecs, values=vals,
        extra_vectors=out["xvecs"], extra_values=out["xvals"], mode=mode, scale=scale,
        # Three digits below the eigen tolerance, but never below what the projected Krylov solve
        # can reach in this dtype (1e3 eps): asking for 10 eps made it report INACCURATE.
        rtol=max(tol * 1e-3, 1e3 * eps), preconditioner=out["M"], shift_solve=shift[1],
    )
    lam, V = EigshAdjoint.apply(A.values, vals, vecs, info)
    result = EigenResult(
        eigenvalues=lam, eigenvectors=V, residual_norms=rn, tolerance=tolv, converged=converged,
        method=method if sigma is None or method == "dense" else "arpack-shift-invert", which=which, sigma=sigma,
        iterations=out["iterations"], preconditioner=out["preconditioner"], clusters=clusters,
        next_eigenvalue=None if nxt is None else float(nxt), gap=gap, history=out["history"],
        timings={"solve": seconds}, info={"factorization": shift[0]} if shift[0] is not None else {},
    )
    if result.degenerate:
        warnings.warn(
            f"near-degenerate eigenvalues (relative gap below {GAP_RTOL:g}): clusters {clusters}"
            + (f", gap to the next eigenvalue {gap:.2e}" if gap is not None and gap < GAP_RTOL else "")
            + "; eigenvectors inside a cluster are not unique and their gradients are undefined",
            DegenerateEigenvaluesWarning, stacklevel=3,
        )
    if not converged:
        raise ConvergenceError(result.message, result=result)
    return result if return_result else (lam, V)
