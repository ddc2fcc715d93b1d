"""Set-up time and peak memory of sa-amg against the Galerkin chunk budget: cuSPARSE ALG2 with
_GALERKIN_PRODUCTS_PER_UNKNOWN products per unknown (or more, up to the memory under a ceiling of
_GALERKIN_CEILING_PER_UNKNOWN bytes per unknown; 0: off), and torch.sparse.mm (default algorithm).

    CONFIGS=default:0:0,alg2:4:0,alg2:4:200 python3 benchmarks/sa_amg_chunk_sweep.py poisson2d:1000 anisotropic2d:2000
"""
import os, sys, importlib.util, json
sys.path.insert(0, os.getcwd())
import torch
spec = importlib.util.spec_from_file_location("bag", "benchmarks/bench_amg_gpu.py")
bag = importlib.util.module_from_spec(spec); spec.loader.exec_module(bag)
from slactl.engine.preconditioners import smoothed_aggregation as sa
from slactl.engine.ops import cusparse_spgemm
real, real_for = cusparse_spgemm.available, cusparse_spgemm.available_for
calls = [0]
real_spgemm = cusparse_spgemm.spgemm
def counted_spgemm(a, b, *stats):
    calls[0] += 1
    return real_spgemm(a, b, *stats)
cusparse_spgemm.spgemm = counted_spgemm
dev = torch.device("cuda")
configs = [(c.split(":") + ["0"])[:3] for c in os.environ.get("CONFIGS", "default:0:0,alg2:4:0,alg2:4:200").split(",")]
cases = [(c, int(s)) for c, s in (a.split(":") for a in sys.argv[1:])]
for engine, per, ceiling in configs:
    per, ceiling = int(per), int(ceiling)
    cusparse_spgemm.available = real if engine == "alg2" else (lambda a, b: False)
    cusparse_spgemm.available_for = real_for if engine == "alg2" else (lambda *m: False)
    sa._GALERKIN_PRODUCTS_PER_UNKNOWN = per
    sa._GALERKIN_CEILING_PER_UNKNOWN = ceiling
    for case, size in cases:
        bag.run_one(case, size, dev, peers=False)
        calls[0] = 0
        rows = [bag.run_one(case, size, dev, peers=False) for _ in range(3)]
        print(json.dumps(dict(engine=engine, per_unknown=per, ceiling=ceiling, case=case, size=size, setup_ms=[round(r["setup_s"] * 1e3, 1) for r in rows],
                              total_ms=[round(r["total_s"] * 1e3, 1) for r in rows], its=rows[0]["iterations"], relres=rows[0]["relres"],
                              peak=[round(r["peak_bytes_per_dof"]) for r in rows], setup_peak=round(rows[0]["setup_peak_bytes_per_dof"]),
                              resetup_ms=round(rows[0]["resetup_s"] * 1e3, 1), alg2_calls_per_run=calls[0] / 3)), flush=True)
