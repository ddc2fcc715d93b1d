#!/usr/bin/env bash
# Distributed PCG over NCCL on one node: partition a 2D Poisson matrix, solve it on 1 GPU and on
# NGPU ranks, and compare. usage: bash benchmarks/dist_gpu_smoke.sh OUTDIR NGPU SIZE
set -u
out=${1:-.}; ngpu=${2:-2}; size=${3:-1000}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
s="python3 -m slactl.cli"
$s gallery poisson2d --size "$size" --out /tmp/p.zarr --force > /dev/null || exit 1
/usr/bin/time -f "partition wall %e s" $s partition /tmp/p.zarr --parts "$ngpu" --method contiguous --out /tmp/p.parts --force --json > "$out/partition.json" || exit 1
for pre in jacobi; do
  $s solve /tmp/p.zarr --device cuda --method cg --preconditioner "$pre" --rtol 1e-8 --json --out /tmp/x1.npy --force > "$out/single_$pre.json"; echo "single $pre: exit $?"
  $s run --gpus "$ngpu" -- solve /tmp/p.parts --method cg --preconditioner "$pre" --rtol 1e-8 --json --out /tmp/xd.npy --force > "$out/dist_$pre.json"; echo "dist $pre: exit $?"
  python3 - "$out" "$pre" <<'PY'
import json, sys, numpy as np
out, pre = sys.argv[1], sys.argv[2]
a, b = json.load(open(f"{out}/single_{pre}.json")), json.load(open(f"{out}/dist_{pre}.json"))
x1, xd = np.load("/tmp/x1.npy"), np.load("/tmp/xd.npy")
print(f"{pre}: single {a['iterations']} its {a['solve_seconds']:.3f} s relres {a['relres']:.2e} | "
      f"dist {b.get('iterations')} its {b.get('solve_seconds')} s relres {b.get('relres')} | "
      f"||x1 - xd|| / ||x1|| = {np.linalg.norm(x1 - xd) / np.linalg.norm(x1):.2e}")
PY
done
