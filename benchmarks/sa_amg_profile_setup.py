"""Profile one sa-amg set-up at 1M: device kernel time vs host wall, by op and kernel."""
import os, sys, importlib.util, time
sys.path.insert(0, os.getcwd())
import torch
from torch.profiler import profile, ProfilerActivity, record_function
spec = importlib.util.spec_from_file_location("bag", "benchmarks/bench_amg_gpu.py")
bag = importlib.util.module_from_spec(spec); spec.loader.exec_module(bag)
from slactl.engine.preconditioners import smoothed_aggregation as sa
dev = torch.device("cuda")
S, _ = bag.problem("poisson2d", 1000)
for _ in range(3):
    A = bag.fresh(S, dev); sa.SmoothedAggregation(A); torch.cuda.synchronize()
real = sa.galerkin_product
def g(*a, **k):
    with record_function("GALERKIN"):
        return real(*a, **k)
sa.galerkin_product = g
A = bag.fresh(S, dev); torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    t = time.perf_counter(); sa.SmoothedAggregation(A); torch.cuda.synchronize(); wall = time.perf_counter() - t
print("wall ms", round(wall * 1e3, 2))
ev = prof.events()
kern = [e for e in ev if e.device_type == torch.autograd.DeviceType.CUDA]
print("total device kernel ms", round(sum(e.device_time for e in kern) / 1e3, 2), "kernels", len(kern))
gal = [e for e in ev if e.name == "GALERKIN" and e.device_type == torch.autograd.DeviceType.CPU]
print("GALERKIN cpu wall ms", [round(e.cpu_time_total / 1e3, 2) for e in gal])
# kernels inside the galerkin windows (by time range on the CPU side of their launches is hard; use names)
from collections import Counter
c = Counter(); n = Counter()
for e in kern:
    c[e.name[:60]] += e.device_time; n[e.name[:60]] += 1
for k, v in c.most_common(25):
    print(round(v / 1e3, 3), n[k], k)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
try:
    import nvmath.bindings.cusparse as cs
    print("nvmath cusparse version", cs.get_version(cs.create()))
except Exception as exc:
    print("nvmath cusparse:", type(exc).__name__, exc)
