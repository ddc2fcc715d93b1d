"""`slactl.eigs`: a few eigenpairs of a real nonsymmetric sparse matrix (ARPACK), differentiable.

Gradients (adjoint, no differentiation through the iterations), for ``A v = lambda v`` with left
eigenvector ``y`` (``A^T y = lambda y``) scaled so that ``y^T v = 1``:

* eigenvalue: ``d lambda = y^T dA v``, so ``grad_values[e] = Re(conj(g_lambda) y[row e] v[col e])``;
* eigenvector (unit norm, largest-magnitude entry ``p`` real positive): ``dv = -S dA v + alpha v``
  with ``S`` the reduced resolvent ``sum_{j != i} v_j y_j^T / (lambda_j - lambda_i)`` and ``alpha``
  fixed by the normalization, which gives ``grad_values[e] = -Re(conj(q[row e]) v[col e])`` where
  ``q = S^H h`` solves the bordered system
  ``[[A^T - conj(lambda) I, conj(y)], [v^H, 0]] [q; mu] = [h; 0]``, with
  ``h = g - v Re(v^H g) + i Im(g^H v) / v[p] e_p``. The bordered systems are factorized by SuperLU.
For phase-invariant losses (``|v|**2``...) this equals dense ``torch.linalg.eig`` autograd.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from slactl.engine.eigen.result import EigenResult, find_clusters
from slactl.engine.matrix import SparseMatrix
from slactl.engine.ops.spmm import sampled_product
from slactl.errors import ConvergenceError, StructureError, UsageError

WHICH = ("LM", "SM", "LR", "SR", "LI", "SI")
DENSE_MAX_N = 200


def _order(vals: torch.Tensor, which: str, sigma: float | None) -> torch.Tensor:
    key = {
        "LM": -vals.abs(), "SM": vals.abs(), "LR": -vals.real, "SR": vals.real, "LI": -vals.imag, "SI": vals.imag,
    }[which] if sigma is None else (vals - sigma).abs()
    # Ties (a conjugate pair has equal magnitude, real part, distance to a real sigma): the
    # eigenvalue with the smaller imaginary part first, so the order is deterministic.
    scale = float(vals.abs().max()) if vals.numel() else 1.0
    key = torch.round(key / (scale or 1.0) * 1e10)
    first = torch.argsort(vals.imag, stable=True)
    return first[torch.argsort(key[first], stable=True)]


def _normalize(V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit columns whose largest-magnitude entry is real and positive; returns (V, pivots)."""
    V = V / torch.linalg.vector_norm(V, dim=0)
    piv = V.abs().argmax(0)
    ph = V[piv, torch.arange(V.shape[1])]
    return V * (ph.abs() / ph), piv


def _left_vectors(Asp: Any, lam: np.ndarray, V: np.ndarray, scale: float) -> np.ndarray:
    """Left eigenvectors ``y_i`` (``A^T y = lambda y``) scaled to ``y_i^T v_i = 1``, by two steps
    of inverse iteration with ``A^T - (lambda + delta) I`` (``|delta| ~ 1e-10 scale``)."""
    n = Asp.shape[0]
    At = sp.csc_matrix(Asp.T, dtype=np.complex128)
    eye = sp.identity(n, dtype=np.complex128, format="csc")
    rng = np.random.default_rng(0)
    Y = np.empty_like(V)
    for i, l in enumerate(lam):
        delta = 1e-10 * max(scale, 1e-300) * (1 + 1j) / math.sqrt(2)
        lu = spla.splu((At - (l + delta) * eye).tocsc())
        y = rng.standard_normal(n) + 1j * rng.standard_normal(n)
        for _ in range(3):
            y = lu.solve(y)
            y /= np.linalg.norm(y)
        Y[:, i] = y / (y @ V[:, i])
    return Y


class _EigsAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, lam, V, info):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.info = info
        return lam.clone(), V.clone()

    @staticmethod
    def backward(ctx, glam, gV):  # type: ignore[override]
        info = ctx.info
        V, Y, pattern = info["V"], info["Y"], info["pattern"]
        G = torch.zeros_like(V)
        if glam is not None:
            G = G + Y * glam.conj()
        if gV is not None and bool((gV != 0).any()):
            G = G - _eigenvector_terms(info, gV).conj()
        grad = sampled_product(pattern, G, V, batched=False).real
        return grad.to(info["dtype"]), None, None, None


