"""Set-up time and peak memory of sa-amg against the Galerkin chunk budget: cuSPARSE ALG2 with
_GALERKIN_PRODUCTS_PER_UNKNOWN products per unknown, and torch.sparse.mm (default algorithm)."""
import os, sys, importlib.util, json
sys.path.insert(0, os.getcwd())
import torch
spec = importlib.util.spec_from_file_location("bag", "benchmarks/bench_amg_gpu.py")
bag = importlib.util.module_from_spec(spec); spec.loader.exec_module(bag)
from slactl.engine.preconditioners import smoothed_aggregation as sa
from slactl.engine.ops import cusparse_spgemm
real, real_for = cusparse_spgemm.available, cusparse_spgemm.available_for
dev = torch.device("cuda")
configs = [tuple((e, int(p)) for e, p in [c.split(":")])[0] for c in os.environ.get("CONFIGS", "default:0,alg2:4,alg2:6,alg2:8").split(",")]
cases = [(c, int(s)) for c, s in (a.split(":") for a in sys.argv[1:])]
for engine, per in configs:
    cusparse_spgemm.available = real if engine == "alg2" else (lambda a, b: False)
    cusparse_spgemm.available_for = real_for if engine == "alg2" else (lambda *m: False)
    sa._GALERKIN_PRODUCTS_PER_UNKNOWN = per
    for case, size in cases:
        bag.run_one(case, size, dev, peers=False)
        rows = [bag.run_one(case, size, dev, peers=False) for _ in range(3)]
        print(json.dumps(dict(engine=engine, per_unknown=per, case=case, size=size, setup_ms=[round(r["setup_s"] * 1e3, 1) for r in rows],
                              total_ms=[round(r["total_s"] * 1e3, 1) for r in rows], its=rows[0]["iterations"], relres=rows[0]["relres"],
                              peak=[round(r["peak_bytes_per_dof"]) for r in rows], setup_peak=round(rows[0]["setup_peak_bytes_per_dof"]),
                              resetup_ms=round(rows[0]["resetup_s"] * 1e3, 1))), flush=True)
