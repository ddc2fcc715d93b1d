"""Filtered vs unfiltered prolongator smoothing, same process: set-up, total, iterations, complexity, peak."""
import os, sys, importlib.util, json, functools
sys.path.insert(0, os.getcwd())
import torch
spec = importlib.util.spec_from_file_location("bag", "benchmarks/bench_amg_gpu.py")
bag = importlib.util.module_from_spec(spec); spec.loader.exec_module(bag)
from slactl.engine.preconditioners import SmoothedAggregation
dev = torch.device("cuda")
cases = [(c, int(s)) for c, s in (a.split(":") for a in sys.argv[1:])]
out = []
for filt in (False, True):
    bag.SmoothedAggregation = functools.partial(SmoothedAggregation, filter_weak=filt)
    for case, size in cases:
        bag.run_one(case, size, dev, peers=False)  # warm-up at its own size
        rows = [bag.run_one(case, size, dev, peers=False) for _ in range(3)]
        best = min(rows, key=lambda r: r["total_s"])
        line = dict(filter=filt, case=case, n=best["n"], setup_ms=[round(r["setup_s"] * 1e3, 1) for r in rows],
                    total_ms=[round(r["total_s"] * 1e3, 1) for r in rows], its=best["iterations"], relres=best["relres"],
                    cx=round(best["operator_complexity"], 3), levels=best["levels"], peak=round(best["peak_bytes_per_dof"]),
                    resolve_ms=round(best["resolve_s"] * 1e3, 2), resetup_ms=round(best["resetup_s"] * 1e3, 1))
        print(json.dumps(line), flush=True)
        out.append(line)
json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "filter_probe.json"), "w"), indent=1)