def _eigenvector_terms(info: dict, gV: torch.Tensor) -> torch.Tensor:
    """``Q [n, k]``: column ``i`` is ``q_i`` of the module docstring."""
    Asp, V, Y, lam, piv = info["scipy"], info["V"], info["Y"], info["lam"], info["piv"]
    n, k = V.shape
    Vn, Yn, gn = V.cpu().numpy(), Y.cpu().numpy(), gV.detach().cpu().resolve_conj().resolve_neg().numpy().astype(np.complex128)
    At = sp.csr_matrix(Asp.T, dtype=np.complex128)
    Qm = np.zeros((n, k), dtype=np.complex128)
    for i in range(k):
        g, v = gn[:, i], Vn[:, i]
        if not np.any(g):
            continue
        p = int(piv[i])
        h = g - v * np.real(np.vdot(v, g))
        h[p] += 1j * np.imag(np.vdot(g, v)) / v[p].real
        K = sp.bmat([[At - np.conj(lam[i]) * sp.identity(n, format="csr"), np.conj(Yn[:, i])[:, None]],
                     [v.conj()[None, :], None]], format="csc")
        sol = spla.splu(K).solve(np.concatenate([h, [0.0]]))
        Qm[:, i] = sol[:n]
    return torch.from_numpy(Qm).to(V.device)


