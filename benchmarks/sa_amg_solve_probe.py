"""CG + sa-amg at one size, timed 5 times through the engine (SmoothedAggregation + cg) and through
slactl.solve, each run on a fresh matrix between device synchronizations (issue 7, the 1M target).

    python3 benchmarks/sa_amg_solve_probe.py 1e6 [poisson2d|poisson3d|GALLERY]
"""
import os, sys, time, torch
sys.path.insert(0, os.getcwd())
import slactl
from slactl.benchmark.problems import build_case
from slactl.engine.krylov import cg
from slactl.engine.preconditioners import SmoothedAggregation
dof = int(float(sys.argv[1])); prob = sys.argv[2] if len(sys.argv) > 2 else "poisson2d"
case = build_case(prob, dof, "cuda", torch.float64)
b = case.b_device
def sync(): torch.cuda.synchronize()
for _ in range(2):
    A = case.fresh_matrix(); slactl.solve(A, b, method="cg", preconditioner="sa-amg", rtol=1e-8)
for label in ("direct", "solve", "direct", "solve"):
    rows = []
    for _ in range(5):
        A = case.fresh_matrix(); sync(); t0 = time.perf_counter()
        if label == "direct":
            M = SmoothedAggregation(A); sync(); t1 = time.perf_counter()
            r = cg(A, b, preconditioner=M, rtol=1e-8); sync(); t2 = time.perf_counter()
            rows.append((round((t1 - t0) * 1e3, 1), round((t2 - t1) * 1e3, 1), round((t2 - t0) * 1e3, 1), r.iterations))
        else:
            r = slactl.solve(A, b, method="cg", preconditioner="sa-amg", rtol=1e-8, return_result=True); sync(); t2 = time.perf_counter()
            rows.append((round(r.setup_seconds * 1e3, 1), round(r.solve_seconds * 1e3, 1), round((t2 - t0) * 1e3, 1), r.iterations))
    print(label, rows, "levels", [lv.A.shape[0] for lv in M.levels] if label == "direct" else "")
