"""Distributed sparse linear algebra over torch.distributed (Gloo on CPUs, NCCL on GPUs).

The only package of slactl that uses ``torch.distributed``. Row partitions
(:func:`partition`), partition stores (:mod:`slactl.io.partition_store`, one group per rank),
halo exchange (:class:`HaloPlan`), :class:`DistSparseMatrix` and its :class:`DistOperator` (the
engine's Krylov methods run on it unchanged), distributed smoothed-aggregation AMG
(:class:`DistSmoothedAggregation`, ``preconditioner="dist-amg"``: one hierarchy over all ranks, the
default for CG on a partition store), block-Jacobi preconditioning, differentiable
distributed solves (:func:`solve`) and launchers (:func:`launch` from Python, ``slactl run`` from
the shell).

Examples
--------
Start 4 CPU workers from Python and solve on each rank's share of a matrix::

    import torch, torch.distributed as dist, slactl.dist as sd
    from slactl.io.gallery import generate

    def work():
        A = sd.DistSparseMatrix.scatter(generate("poisson2d", 32).matrix, method="metis")
        x = sd.solve(A, torch.ones(A.n_owned, dtype=A.dtype), method="cg", preconditioner="ic0")
        return A.gather(x)            # the global x on rank 0, None elsewhere

    x = sd.launch(work, nprocs=4, backend="gloo")[0]

From the shell::

    slactl partition A.mtx --parts 4 --out A.parts.zarr
    slactl run --procs 4 -- solve A.parts.zarr --json

Where the time goes: ``SLACTL_DIST_PROFILE=1`` makes :func:`solve` time each rank's compute, exposed
halo exchange and all-reduce (:mod:`slactl.dist.profile`; synchronizes at every phase boundary) into
``result.info["dist_profile"]``, and ``slactl solve STORE --json`` report them per rank (a second,
profiled solve after the timed one). ``benchmarks/bench_dist.py`` measures strong and weak scaling.

Beyond linear solves: :func:`eigsh` (the engine's LOBPCG on a :class:`DistOperator`, extreme
eigenvalues, eigenvalue and eigenvector adjoints), :func:`nonlinear_solve` (the engine's
Newton-Krylov with an all-reduce inner product, implicit-function adjoint) and overlapping additive
Schwarz (:class:`AdditiveSchwarz`, built by ``BlockJacobi(A, local, overlap=k)``: restricted by
default, its exact transpose for the adjoint, symmetric with ``restricted=False``). ``slactl
eigsh STORE`` and ``slactl gradcheck STORE`` run distributed under ``slactl run`` like ``slactl
solve STORE`` (:mod:`slactl.dist.store_ops`).

Not implemented: distributed ``which="LM"`` and shift-invert eigenvalues
(:class:`~slactl.errors.NotImplementedFeatureError`). ``slactl run --gpus`` (torchrun + NCCL) ran on
2 and 4 H200 and reproduced the single-GPU solution; CG + dist-amg solved 2D Poisson with 400M
unknowns on 2 H200 in 5.2 s (benchmarks/RESULTS.md); the test suite covers the Gloo path.
"""

from slactl.dist.eigen import eigsh
from slactl.dist.halo import HaloExchange, HaloPlan, ghost_broadcast, ghost_reduce
from slactl.dist.launcher import WorkerError, init_process_group, launch, run_processes
from slactl.dist.matrix import DistOperator, DistSparseMatrix
from slactl.dist.multigrid import DistSmoothedAggregation
from slactl.dist.partition import METHODS as PARTITION_METHODS
from slactl.dist.partition import PartitionQuality, partition, partition_quality
from slactl.dist.nonlinear import nonlinear_solve
from slactl.dist.schwarz import AdditiveSchwarz
from slactl.dist.solve import BlockJacobi, solve

__all__ = [
    "AdditiveSchwarz",
    "BlockJacobi",
    "DistOperator",
    "DistSmoothedAggregation",
    "DistSparseMatrix",
    "HaloExchange",
    "HaloPlan",
    "PARTITION_METHODS",
    "PartitionQuality",
    "WorkerError",
    "eigsh",
    "ghost_broadcast",
    "ghost_reduce",
    "init_process_group",
    "launch",
    "nonlinear_solve",
    "partition",
    "partition_quality",
    "run_processes",
    "solve",
]
