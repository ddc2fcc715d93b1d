"""Where the sa-amg set-up goes, per level and stage, with the host synchronizations each stage
makes (torch.cuda.set_sync_debug_mode), and the first solve / re-solve with and without CUDA graphs.

    python3 benchmarks/sa_amg_stage_probe.py GRID DIM   (2D Poisson 1M: 1000 2; 3D 16M: 256 3)
    python3 benchmarks/sa_amg_stage_probe.py PROBLEM SIZE   (a gallery problem: anisotropic2d 2000)
"""
import importlib.util, json, os, sys, time, warnings
import torch
sys.path.insert(0, os.getcwd())
import slactl
from slactl.engine.preconditioners import smoothed_aggregation as sa
from slactl.engine.krylov import cg

scalar_problem = sys.argv[1].isdigit()
grid, dim = (int(sys.argv[1]), int(sys.argv[2])) if scalar_problem else (0, 0)
spec = importlib.util.spec_from_file_location("bag", "benchmarks/bench_amg_gpu.py")
bag = importlib.util.module_from_spec(spec); spec.loader.exec_module(bag)
dev = torch.device("cuda")
S = bag.poisson(grid, dim) if scalar_problem else bag.problem(sys.argv[1], int(sys.argv[2]))[0]
A = bag.fresh(S, dev)
b = A @ torch.ones(A.shape[0], dtype=A.dtype, device=dev)
for _ in range(2):
    M = sa.SmoothedAggregation(bag.fresh(S, dev)); cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500)
torch.cuda.synchronize()
# unprofiled timing
ts = []
for _ in range(3):
    A = bag.fresh(S, dev); torch.cuda.synchronize(); t = time.perf_counter()
    M = sa.SmoothedAggregation(A); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
    t = time.perf_counter(); res = cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
for graph in (True, False):
    tt = []
    for _ in range(3):
        A = bag.fresh(S, dev); torch.cuda.synchronize(); t = time.perf_counter()
        M = sa.SmoothedAggregation(A, cuda_graph=graph); torch.cuda.synchronize(); t1 = time.perf_counter()
        res = cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500); torch.cuda.synchronize(); t2 = time.perf_counter()
        res = cg(A, b, preconditioner=M, rtol=1e-8, maxiter=500); torch.cuda.synchronize(); t3 = time.perf_counter()
        tt.append((round((t1 - t) * 1e3, 2), round((t2 - t1) * 1e3, 2), round((t3 - t2) * 1e3, 2)))
    print("cuda_graph", graph, "setup/first solve/re-solve ms", tt)
print("setup/solve", [round(x * 1e3, 2) for x in ts], "levels", [(lv.A.shape[0], lv.A.nnz) for lv in M.levels], "its", res.iterations)
records = []
from collections import Counter
sites = Counter()
def wrap(mod, name):
    f = getattr(mod, name)
    def g(*a, **k):
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t = time.perf_counter(); out = f(*a, **k); torch.cuda.synchronize(); dt = time.perf_counter() - t
        info = {"stage": name, "ms": round(dt * 1e3, 3), "syncs": len(w)}
        for x in w: sites[(os.path.basename(x.filename), x.lineno)] += 1
        shapes = [tuple(x.shape) + (x.nnz,) for x in a if hasattr(x, "nnz")]
        if shapes: info["in"] = shapes
        if hasattr(out, "nnz"): info["out"] = (tuple(out.shape), out.nnz)
        records.append(info)
        return out
    setattr(mod, name, g)
for name in ["_spectral_radius", "filtered_matrix", "strength_graph", "aggregate", "tentative_prolongator", "_smooth_prolongator", "_transpose", "galerkin_product", "_diagonal_facts", "symmetry", "_unit_diagonal_where_empty"]:
    wrap(sa, name)
torch.cuda.set_sync_debug_mode(1)
A = bag.fresh(S, dev); torch.cuda.synchronize()
with warnings.catch_warnings(record=True) as wall:
    warnings.simplefilter("always")
    t = time.perf_counter(); M = sa.SmoothedAggregation(A); torch.cuda.synchronize(); tot = time.perf_counter() - t
torch.cuda.set_sync_debug_mode(0)
for r in records: print(json.dumps(r))
print("total instrumented ms", round(tot * 1e3, 2), "sum stages", round(sum(r["ms"] for r in records), 2))
from collections import Counter
c = Counter()
for w in wall:
    c[str(w.message)[:80]] += 1
print("syncs outside wrappers:", sum(c.values()))
print("top sync sites", sites.most_common(25))
by_stage = Counter()
for r in records:
    by_stage[r["stage"]] += r["ms"]
print("ms per stage, summed over levels:", {k: round(v, 2) for k, v in by_stage.most_common()})
