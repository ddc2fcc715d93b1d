"""Where the time of a CG + sa-amg solve goes on the GPU (torch.profiler), issue 7.

For 2D Poisson at --grid (grid x grid DOF): the set-up with ``SLACTL_AMG_PROFILE``-style stage
laps, then a profiled set-up and a profiled re-solve (hierarchy kept); prints the top CUDA kernels
and CPU ops by time, and the wall times.

    python3 benchmarks/profile_sa_amg.py --grid 1000 --out OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile

import slactl
from slactl.engine.krylov import cg
from slactl.engine.preconditioners import SmoothedAggregation


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=1000)
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("bag", os.path.join(os.path.dirname(__file__), "bench_amg_gpu.py"))
    bag = importlib.util.module_from_spec(spec); spec.loader.exec_module(bag)
    dev = torch.device("cuda")
    S = bag.poisson(args.grid, 2)
    A = bag.fresh(S, dev)
    b = A @ torch.ones(A.shape[0], dtype=A.dtype, device=dev)
    for _ in range(2):  # warm-up (new patterns each time would re-aggregate: fine, we time below)
        A = bag.fresh(S, dev)
        M = SmoothedAggregation(A)
        cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500)
    torch.cuda.synchronize()
    report = {}
    A = bag.fresh(S, dev)
    torch.cuda.synchronize(); t = time.perf_counter()
    M = SmoothedAggregation(A)
    torch.cuda.synchronize(); report["setup_s"] = time.perf_counter() - t
    t = time.perf_counter()
    res = cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500)
    torch.cuda.synchronize(); report["solve_s"] = time.perf_counter() - t
    t = time.perf_counter()
    res = cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500)
    torch.cuda.synchronize(); report["resolve_s"] = time.perf_counter() - t
    report["iterations"] = res.iterations
    report["levels"] = [lv.A.shape[0] for lv in M.levels]
    report["timings"] = {k: v for k, v in res.timings.items() if isinstance(v, float)}
    report["info"] = {k: str(v) for k, v in res.info.items()}
    # a single V-cycle replay
    r = torch.rand_like(b)
    for _ in range(3):
        M.apply(r)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(20):
        M.apply(r)
    torch.cuda.synchronize(); report["vcycle_s"] = (time.perf_counter() - t) / 20
    # The same with the torch cycle (fused_cycle=False), hierarchy rebuilt on the same matrix.
    Mt = SmoothedAggregation(A, fused_cycle=False)
    rt = cg(A, b, preconditioner=Mt, rtol=1e-8, maxiter=500)
    torch.cuda.synchronize(); t = time.perf_counter()
    rt = cg(A, b, preconditioner=Mt, rtol=1e-8, maxiter=500)
    torch.cuda.synchronize(); report["torch_cycle_resolve_s"] = time.perf_counter() - t
    report["torch_cycle_iterations"] = rt.iterations
    for _ in range(3):
        Mt.apply(r)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(20):
        Mt.apply(r)
    torch.cuda.synchronize(); report["torch_cycle_vcycle_s"] = (time.perf_counter() - t) / 20
    report["fused_vs_torch_cycle_relative_difference"] = float((M.apply(r) - Mt.apply(r)).norm() / Mt.apply(r).norm())
    report["fused_cycle_used"] = type(getattr(M, "_fused_plan", None)).__name__
    del Mt
    from slactl.engine.krylov.operator import MatrixOperator
    mo = MatrixOperator(A)
    for _ in range(3):
        mo.matvec(r)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(50):
        mo.matvec(r)
    torch.cuda.synchronize(); report["spmv_s"] = (time.perf_counter() - t) / 50
    os.environ["SLACTL_AMG_PROFILE"] = "1"
    A = bag.fresh(S, dev)
    M = SmoothedAggregation(A)
    report["setup_laps"] = M.setup_profile
    os.environ.pop("SLACTL_AMG_PROFILE")
    print(json.dumps(report, indent=1), flush=True)
    with open(os.path.join(args.out, f"profile_{args.grid}.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    for label, fn in (("setup", lambda: SmoothedAggregation(bag.fresh(S, dev))),
                      ("resolve", lambda: cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500))):
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        with open(os.path.join(args.out, f"profile_{args.grid}_{label}.txt"), "w") as fh:
            fh.write(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))
            fh.write("\n\n")
            fh.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))


if __name__ == "__main__":
    main()
