"""Distributed gradient check: the adjoint gradients of :func:`slactl.dist.solve`,
:func:`slactl.dist.eigsh` and :func:`slactl.dist.nonlinear_solve` against central differences.

The losses, the step rule and the report are those of :mod:`slactl.engine.gradcheck` (rows of
:class:`~slactl.engine.gradcheck.GradcheckRow`). What changes is that every quantity is global:
each loss is all-reduced (the same number on every rank), ``<G, d>`` sums over ranks, and the
random vectors and directions are functions of the GLOBAL row and column ids (:func:`hashed`),
so they do not depend on the partition and a matrix direction is symmetric by construction
(``d[i, j] = d[j, i]`` without communication: the two entries may live on different ranks).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
import torch.distributed as dist

from slactl.dist.matrix import DistOperator, DistSparseMatrix
from slactl.engine.gradcheck import STEP_FACTORS, GradcheckReport, GradcheckRow
from slactl.errors import UsageError

OPERATIONS = ("solve", "eigsh", "nonlinear")


def hashed(ids: torch.Tensor, salt: float) -> torch.Tensor:
    """Pseudo-random numbers in [-1, 1) from integer ids (float64): the same for the same global
    id on every rank and for every partition."""
    t = torch.sin(ids.to(torch.float64) * 12.9898 + salt * 78.233 + 0.5) * 43758.5453
    return 2 * (t - torch.floor(t)) - 1


def _entry_ids(A: DistSparseMatrix) -> torch.Tensor:
    """A symmetric id of every local entry: ``(i, j)`` and ``(j, i)`` share it."""
    row, col = A.global_coo()
    lo, hi = torch.minimum(row, col), torch.maximum(row, col)
    return lo * A.shape[0] + hi


def _sum(x: torch.Tensor) -> float:
    out = x.detach().double().sum().reshape(1)
    if dist.get_world_size() > 1:
        dist.all_reduce(out)
    return float(out)


def _directional(loss: Callable[[dict], float], point: dict, name: str, grad: torch.Tensor, scale: torch.Tensor,
                 directions: list[torch.Tensor], h: float, rtol: float) -> tuple[float, int]:
    """Worst relative error of ``<grad, d>`` against Richardson-extrapolated central differences
    (the engine's rule: further steps only when the first misses ``rtol``), and the evaluations."""
    base = point[name]
    typical = _sum((grad * scale) ** 2) ** 0.5
    worst, evaluations = 0.0, 0
    for d in directions:
        adj = _sum(grad * d)
        best = float("inf")
        for step in (h * f for f in STEP_FACTORS):
            def central(s: float) -> float:
                with torch.no_grad():
                    return (loss({**point, name: base + s * d}) - loss({**point, name: base - s * d})) / (2 * s)

            fd = (4.0 * central(step / 2) - central(step)) / 3.0
            evaluations += 4
            best = min(best, abs(adj - fd) / max(abs(adj), abs(fd), typical, torch.finfo(base.dtype).tiny))
            if best <= rtol:
                break
        worst = max(worst, best)
    return worst, evaluations


def _check(operation: str, A: DistSparseMatrix, loss_graph: Callable[[dict], torch.Tensor], point: dict,
           scales: dict, ids: dict, *, directions: int, h: float, rtol: float, seed: int, note: str = "",
           solves: tuple[int, int] = (1, 1), replicated: bool = False) -> list[GradcheckRow]:
    """``loss_graph`` returns this rank's term of the loss (summed over ranks), or with
    ``replicated`` the whole loss, the same on every rank."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in point.items()}
    L = loss_graph(leaves)
    grads = torch.autograd.grad(L, list(leaves.values()), allow_unused=True)

    def loss(p: dict) -> float:
        value = loss_graph(p)
        return float(value) if replicated else _sum(value)

    rows = []
    for i, (name, g) in enumerate(zip(leaves, grads)):
        g = torch.zeros_like(point[name]) if g is None else g
        dirs = [hashed(ids[name], seed + 7919 * i + 31 * j).to(point[name]) * scales[name] for j in range(directions)]
        err, evals = _directional(loss, {k: v.detach() for k, v in point.items()}, name, g, scales[name], dirs, h, rtol)
        rows.append(GradcheckRow(operation, name, err, solves[0], solves[1], evals, err <= rtol, note))
    return rows


def _value_scale(A: DistSparseMatrix) -> torch.Tensor:
    mag = A.values.detach().abs()
    mean = _sum(mag) / max(_sum(torch.ones_like(mag)), 1.0)
    return torch.where(mag > 0, mag, torch.full_like(mag, mean))


def _check_solve(A: DistSparseMatrix, symmetric: bool, **kw: Any) -> list[GradcheckRow]:
    from slactl.dist.solve import solve

    b, w = hashed(A.owned, 1.0).to(A.dtype), hashed(A.owned, 2.0).to(A.dtype)
    method, pre = ("cg", "ic0") if symmetric else ("gmres", "ilu0")
    rtol = 1e-13 if A.dtype == torch.float64 else 1e-6

    def loss(p: dict) -> torch.Tensor:
        return (w * solve(A.with_values(p["values"]), p["b"], method=method, preconditioner=pre, rtol=rtol)).sum()

    bscale = torch.full_like(b, _sum(b.abs()) / A.shape[0])
    return _check("solve", A, loss, {"b": b, "values": A.values.detach()}, {"b": bscale, "values": _value_scale(A)},
                  {"b": A.owned, "values": _entry_ids(A)}, **kw, note=f"{method}, block {pre}")


def _check_nonlinear(A: DistSparseMatrix, **kw: Any) -> list[GradcheckRow]:
    from slactl.dist.nonlinear import nonlinear_solve

    amax = torch.tensor([float(A.values.detach().abs().max()) if A.local.nnz else 0.0], dtype=torch.float64,
                        device=A.device)  # NCCL reduces device tensors only
    dist.all_reduce(amax, op=dist.ReduceOp.MAX)
    f, w = hashed(A.owned, 3.0).to(A.dtype) * float(amax), hashed(A.owned, 4.0).to(A.dtype)
    # absolute tolerance: the finite-difference solves start at the root (see slactl.engine.gradcheck)
    atol = (1e-14 if A.dtype == torch.float64 else 1e-5) * _sum(f * f) ** 0.5
    start = {"u0": torch.zeros_like(f)}
    counts = {}

    def residual(u, M, rhs):
        return M @ u + u**3 - rhs

    def loss(p: dict) -> torch.Tensor:
        res = nonlinear_solve(residual, start["u0"], A.with_values(p["values"]), p["f"], rtol=0.0, atol=atol,
                              maxiter=100, linear_rtol=1e-12, return_result=True)
        counts.setdefault("linear", res.linear_solves)
        start["u0"] = res.u.detach()
        return (w * res.u).sum()

    fscale = torch.full_like(f, _sum(f.abs()) / A.shape[0])
    return _check("nonlinear", A, loss, {"f": f, "values": A.values.detach()}, {"f": fscale, "values": _value_scale(A)},
                  {"f": A.owned, "values": _entry_ids(A)}, **kw, note="A u + u^3 = f, Newton-Krylov")


def _check_eigsh(A: DistSparseMatrix, k: int, **kw: Any) -> list[GradcheckRow]:
    from slactl.dist.eigen import eigsh

    seed = kw["seed"]
    tol = 1e-11 if A.dtype == torch.float64 else 1e-5
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="near-degenerate eigenvalues")
        probe, _ = eigsh(A.detach(), k + 1, "SA", tol=tol)
    scale = float(probe.abs().max()) or 1.0
    gap = (1e-8 if A.dtype == torch.float64 else 1e-4) * scale
    labels = [0]
    for i in range(1, k + 1):
        labels.append(labels[-1] + int(float(probe[i] - probe[i - 1]) > gap))
    while k > 1 and labels[k] == labels[k - 1]:
        k -= 1  # never cut a cluster of equal eigenvalues (its eigenvectors are not determined)
    # one weight per cluster: the loss is invariant to rotations inside a cluster, so it has a gradient
    a = hashed(torch.tensor(labels[:k]), seed + 0.25).to(device=A.device, dtype=A.dtype) * 0.5 + 1.0
    C = torch.stack([hashed(A.owned, 5.0), hashed(A.owned, 6.0)], 1).to(A.dtype)
    op = DistOperator(A)

    def loss(p: dict) -> torch.Tensor:
        # L = sum a_i lam_i + sum_i a_i ||C^T v_i||^2, the same on every rank (sign-invariant)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="near-degenerate eigenvalues")
            lam, V = eigsh(A.with_values(p["values"]), k, "SA", tol=tol)
        CtV = _ReplicatedSum.apply(C.T @ V, op)
        return (a * lam).sum() + (CtV.pow(2).sum(0) * a).sum()

    return _check("eigsh", A, loss, {"values": A.values.detach()}, {"values": _value_scale(A)},
                  {"values": _entry_ids(A)}, **kw, note=f"k={k}, which=SA, symmetric directions", solves=(0, 1),
                  replicated=True)


class _ReplicatedSum(torch.autograd.Function):
    """The sum over ranks, feeding a loss that every rank computes alike: each rank's incoming
    gradient is already the derivative of THE loss, so the backward passes it through."""

    @staticmethod
    def forward(ctx, x, op):  # type: ignore[override]
        return op.reduce(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g, None


def gradcheck(op: str, A: DistSparseMatrix, *, directions: int = 3, eps: float | None = None, seed: int = 0,
              rtol: float = 1e-6, k: int = 4, symmetric: bool | None = None) -> GradcheckReport:
    """:func:`slactl.gradcheck` for a :class:`DistSparseMatrix` (collective; the same report on every rank).

    ``op``: ``solve`` (CG with block IC(0) when ``symmetric``, else GMRES with block ILU(0)),
    ``eigsh`` (symmetric ``A`` only, skipped otherwise), ``nonlinear`` or ``all``; the other
    parameters are those of :func:`slactl.gradcheck`.
    """
    if not isinstance(A, DistSparseMatrix):
        raise UsageError(f"gradcheck needs a DistSparseMatrix, got {type(A).__name__}")
    ops = OPERATIONS if op == "all" else (op,)
    if any(o not in OPERATIONS for o in ops):
        raise UsageError(f"op must be one of {', '.join(OPERATIONS)} or all, got {op!r}")
    if int(directions) < 1:
        raise UsageError(f"directions must be at least 1, got {directions}")
    if symmetric is None:
        symmetric = A.symmetry in ("symmetric", "hermitian")
    h = float(eps) if eps is not None else float(torch.finfo(A.dtype).eps) ** (1.0 / 3.0)
    A = A.detach()
    kw = dict(directions=int(directions), h=h, rtol=float(rtol), seed=int(seed))
    rows: list[GradcheckRow] = []
    for o in ops:
        if o == "solve":
            rows += _check_solve(A, symmetric, **kw)
        elif o == "eigsh" and not symmetric:
            rows.append(GradcheckRow("eigsh", "values", None, 0, 0, 0, True, "skipped: eigsh needs a symmetric matrix"))
        elif o == "eigsh":
            rows += _check_eigsh(A, int(k), **kw)
        else:
            rows += _check_nonlinear(A, **kw)
    return GradcheckReport(rows, float(rtol), h, int(directions), str(A.dtype).replace("torch.", ""), str(A.device),
                           A.shape, int(_sum(torch.tensor([float(A.local.nnz)], device=A.device))), info={"parts": dist.get_world_size()})