def eigs(
    A: SparseMatrix,
    k: int = 6,
    which: str = "LM",
    sigma: float | None = None,
    *,
    method: str = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    v0: torch.Tensor | None = None,
    return_result: bool = False,
) -> Any:
    """``k`` eigenpairs of a real, square (nonsymmetric) sparse matrix; differentiable.

    Parameters
    ----------
    A : SparseMatrix
        Real, square, unbatched (on the CPU or moved there for ARPACK; results come back on A's device).
    k : int
        Number of eigenpairs (``k < n - 1`` for ARPACK).
    which : {"LM", "SM", "LR", "SR", "LI", "SI"}
        Largest/smallest magnitude, real part or imaginary part. Ignored with ``sigma``.
    sigma : float, optional
        Shift-invert around a real ``sigma``: the eigenvalues nearest ``sigma``.
    method : {"auto", "arpack", "dense"}
        ``auto``: dense ``torch.linalg.eig`` for ``n <= 200`` (or ``k >= n - 1``), else ARPACK.
    tol : float, optional
        Rule ``||A v - lambda v|| <= tol * max(|lambda|, sqrt(eps) scale)`` (default 1e-8 in float64).
    maxiter : int, optional
        ARPACK restarts.
    v0 : Tensor ``[n]``, optional
        ARPACK start vector.
    return_result : bool
        Return an :class:`EigenResult` instead of ``(eigenvalues, eigenvectors)``.

    Returns
    -------
    (eigenvalues ``[k]`` complex, eigenvectors ``[n, k]`` complex) or EigenResult
        Ordered best first for ``which`` (nearest first for ``sigma``). Eigenvectors have unit norm
        and their largest-magnitude entry is real and positive (the gauge the gradients refer to).

    Examples
    --------
    >>> import torch, slactl
    >>> D = torch.tensor([[1.0, 2.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    >>> lam, V = slactl.eigs(slactl.SparseMatrix.from_dense(D), k=2, which="LM")
    >>> [complex(round(z.real, 8), round(z.imag, 8)) for z in lam.tolist()]  # smaller imaginary part first
    [(1-2j), (1+2j)]
    """
    if not isinstance(A, SparseMatrix) or A.is_batched:
        raise UsageError("eigs takes one SparseMatrix (unbatched)")
    if A.shape[0] != A.shape[1]:
        raise StructureError(f"eigs needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
    if A.dtype.is_complex:
        raise UsageError(f"eigs supports real matrices; got {A.dtype}")
    if which not in WHICH:
        raise UsageError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    n = A.shape[0]
    if not 1 <= int(k) <= n:
        raise UsageError(f"k must lie in [1, n = {n}], got {k}")
    if method not in ("auto", "arpack", "dense"):
        raise UsageError(f"method must be auto, arpack or dense, got {method!r}")
    if method == "arpack" and k >= n - 1:
        raise UsageError(f"ARPACK (eigs) needs k < n - 1; n = {n}, k = {k}: use method='dense'")
    if method == "auto":
        method = "dense" if n <= DENSE_MAX_N or k >= n - 1 else "arpack"
    tol = (1e-8 if A.dtype == torch.float64 else 1e-4) if tol is None else float(tol)
    Asp = A.detach().cpu().double().to_scipy()
    t0 = time.perf_counter()
    if method == "dense":
        vals, vecs = torch.linalg.eig(torch.from_numpy(Asp.toarray()))
        vals, vecs = vals.numpy(), vecs.numpy()
    else:
        vals, vecs = _arpack(A, Asp, k, which, sigma, tol, maxiter, v0)
    cvals = torch.from_numpy(np.asarray(vals, dtype=np.complex128))
    idx = _order(cvals, which, sigma)
    nxt = complex(cvals[idx[k]]) if idx.numel() > k else None
    lam, V = cvals[idx[:k]], torch.from_numpy(np.asarray(vecs, dtype=np.complex128))[:, idx[:k]]
    V, piv = _normalize(V)
    scale = float(cvals.abs().max())
    Y = torch.from_numpy(_left_vectors(Asp, lam.numpy(), V.numpy(), scale))
    seconds = time.perf_counter() - t0
    cdtype = torch.complex128 if A.dtype == torch.float64 else torch.complex64
    rn = torch.from_numpy(np.linalg.norm(Asp @ V.numpy() - V.numpy() * lam.numpy(), axis=0))
    eps = torch.finfo(A.dtype).eps
    tolv = tol * torch.clamp(lam.abs(), min=math.sqrt(eps) * scale)
    converged = method == "dense" or bool((rn <= tolv).all())
    info = dict(scipy=Asp, V=V, Y=Y, lam=lam.numpy(), piv=piv, pattern=A.pattern.to("cpu"), dtype=A.dtype)
    lam_t, V_t = _EigsAdjoint.apply(A.values.cpu() if A.device.type != "cpu" else A.values, lam, V, info)
    lam_t, V_t = lam_t.to(device=A.device, dtype=cdtype), V_t.to(device=A.device, dtype=cdtype)
    clusters = find_clusters(lam.real, scale) if bool((lam.imag == 0).all()) else []
    result = EigenResult(
        eigenvalues=lam_t, eigenvectors=V_t, residual_norms=rn, tolerance=tolv, converged=converged,
        method=method, which=which, sigma=sigma, iterations=-1 if method == "arpack" else 0, clusters=clusters,
        next_eigenvalue=nxt, gap=None if nxt is None else float(abs(lam[-1] - nxt)) / scale,
        left_vectors=Y.to(device=A.device, dtype=cdtype), timings={"solve": seconds},
    )
    if not converged:
        raise ConvergenceError(result.message, result=result)
    return result if return_result else (lam_t, V_t)


def _arpack(A, Asp, k, which, sigma, tol, maxiter, v0):
    n = A.shape[0]
    kk = min(k + 1, n - 2)
    kwargs: dict = dict(k=kk, which=which, tol=tol * 0.1, maxiter=maxiter,
                        v0=None if v0 is None else v0.detach().cpu().double().numpy())
    if sigma is not None:
        # SciPy factorizes A - sigma I once (SuperLU) for its shift-invert mode.
        kwargs.update(sigma=float(sigma), which="LM")
    try:
        return spla.eigs(Asp, **kwargs)
    except spla.ArpackNoConvergence as exc:
        if len(exc.eigenvalues) < k:
            raise ConvergenceError(f"ARPACK converged {len(exc.eigenvalues)} of {k} eigenpairs; raise maxiter, "
                                   "loosen tol or use shift-invert (sigma)") from exc
        return exc.eigenvalues, exc.eigenvectors
