"""Distributed AMG-preconditioned CG at sizes no partition store on disk could hold: each rank
generates its own rows of the 2D Poisson matrix on its GPU, the global matrix never exists.

One run = one process group (launch with torchrun, or plain python for one rank):

    torchrun --standalone --nproc-per-node 2 benchmarks/bench_dist_amg.py --grid 16000 --out runs.jsonl
    python3 benchmarks/bench_dist_amg.py --grid 16000 --engine --out runs.jsonl   # the 1-GPU engine solve

Matrix: the 5-point Laplacian on an ``n x n`` grid (Dirichlet; 4 on the diagonal, -1 off it, like
``slactl gallery poisson2d``), b = ones, rtol 1e-8, float64, int32 indices. Rank ``r`` owns a strip
of consecutive grid lines (contiguous rows); its ghosts are the line above and the line below.
The preconditioner is :class:`slactl.dist.multigrid.DistSmoothedAggregation` (``--preconditioner
dist-amg``, the default) or block Jacobi with any local preconditioner name (``jacobi``,
``sa-amg``...); ``--engine`` instead solves on one GPU with the engine's CG +
:class:`~slactl.engine.preconditioners.SmoothedAggregation` (what ``slactl solve`` picks there).

Reported (rank 0 prints one JSON line, appended to ``--out``): generation, preconditioner set-up
and solve seconds (synchronized; the solve has no synchronization inside), iterations, the true
relative residual, a second profiled solve's split into compute / halo exchange / collectives
(``slactl.dist.profile``: mean over ranks, seconds), peak GPU memory per owned DOF (largest rank,
``torch.cuda.max_memory_allocated``) and two functionals of x (``||x||`` and ``w . x`` with
``w_i = cos(i / 1000)``) to compare runs of the same matrix on different rank counts.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import time

import torch
import torch.distributed as dist


def strip(n: int, rank: int, world: int, device: torch.device, dtype: torch.dtype):
    """This rank's rows of the n x n 5-point Laplacian: (local CSR pieces, owned ids, halo ids,
    plan arguments). Columns: owned (local order) first, then the line above, then the line below."""
    lines = [n // world + (r < n % world) for r in range(world)]
    first_line, L = sum(lines[:rank]), lines[rank]
    m = L * n
    up, down = rank > 0, rank < world - 1
    i = torch.arange(m, device=device, dtype=torch.int64)
    x, y = i % n, i // n
    h_up = n if up else 0
    cols = torch.stack([i - n, i - 1, i, i + 1, i + n, m + x, m + h_up + x], 1)
    keep = torch.stack([y > 0, x > 0, torch.ones_like(x, dtype=torch.bool), x < n - 1, y < L - 1,
                        (y == 0) & up, (y == L - 1) & down], 1)
    del x, y
    crow = torch.zeros(m + 1, dtype=torch.int64, device=device)
    torch.cumsum(keep.sum(1), 0, out=crow[1:])
    # row-major masked order: owned columns ascending, then the ghost ones (all larger): sorted rows
    centre = torch.zeros_like(keep)
    centre[:, 2] = True
    col = cols[keep].to(torch.int32)
    vals = torch.where(centre[keep], 4.0, -1.0).to(dtype)
    del cols, keep, centre
    owned = i + first_line * n
    halo = []
    if up:
        halo.append((first_line - 1) * n + torch.arange(n, device=device))
    if down:
        halo.append((first_line + L) * n + torch.arange(n, device=device))
    halo = torch.cat(halo) if halo else torch.zeros(0, dtype=torch.int64, device=device)
    send_ranks, send_index, recv_ranks = [], [], []
    if up:
        send_ranks.append(rank - 1)
        send_index.append(torch.arange(n))
        recv_ranks.append(rank - 1)
    if down:
        send_ranks.append(rank + 1)
        send_index.append((L - 1) * n + torch.arange(n))
        recv_ranks.append(rank + 1)
    offsets = [k * n for k in range(len(send_ranks) + 1)]
    send_index = torch.cat(send_index) if send_index else torch.zeros(0, dtype=torch.int64)
    return (crow.to(torch.int32), col, vals, (m, m + int(halo.numel()))), owned, halo, \
        (send_ranks, offsets, send_index, recv_ranks, offsets)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=int, required=True, help="grid points per side (n^2 DOF)")
    ap.add_argument("--preconditioner", default="dist-amg")
    ap.add_argument("--engine", action="store_true", help="one GPU: the engine's CG + sa-amg (no process group)")
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--maxiter", type=int, default=None)
    ap.add_argument("--rhs", choices=["ones", "A-ones"], default="ones",
                    help="b = ones, or b = A @ ones (issue 7's targets; engine mode only)")
    ap.add_argument("--no-profile", action="store_true", help="skip the second, profiled solve")
    ap.add_argument("--out", default=None, help="append the JSON line to this file (rank 0)")
    args = ap.parse_args()

    from slactl.dist.halo import HaloPlan
    from slactl.dist.matrix import DistOperator, DistSparseMatrix
    from slactl.engine.matrix import SparseMatrix

    cuda = torch.cuda.is_available()
    if args.engine:
        rank, world = 0, 1
    else:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if cuda:
            torch.cuda.set_device(local_rank)
        if "WORLD_SIZE" not in os.environ:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1")
        dist.init_process_group("nccl" if cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    dtype = torch.float64
    n = args.grid
    t0 = time.perf_counter()
    (crow, col, vals, shape), owned, halo, plan_args = strip(n, rank, world, device, dtype)
    local = SparseMatrix.from_csr(crow, col, vals, shape, check=False)
    del crow, col, vals
    _sync(device)
    build = time.perf_counter() - t0
    row = {"date": _dt.date.today().isoformat(), "n": n * n, "grid": n, "gpus": world, "device": torch.cuda.get_device_name() if cuda else "cpu",
           "rtol": args.rtol, "build_seconds": build}
    b = torch.ones(local.shape[0], dtype=dtype, device=device)
    w = torch.cos(owned.to(dtype) / 1000.0)
    maxiter = args.maxiter or 100000

    if args.engine:
        from slactl.engine.krylov import cg
        from slactl.engine.preconditioners import SmoothedAggregation

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        A = local
        if args.rhs == "A-ones":
            b = torch.mv(A.pattern.torch_csr(A.values), torch.ones_like(b))
        row["rhs"] = args.rhs
        # Warm-up on a small grid of the same kind (cuSPARSE / cuBLAS handles, the fused cycle's
        # Triton kernels compiled): none of it is in the timed set-up and solve below.
        (wc, wcol, wv, wshape), *_ = strip(min(n, 300), 0, 1, device, dtype)
        Aw = SparseMatrix.from_csr(wc, wcol, wv, wshape, check=False)
        cg(Aw, torch.ones(wshape[0], dtype=dtype, device=device), preconditioner=SmoothedAggregation(Aw),
           rtol=args.rtol, maxiter=maxiter)
        del Aw, wc, wcol, wv
        _sync(device)
        t = time.perf_counter()
        M = SmoothedAggregation(A)
        _sync(device)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        res = cg(A, b, preconditioner=M, rtol=args.rtol, maxiter=maxiter)
        _sync(device)
        solve = time.perf_counter() - t
        x = res.x
        r = b - torch.mv(A.pattern.torch_csr(A.values), x)
        row.update(mode="engine sa-amg (1 GPU)", preconditioner="sa-amg", setup_seconds=setup, solve_seconds=solve,
                   total_seconds=setup + solve, iterations=res.iterations,
                   relres=float(torch.linalg.vector_norm(r) / torch.linalg.vector_norm(b)),
                   levels=[lv.A.shape[0] for lv in M.levels], x_norm=float(torch.linalg.vector_norm(x)),
                   w_dot_x=float(torch.dot(w, x)),
                   peak_bytes_per_dof=(torch.cuda.max_memory_allocated() / (n * n)) if cuda else None)
        if getattr(M, "setup_profile", None):  # SLACTL_AMG_PROFILE=1
            row["setup_profile"] = M.setup_profile
        _emit(row, args.out)
        return

    import slactl.dist as sd
    from slactl.dist.solve import block_jacobi

    plan = HaloPlan(shape[0], int(halo.numel()), *plan_args[:3], plan_args[3], plan_args[4], device=device)
    A = DistSparseMatrix(local, owned, halo, plan, (n * n, n * n), rank=rank, parts=world, symmetry="symmetric")
    op = DistOperator(A)
    op.norm(b)
    op.matvec(b)  # warm-up: communicators, SpMV splits
    _sync(device)
    dist.barrier()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    M = block_jacobi(A, args.preconditioner)
    _sync(device)
    setup = time.perf_counter() - t
    dist.barrier()
    t = time.perf_counter()
    res = sd.solve(A, b, method="cg", preconditioner=M, rtol=args.rtol, maxiter=maxiter, return_result=True, profile=False)
    _sync(device)
    solve = time.perf_counter() - t
    x = res.x.detach()
    bn = float(op.norm(b))
    relres = float(op.norm(b - A.apply(x))) / bn
    stats = torch.stack([op.dot(x, x), op.dot(w, x)])
    peak = torch.tensor([torch.cuda.max_memory_allocated() / max(A.n_owned, 1) if cuda else 0.0], dtype=torch.float64, device=device)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    row.update(mode=f"dist {args.preconditioner} ({world} GPU{'s' if world > 1 else ''})", preconditioner=getattr(M, "name", args.preconditioner),
               setup_seconds=setup, solve_seconds=solve, total_seconds=setup + solve, iterations=res.iterations,
               relres=relres, x_norm=float(stats[0]) ** 0.5, w_dot_x=float(stats[1]),
               peak_bytes_per_dof=float(peak) if cuda else None)
    if getattr(M, "setup_profile", None):  # SLACTL_AMG_PROFILE=1 (rank 0's stages)
        row["setup_profile"] = M.setup_profile
    if hasattr(M, "levels"):
        row["levels"] = [lv.A.shape[0] for lv in M.levels]
        row["operator_complexity"] = M.operator_complexity
    if not args.no_profile:
        dist.barrier()
        prof = sd.solve(A, b, method="cg", preconditioner=M, rtol=args.rtol, maxiter=maxiter, return_result=True, profile=True)
        p = prof.info["dist_profile"]
        split = torch.tensor([p["compute_seconds"], p["halo_seconds"], p["allreduce_seconds"], p["total_seconds"]],
                             dtype=torch.float64, device=device)
        dist.all_reduce(split)
        split /= world
        row["profile"] = {"iterations": prof.iterations, "compute_seconds": float(split[0]), "halo_seconds": float(split[1]),
                          "collective_seconds": float(split[2]), "total_seconds": float(split[3]),
                          "halo_exchanges": p["halo_exchanges"], "allreduces": p["allreduces"]}
    if rank == 0:
        _emit(row, args.out)
    dist.barrier()
    dist.destroy_process_group()


def _emit(row: dict, out: str | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
