"""Per-iteration cost of plain CG on 2-D Poisson: the fused CUDA path against the eager loop and
cupyx, and against the bandwidth floor (issue 7, point 2).

For each size (DOF; the grid is round(sqrt(size)) squared): the 5-point Poisson matrix built on the
device (the matrix of ``bench_amg_gpu.poisson(N, 2)``: 4 on the diagonal, -1 off it; int32 CSR),
``b = A @ ones``, CG to rtol 1e-8 (``--preconditioner jacobi`` for Jacobi) with

* ``fused``:  ``slactl.engine.krylov.fused_cg`` (Triton kernels, CUDA-graph blocks);
* ``eager``:  ``slactl.engine.krylov.cg(..., fused=False)`` (today's loop);
* ``cupyx``:  ``cupyx.scipy.sparse.linalg.cg`` (if cupy imports).

Each solver runs a short warm-up solve first (compiles / captures / loads libraries: reported in
the ``setup`` column, for the fused path the buffers and the CUDA-graph capture), then one timed
solve between CUDA events. Per iteration: the time, the achieved bandwidth of the floor's bytes, and
the ratio to the floor (``loop us/iter``: the fused loops alone, without the solve's fixed
costs: initial residual, true residual, set-up checks). The floor is the traffic of one CG iteration if every array were touched
once per use: the CSR matrix (values, column indices, row pointers) plus 9 vector passes (136 B per
DOF for float64 5-point int32 CSR), at the copy bandwidth measured in the same run (a large
device-to-device torch copy: read + write bytes over time).

    python3 benchmarks/bench_fused_cg.py --sizes 10000,1000000,16000000 --out OUT.json

``--sweep "spmv_block=64;evict=1"`` runs the fused solver alone under each tuning (see
``fused_cg``'s ``tuning``) and prints its per-iteration time and each kernel's time, bandwidth and
registers per thread; ``--profile`` breaks a 10K-DOF fused solve down (host timings, torch
profiler).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import time
from typing import Any, Callable

import torch

import slactl
from slactl.engine.krylov import cg
from slactl.engine.krylov import fused_cg as fused


def poisson2d_device(N: int, dtype: torch.dtype, device: torch.device) -> slactl.SparseMatrix:
    """The 5-point Laplacian on an N x N grid (rows in grid order, columns sorted), int32 CSR,
    assembled on the device (scipy's kron takes minutes and gigabytes at 16M DOF)."""
    n = N * N
    i = torch.arange(n, device=device, dtype=torch.int64)
    a, c = i // N, i % N
    cols = torch.stack([i - N, i - 1, i, i + 1, i + N], 1)
    mask = torch.stack([a > 0, c > 0, torch.ones_like(a, dtype=torch.bool), c < N - 1, a < N - 1], 1)
    vals = torch.tensor([-1.0, -1.0, 4.0, -1.0, -1.0], dtype=dtype, device=device).expand(n, 5)
    col = cols[mask]
    idx = torch.int32 if max(n, col.numel()) < 2**31 else torch.int64
    val = vals[mask].contiguous()
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(mask.sum(1), 0)
    del cols, mask, i, a, c
    return slactl.SparseMatrix.from_csr(crow.to(idx), col.to(idx), val, (n, n), check=False)


class Timer:
    """CUDA events on a GPU (host clock on the CPU); seconds."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            return out, start.elapsed_time(end) / 1e3
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t


def copy_bandwidth(device: torch.device, timer: Timer) -> float:
    """Bytes per second of a large device copy (read + write)."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info()[0]
        nbytes = int(min(2 << 30, free // 8))
    else:
        nbytes = 64 << 20
    src = torch.empty(nbytes // 8, dtype=torch.float64, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    reps = 20 if device.type == "cuda" else 3
    _, t = timer(lambda: [dst.copy_(src) for _ in range(reps)])
    del src, dst
    return 2 * nbytes * reps / t


def floor_bytes(n: int, nnz: int, val: int, idx: int) -> int:
    """Bytes of one CG iteration at the floor: the matrix once and 9 vector passes."""
    return nnz * (val + idx) + (n + 1) * idx + 9 * n * val


def fused_bytes(n: int, nnz: int, val: int, idx: int, jacobi: bool) -> int:
    """Bytes the fused kernels move per iteration if gathers hit in cache: SpMV reads z, p_old and
    reads/writes x (the previous iteration's update), writes p, Ap; the update reads/writes r and
    reads Ap (+ dinv read, z write: Jacobi)."""
    return nnz * (val + idx) + (n + 1) * idx + (11 if jacobi else 9) * n * val


def true_relres(A: slactl.SparseMatrix, x: torch.Tensor, b: torch.Tensor) -> float:
    r = b.double() - (A.double() @ x.double())
    return float(torch.linalg.vector_norm(r) / torch.linalg.vector_norm(b.double()))


def run_size(size: int, args: argparse.Namespace, dev: torch.device, timer: Timer, bw: float) -> list[dict]:
    N = int(round(math.sqrt(size)))
    dtype = getattr(torch, args.dtype)
    A = poisson2d_device(N, dtype, dev)
    n, nnz = A.shape[0], A.nnz
    b = A @ torch.ones(n, dtype=dtype, device=dev)
    val_b, idx_b = torch.finfo(dtype).bits // 8, A.pattern.crow.element_size()
    fb = floor_bytes(n, nnz, val_b, idx_b)
    jacobi = args.preconditioner == "jacobi"
    floor_s = fb / bw
    rows: list[dict] = []
    pre = args.preconditioner

    def row(solver: str, iters: int, total: float, setup: float | None, x: torch.Tensor | None, **extra: Any) -> dict:
        per = total / max(iters, 1)
        out = {"size": size, "n": n, "nnz": nnz, "solver": solver, "iterations": iters, "setup_s": setup,
               "total_s": total, "per_iteration_s": per, "achieved_GBps": fb / per / 1e9,
               "ratio_to_floor": per / floor_s, "floor_per_iteration_s": floor_s,
               "floor_B_per_dof": fb / n, "true_relative_residual": true_relres(A, x, b) if x is not None else None}
        out.update(extra)
        return out

    kw = dict(rtol=args.rtol, maxiter=args.maxiter, preconditioner=pre, check_every=args.check_every)
    warm = dict(kw, maxiter=args.warmup_iterations)
    interp = dev.type != "cuda" and fused.interpreting()  # a CPU smoke test under TRITON_INTERPRET=1
    if fused.unsupported_reason(A, b, pre, interpret=interp) is None and "fused" in args.solvers:
        fused.clear_cache()
        opts = dict(tuning=args.tuning, interpret=interp)
        wres, wall = timer(lambda: fused.fused_cg(A, b, **opts, **warm))
        res, t = timer(lambda: fused.fused_cg(A, b, **opts, **kw))
        rows.append(row("fused", res.iterations, t, wres.timings.get("setup"), res.x,
                        status=res.status.name, warmup_s=wall, iterations_run=res.info["iterations_run"],
                        plan_cached=res.info["plan_cached"], cuda_graph=res.info["cuda_graph"],
                        cuda_graph_error=res.info["cuda_graph_error"], inline_reductions=res.info["inline_reductions"],
                        pdl=res.info.get("pdl"), host_syncs=res.info["host_syncs"],
                        loop_per_iteration_s=res.timings["iterate"] / max(res.iterations, 1),
                        model_B_per_dof=fused_bytes(n, nnz, val_b, idx_b, jacobi) / n))
        del res, wres
    elif "fused" in args.solvers:
        why = fused.unsupported_reason(A, b, pre, interpret=interp)
        rows.append({"size": size, "n": n, "solver": "fused", "skipped": why})
    if "eager" in args.solvers and (args.eager_max_size is None or n <= args.eager_max_size):
        wres, wall = timer(lambda: cg(A, b, fused=False, **warm))
        res, t = timer(lambda: cg(A, b, fused=False, **kw))
        rows.append(row("eager", res.iterations, t, None, res.x, status=res.status.name, warmup_s=wall,
                        iterations_run=res.info["iterations_run"], host_syncs=res.info["host_syncs"]))
        del res, wres
    if "cupyx" in args.solvers and dev.type == "cuda":
        rows.append(run_cupyx(A, b, args, timer, row))
    return rows


def run_cupyx(A: slactl.SparseMatrix, b: torch.Tensor, args: argparse.Namespace, timer: Timer,
              row: Callable[..., dict]) -> dict:
    try:
        import cupy as cp
        import cupyx.scipy.sparse as csp
        import cupyx.scipy.sparse.linalg as csl
    except Exception as exc:  # noqa: BLE001
        return {"size": A.shape[0], "n": A.shape[0], "solver": "cupyx", "skipped": f"{type(exc).__name__}: {exc}"}
    try:
        Ac = csp.csr_matrix((cp.from_dlpack(A.values.detach()), cp.from_dlpack(A.pattern.col),
                             cp.from_dlpack(A.pattern.crow)), shape=A.shape)
        bc = cp.from_dlpack(b)
        M = None
        if args.preconditioner == "jacobi":
            inv = 1.0 / Ac.diagonal()
            M = csl.LinearOperator(Ac.shape, matvec=lambda r: inv * r, dtype=Ac.dtype)
        tol_name = "rtol" if "rtol" in inspect.signature(csl.cg).parameters else "tol"
        its = [0]

        def count(_: Any) -> None:
            its[0] += 1

        maxiter = args.maxiter or 10 * A.shape[0]
        timer(lambda: csl.cg(Ac, bc, M=M, maxiter=args.warmup_iterations, atol=0.0, **{tol_name: args.rtol}))
        (xc, info), t = timer(lambda: csl.cg(Ac, bc, M=M, maxiter=maxiter, callback=count, atol=0.0,
                                             **{tol_name: args.rtol}))
        x = torch.from_dlpack(xc)
        return row("cupyx", its[0], t, None, x, status="CONVERGED" if int(info) == 0 else f"info={int(info)}")
    except Exception as exc:  # noqa: BLE001
        return {"size": A.shape[0], "n": A.shape[0], "solver": "cupyx", "error": f"{type(exc).__name__}: {exc}"}


def parse_tuning(text: str) -> dict[str, Any]:
    tuning: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        tuning[key] = bool(int(value)) if key in ("inline", "evict", "split", "pdl") else int(value)
    return tuning


def kernel_times(plan: Any, reps: int, timer: Timer) -> dict[str, float]:
    """Seconds per launch of each kernel of one iteration of ``plan`` (eager launches, back to back;
    the values are whatever the last solve left: finite, and the timing does not depend on them)."""
    out: dict[str, float] = {}
    steps = {"spmv": lambda: plan._spmv(0, 0), "update": plan._update}
    if not plan.inline:
        steps["alpha_finish"] = plan._alpha_finish
        steps["beta_finish"] = lambda: plan._beta_finish(0)
    with torch.cuda.device(plan.device):
        for name, fn in steps.items():
            kernel = fn()
            if name in ("spmv", "update"):  # registers per thread: rows in flight per SM
                out[name + "_regs"] = getattr(kernel, "n_regs", None)
            _, t = timer(lambda: [fn() for _ in range(reps)])
            out[name] = t / reps
    return out


def run_sweep(size: int, args: argparse.Namespace, dev: torch.device, timer: Timer, bw: float) -> list[dict]:
    """Fused CG under each ``--sweep`` tuning: per-kernel times (and bandwidth of their bytes) and
    the per-iteration time of a solve capped at ``--sweep-iterations``."""
    N = int(round(math.sqrt(size)))
    dtype = getattr(torch, args.dtype)
    A = poisson2d_device(N, dtype, dev)
    n, nnz = A.shape[0], A.nnz
    b = A @ torch.ones(n, dtype=dtype, device=dev)
    val_b, idx_b = torch.finfo(dtype).bits // 8, A.pattern.crow.element_size()
    jac = args.preconditioner == "jacobi"
    spmv_bytes = nnz * (val_b + idx_b) + (n + 1) * idx_b + 6 * n * val_b
    update_bytes = (5 if jac else 3) * n * val_b
    fb = floor_bytes(n, nnz, val_b, idx_b)
    rows = []
    for text in args.sweep.split(";"):
        tuning = parse_tuning(text)
        check_every = tuning.pop("check_every", args.check_every)
        fused.clear_cache()
        kw = dict(rtol=args.rtol, maxiter=args.sweep_iterations, preconditioner=args.preconditioner,
                  check_every=check_every, tuning=tuning)
        try:
            fused.fused_cg(A, b, **dict(kw, maxiter=args.warmup_iterations))
            res, t = timer(lambda: fused.fused_cg(A, b, **kw))
            plan = next(reversed(fused._cache.values()))[0]
            kt = kernel_times(plan, 20 if n > 1 << 20 else 200, timer)
            regs = {k: kt.pop(k) for k in list(kt) if k.endswith("_regs")}
        except Exception as exc:  # noqa: BLE001
            rows.append({"n": n, "tuning": text, "error": f"{type(exc).__name__}: {exc}"})
            print(json.dumps(rows[-1]), flush=True)
            continue
        it = max(res.iterations, 1)
        row = {"n": n, "tuning": text, "iterations": res.iterations, "per_iteration_s": t / it,
               "loop_per_iteration_s": res.timings["iterate"] / it, "ratio_to_floor": t / it / (fb / bw),
               "inline": plan.inline, "programs": [plan.Ps, plan.Pu], "blocks": [plan.BS, plan.SS, plan.BU, plan.SU],
               "kernel_s": kt, "regs": regs, "tiles": [plan.KP, plan.KP2, plan.KP3],
               "spmv_GBps": spmv_bytes / kt["spmv"] / 1e9,
               "update_GBps": update_bytes / kt["update"] / 1e9}
        rows.append(row)
        print(f"sweep n={n} [{text}] {row['per_iteration_s'] * 1e6:.4g} us/iter (loop "
              f"{row['loop_per_iteration_s'] * 1e6:.4g}, x floor {row['ratio_to_floor']:.3g}) "
              f"programs {row['programs']} "
              + " ".join(f"{k}={v * 1e6:.4g}us" for k, v in kt.items())
              + f" spmv {row['spmv_GBps']:.4g} GB/s update {row['update_GBps']:.4g} GB/s regs {regs}", flush=True)
    return rows


def profile_small(size: int, args: argparse.Namespace, dev: torch.device, timer: Timer) -> None:
    """Where the time of a (cached-plan) fused solve goes outside the iterations: host profile."""
    N = int(round(math.sqrt(size)))
    dtype = getattr(torch, args.dtype)
    A = poisson2d_device(N, dtype, dev)
    b = A @ torch.ones(A.shape[0], dtype=dtype, device=dev)
    kw = dict(rtol=args.rtol, preconditioner=args.preconditioner, check_every=args.check_every, tuning=args.tuning)
    for _ in range(3):
        res, t = timer(lambda: fused.fused_cg(A, b, **kw))
    print(f"profile n={A.shape[0]}: total {t * 1e3:.4g} ms (events), solve {res.timings['solve'] * 1e3:.4g} ms "
          f"(host), iterations {res.iterations}; timings (ms) "
          + ", ".join(f"{k} {v * 1e3:.4g}" for k, v in res.timings.items()), flush=True)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fused.fused_cg(A, b, **kw)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=48))


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.4g" % v
    return str(v)


def print_table(rows: list[dict], bw: float) -> None:
    print(f"\ncopy bandwidth {bw / 1e9:.4g} GB/s (floor: the CSR matrix + 9 vector passes at this bandwidth)")
    head = ["n", "solver", "iters", "setup s", "total s", "us/iter", "GB/s", "x floor", "floor us", "loop us/iter",
            "rel res", "status"]
    table = [head]
    for r in rows:
        if "skipped" in r or "error" in r:
            table.append([fmt(r["n"]), r["solver"], "skipped: " + str(r.get("skipped") or r.get("error"))]
                         + [""] * (len(head) - 3))
            continue
        table.append([fmt(r["n"]), r["solver"], fmt(r["iterations"]), fmt(r["setup_s"]), fmt(r["total_s"]),
                      fmt(r["per_iteration_s"] * 1e6), fmt(r["achieved_GBps"]), fmt(r["ratio_to_floor"]),
                      fmt(r["floor_per_iteration_s"] * 1e6),
                      fmt(r["loop_per_iteration_s"] * 1e6 if r.get("loop_per_iteration_s") else None),
                      fmt(r["true_relative_residual"]), fmt(r.get("status"))])
    widths = [max(len(t[i]) for t in table if not t[2].startswith("skipped") or i < 2) for i in range(len(head))]
    for t in table:
        if t[2].startswith("skipped"):
            print("  ".join([t[0].rjust(widths[0]), t[1].rjust(widths[1]), t[2]]))
        else:
            print("  ".join(c.rjust(w) for c, w in zip(t, widths)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,1000000,16000000", help="DOF, comma separated")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--preconditioner", default="none", choices=["none", "jacobi"])
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--maxiter", type=int, default=None, help="cap the timed solves (default: 10 n)")
    ap.add_argument("--check-every", type=int, default=None, help="iterations per block (fused, eager)")
    ap.add_argument("--warmup-iterations", type=int, default=40)
    ap.add_argument("--solvers", default="fused,eager,cupyx")
    ap.add_argument("--eager-max-size", type=int, default=None, help="skip the eager loop above this n")
    ap.add_argument("--tuning", default="", help="fused kernel tuning, e.g. spmv_block=256,spmv_warps=4,inline=0")
    ap.add_argument("--sweep", default=None,
                    help="';'-separated fused tunings: per-kernel times and capped-solve time of each (no table)")
    ap.add_argument("--sweep-iterations", type=int, default=300, help="maxiter of the sweep's solves")
    ap.add_argument("--profile", action="store_true", help="host profile of a fused solve at sizes <= 1e5")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tuning = parse_tuning(args.tuning)
    args.tuning = tuning
    args.solvers = set(args.solvers.split(","))
    dev = torch.device(args.device)
    timer = Timer(dev)
    bw = copy_bandwidth(dev, timer)
    if args.sweep or args.profile:
        sweep: list[dict] = []
        for size in (int(s) for s in args.sizes.split(",")):
            if args.profile and size <= 100_000:
                profile_small(size, args, dev, timer)
            if args.sweep:
                sweep += run_sweep(size, args, dev, timer, bw)
            fused.clear_cache()
            torch.cuda.empty_cache()
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"device": torch.cuda.get_device_name(dev), "copy_bandwidth_Bps": bw, "sweep": sweep}, fh,
                          indent=1)
        return
    # Warm-up of everything (kernel compilation, cuSPARSE / cuBLAS handles) on a small problem.
    run_size(min(1024, min(int(s) for s in args.sizes.split(","))), args, dev, timer, bw)
    rows: list[dict] = []
    for size in (int(s) for s in args.sizes.split(",")):
        for r in run_size(size, args, dev, timer, bw):
            print(json.dumps(r), flush=True)
            rows.append(r)
        if dev.type == "cuda":
            fused.clear_cache()
            torch.cuda.empty_cache()
    print_table(rows, bw)
    if args.out:
        meta = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "torch": torch.__version__, "dtype": args.dtype, "preconditioner": args.preconditioner,
                "rtol": args.rtol, "copy_bandwidth_Bps": bw, "tuning": tuning}
        try:
            import triton

            meta["triton"] = triton.__version__
        except Exception:  # noqa: BLE001
            meta["triton"] = None
        with open(args.out, "w") as fh:
            json.dump({**meta, "rows": rows}, fh, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
