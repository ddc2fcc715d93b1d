"""Solve from a partition store on every rank: what `slactl solve STORE` runs under `slactl run`.

Each rank reads only its own group, builds its share of ``b`` (``ones``, ``random`` with the same
global stream as a single-process solve, or a vector file), solves with an engine Krylov method
and a distributed preconditioner (AMG with global coarse levels, or block Jacobi), and
recomputes the true residual with global norms. ``x`` is gathered to rank 0 only when asked.

Timing: the communicators and SpMV caches are warmed up first (``warmup_seconds``), the
preconditioner is built (``setup_seconds``), then the solve is timed
(``solve_seconds``, ``per_iteration_seconds``; no synchronization inside). With
``SLACTL_DIST_PROFILE=1`` the same solve runs once more with phase timers (``profile``: per rank,
seconds of compute, halo and all-reduce; see :mod:`slactl.dist.profile`). On GPUs the summary
carries every rank's peak memory (``peak_memory_bytes``, ``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from slactl.dist import profile as _profile
from slactl.dist.launcher import device_for_backend, init_process_group
from slactl.dist.matrix import DistOperator, DistSparseMatrix
from slactl.dist.solve import block_jacobi, solve
from slactl.errors import ConvergenceError, PartitionError, ShapeError
from slactl.io.partition_store import read_manifest


def _rhs(spec: str, A: DistSparseMatrix, seed: int) -> torch.Tensor:
    n = A.shape[0]
    if spec == "ones":
        return torch.ones(A.n_owned, dtype=A.dtype, device=A.device)
    if spec == "random":
        # the global stream, so that the system is the one a single-process solve sees
        g = torch.Generator(device="cpu").manual_seed(seed)
        return A.distribute(torch.randn(n, dtype=A.dtype, generator=g)).to(A.device)
    from slactl.io.vectors import read_vector

    data = read_vector(spec)
    if data.shape[0] != n:
        raise ShapeError(f"{spec}: the right-hand side has {data.shape[0]} rows but the matrix has {n}")
    return A.distribute(torch.from_numpy(np.ascontiguousarray(data)).to(dtype=A.dtype)).to(A.device)


def _choose(method: str, preconditioner: str, symmetry: str) -> tuple[str, str]:
    symmetric = symmetry in ("symmetric", "hermitian")
    if method in ("auto", "direct"):
        method = "cg" if symmetric else "bicgstab"
    if preconditioner == "auto":
        # CG: the distributed smoothed-aggregation AMG (global coarse levels): on 2D Poisson
        # (250,000 rows) 14 iterations on 1, 2 or 4 ranks, where block Jacobi with a local AMG
        # needs 101 (2 ranks) and 161 (4 ranks).
        preconditioner = {"cg": "dist-amg", "minres": "ic0"}.get(method, "ilu0")
    return method, preconditioner


def solve_store(path: str | os.PathLike, *, rhs: str = "ones", method: str = "auto", preconditioner: str = "auto",
                rtol: float = 1e-8, atol: float = 0.0, maxiter: int | None = None,
                dtype: torch.dtype = torch.float64, seed: int = 0, gather: bool = False) -> tuple[dict | None, Any]:
    """Solve the system of a partition store on the current process group.

    Returns ``(summary, x)`` on rank 0 (``x``: the global solution when ``gather``, else None)
    and ``(None, None)`` on the other ranks. A solve that misses its tolerance raises
    :class:`~slactl.errors.ConvergenceError` on every rank, with the summary as ``err.summary``.
    ``method="auto"``/``"direct"`` become CG (symmetric) or BiCGStab; ``preconditioner="auto"``
    the distributed AMG (``dist-amg``, CG), block IC(0) (MINRES) or block ILU(0).
    """
    manifest = read_manifest(path)
    if "WORLD_SIZE" not in os.environ and not torch.distributed.is_initialized():
        raise PartitionError(f"{path} is a partition store of {manifest['parts']} parts: run it on that many ranks, "
                             f"slactl run --procs {manifest['parts']} -- solve {path}")
    rank, world = init_process_group()
    t0 = time.perf_counter()
    A = DistSparseMatrix.from_store(path, dtype=dtype, device=device_for_backend())
    b = _rhs(rhs, A, seed)
    load_seconds = time.perf_counter() - t0
    method, preconditioner = _choose(method, preconditioner, manifest.get("symmetry", "general"))
    op = DistOperator(A)
    # Warm-up, not timed: the first collective and the first halo exchange create the
    # communicators (NCCL: hundreds of ms), the first SpMV builds the cached CSR splits (it
    # shares them with the solve's operator) and the sparse library's handles.
    t0 = time.perf_counter()
    op.norm(b)
    op.matvec(b)
    _sync(A.device)
    torch.distributed.barrier()
    warmup_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    M = block_jacobi(A, preconditioner)  # built once, outside the timed solve
    _sync(A.device)
    setup_seconds = time.perf_counter() - t0
    kwargs = dict(method=method, preconditioner=M, rtol=rtol, atol=atol, maxiter=maxiter, return_result=True)
    failed = None
    t1 = time.perf_counter()
    try:
        result = solve(A, b, profile=False, **kwargs)
    except ConvergenceError as exc:
        failed, result = exc, exc.result
    _sync(A.device)
    seconds = time.perf_counter() - t1
    x = result.x.detach()
    bnorm = float(op.norm(b)) or 1.0
    relres = float(op.norm(b - A.apply(x))) / bnorm
    stats = torch.stack([x.min() if x.numel() else x.new_tensor(float("inf")), -(x.max() if x.numel() else x.new_tensor(float("-inf")))])
    torch.distributed.all_reduce(stats, op=torch.distributed.ReduceOp.MIN)
    summary = {"matrix": str(path), "n": A.shape[0], "nnz": int(manifest["nnz"]), "parts": world,
               "partition": manifest.get("method"), "device": str(A.device), "dtype": str(dtype).replace("torch.", ""),
               "method": method, "backend": f"dist-{torch.distributed.get_backend()}", "preconditioner": getattr(M, "name", preconditioner),
               "status": result.status.name, "converged": result.converged, "iterations": result.iterations,
               "relres": relres, "load_seconds": load_seconds, "warmup_seconds": warmup_seconds, "setup_seconds": setup_seconds,
               "solve_seconds": seconds, "per_iteration_seconds": seconds / max(result.iterations, 1),
               "x_min": float(stats[0]), "x_max": -float(stats[1]), "x_norm": float(op.norm(x)), "reasons": []}
    if failed is None and _profile.enabled():
        summary["profile"] = _profiled_solve(A, b, kwargs, world)
    peak = torch.cuda.max_memory_allocated(A.device) if A.device.type == "cuda" else float("nan")
    rows = _gather([float(A.n_owned), float(A.n_halo), float(peak)], A.device, world)
    summary["rank_rows"] = [int(r[0]) for r in rows]
    summary["rank_halo"] = [int(r[1]) for r in rows]
    if A.device.type == "cuda":
        summary["peak_memory_bytes"] = [int(r[2]) for r in rows]
    xg = A.gather(x, root=0) if gather and failed is None else None
    torch.distributed.barrier()
    if failed is not None:
        failed.summary = summary if rank == 0 else None
        raise failed
    return (summary, xg) if rank == 0 else (None, None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gather(values: list[float], device: torch.device, world: int) -> list[list[float]]:
    """Every rank's ``values`` (a few floats), by rank, on every rank."""
    mine = torch.tensor(values, dtype=torch.float64, device=device)
    out = [torch.empty_like(mine) for _ in range(world)]
    torch.distributed.all_gather(out, mine)
    return [o.tolist() for o in out]


def _profiled_solve(A: DistSparseMatrix, b: torch.Tensor, kwargs: dict, world: int) -> dict:
    """The same solve once more with the phase timers on (``SLACTL_DIST_PROFILE=1``); per rank:
    seconds of compute, halo and all-reduce (they add up to the profiled solve's time, which the
    synchronizations at every phase boundary make longer than the timed solve's)."""
    _sync(A.device)
    torch.distributed.barrier()
    t = time.perf_counter()
    result = solve(A, b, profile=True, **kwargs)
    seconds = time.perf_counter() - t
    p = result.info["dist_profile"]
    rows = _gather([p["compute_seconds"], p["halo_seconds"], p["allreduce_seconds"], p["total_seconds"]], A.device, world)
    out = {"solve_seconds": seconds, "iterations": result.iterations,
           "compute_seconds": [r[0] for r in rows], "halo_seconds": [r[1] for r in rows],
           "allreduce_seconds": [r[2] for r in rows], "total_seconds": [r[3] for r in rows],
           "matvecs": p["matvecs"], "halo_exchanges": p["halo_exchanges"], "allreduces": p["allreduces"]}
    return out
