#!/usr/bin/env bash
# Runs of benchmarks/bench_dist_amg.py on one node, NVLink multicast off. Each argument is a run:
#   E:GRID   the engine's 1-GPU CG + sa-amg on a GRID x GRID Poisson matrix
#   K:GRID   the distributed CG + dist-amg on K GPUs (torchrun + NCCL)
#   K:GRID:PRECONDITIONER  another distributed preconditioner (block Jacobi local name)
# usage: bash benchmarks/dist_amg_scaling.sh OUTDIR RUN...   (results appended to OUTDIR/runs.jsonl)
set -u
out=$1; shift
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p "$out"
here=$(dirname "$0")
for run in "$@"; do
  IFS=: read -r k grid pre <<< "$run"
  echo "=== $run $(date +%T)" >&2
  if [ "$k" = E ]; then
    python3 "$here/bench_dist_amg.py" --engine --grid "$grid" --out "$out/runs.jsonl" 2>&1 | tail -3
  else
    torchrun --standalone --nproc-per-node "$k" "$here/bench_dist_amg.py" --grid "$grid" \
      --preconditioner "${pre:-dist-amg}" --out "$out/runs.jsonl" 2>&1 | grep -v "^W1\|^\*\*\*\|OMP_NUM" | tail -5
  fi
done
