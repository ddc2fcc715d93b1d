"""``slactl eigsh STORE`` and ``slactl gradcheck STORE`` on every rank, under ``slactl run``.

Like :mod:`slactl.dist.store_solve`: each rank reads only its group of the partition store, the
work is collective, and rank 0 gets the summary (the other ranks get None).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from slactl.dist.launcher import device_for_backend, init_process_group
from slactl.dist.matrix import DistSparseMatrix
from slactl.errors import ConvergenceError, PartitionError
from slactl.io.partition_store import read_manifest


def open_store(path: str | os.PathLike, command: str, dtype: torch.dtype) -> tuple[DistSparseMatrix, dict]:
    """This rank's block of the store (joining the process group), and the store's manifest."""
    manifest = read_manifest(path)
    if "WORLD_SIZE" not in os.environ and not torch.distributed.is_initialized():
        raise PartitionError(f"{path} is a partition store of {manifest['parts']} parts: run it on that many ranks, "
                             f"slactl run --procs {manifest['parts']} -- {command} {path}")
    init_process_group()
    return DistSparseMatrix.from_store(path, dtype=dtype, device=device_for_backend()), manifest


def eigsh_store(path: str | os.PathLike, *, k: int = 6, which: str = "SA", preconditioner: str = "auto",
                tol: float | None = None, maxiter: int | None = None, dtype: torch.dtype = torch.float64) -> dict | None:
    """Eigenpairs of a partitioned symmetric matrix: the summary (``EigenResult.summary()`` plus
    sizes and warnings) on rank 0, None elsewhere. Not converging raises
    :class:`ConvergenceError` on every rank, with the summary as ``err.summary`` on rank 0."""
    from slactl.dist.eigen import eigsh
    from slactl.engine.eigen.result import DegenerateEigenvaluesWarning

    A, manifest = open_store(path, "eigsh", dtype)
    failed = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateEigenvaluesWarning)
        try:
            result = eigsh(A, k, which, preconditioner=None if preconditioner == "none" else preconditioner, tol=tol,
                           maxiter=maxiter, return_result=True)
        except ConvergenceError as exc:
            if exc.result is None:
                raise
            failed, result = exc, exc.result
    rank = torch.distributed.get_rank()
    summary = None
    if rank == 0:
        summary = {"matrix": str(path), "n": A.shape[0], "nnz": int(manifest["nnz"]), "k": k, "device": str(A.device),
                   "dtype": str(dtype).replace("torch.", ""), "parts": torch.distributed.get_world_size(),
                   "partition": manifest.get("method"), **result.summary(),
                   "warnings": [str(w.message) for w in caught if issubclass(w.category, DegenerateEigenvaluesWarning)]}
    if failed is not None:
        failed.summary = summary
        raise failed
    return summary


def gradcheck_store(path: str | os.PathLike, *, op: str = "all", directions: int = 3, eps: float | None = None,
                    seed: int = 0, rtol: float = 1e-6, k: int = 4, dtype: torch.dtype = torch.float64) -> Any:
    """:func:`slactl.dist.gradcheck.gradcheck` on a partition store: the report on rank 0, None elsewhere."""
    from slactl.dist.gradcheck import gradcheck

    A, _ = open_store(path, "gradcheck", dtype)
    report = gradcheck(op, A, directions=directions, eps=eps, seed=seed, rtol=rtol, k=k)
    return report if torch.distributed.get_rank() == 0 else None
