"""Solve from a partition store on every rank: what `slactl solve STORE` runs under `slactl run`.

Each rank reads only its own group, builds its share of ``b`` (``ones``, ``random`` with the same
global stream as a single-process solve, or a vector file), solves with an engine Krylov method
and block-Jacobi preconditioning, and recomputes the true residual with global norms. ``x`` is
gathered to rank 0 only when asked.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from slactl.dist.launcher import device_for_backend, init_process_group
from slactl.dist.matrix import DistSparseMatrix
from slactl.dist.solve import solve
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
        preconditioner = "ic0" if method in ("cg", "minres") else "ilu0"
    return method, preconditioner


def solve_store(path: str | os.PathLike, *, rhs: str = "ones", method: str = "auto", preconditioner: str = "auto",
                rtol: float = 1e-8, atol: float = 0.0, maxiter: int | None = None,
                dtype: torch.dtype = torch.float64, seed: int = 0, gather: bool = False) -> tuple[dict | None, Any]:
    """Solve the system of a partition store on the current process group.

    Returns ``(summary, x)`` on rank 0 (``x``: the global solution when ``gather``, else None)
    and ``(None, None)`` on the other ranks. A solve that misses its tolerance raises
    :class:`~slactl.errors.ConvergenceError` on every rank, with the summary as ``err.summary``.
    ``method="auto"``/``"direct"`` become CG (symmetric) or BiCGStab; ``preconditioner="auto"``
    block IC(0) or ILU(0).
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
    failed = None
    t1 = time.perf_counter()
    try:
        result = solve(A, b, method=method, preconditioner=preconditioner, rtol=rtol, atol=atol, maxiter=maxiter,
                       return_result=True)
    except ConvergenceError as exc:
        failed, result = exc, exc.result
    seconds = time.perf_counter() - t1
    x = result.x.detach()
    from slactl.dist.matrix import DistOperator

    op = DistOperator(A)
    bnorm = float(op.norm(b)) or 1.0
    relres = float(op.norm(b - A.apply(x))) / bnorm
    stats = torch.stack([x.min() if x.numel() else x.new_tensor(float("inf")), -(x.max() if x.numel() else x.new_tensor(float("-inf")))])
    torch.distributed.all_reduce(stats, op=torch.distributed.ReduceOp.MIN)
    summary = {"matrix": str(path), "n": A.shape[0], "nnz": int(manifest["nnz"]), "parts": world,
               "partition": manifest.get("method"), "device": str(A.device), "dtype": str(dtype).replace("torch.", ""),
               "method": method, "backend": f"dist-{torch.distributed.get_backend()}", "preconditioner": f"block-{preconditioner}",
               "status": result.status.name, "converged": result.converged, "iterations": result.iterations,
               "relres": relres, "load_seconds": load_seconds, "setup_seconds": 0.0, "solve_seconds": seconds,
               "x_min": float(stats[0]), "x_max": -float(stats[1]), "x_norm": float(op.norm(x)), "reasons": []}
    xg = A.gather(x, root=0) if gather and failed is None else None
    torch.distributed.barrier()
    if failed is not None:
        failed.summary = summary if rank == 0 else None
        raise failed
    return (summary, xg) if rank == 0 else (None, None)
