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
  mkdir -p "$out/logs"
  log="$out/logs/${run//:/_}.log"  # the whole output of each run is kept
  echo "=== $run $(date +%T)" >&2
  if [ "$k" = E ]; then
    python3 "$here/bench_dist_amg.py" --engine --grid "$grid" --out "$out/runs.jsonl" >"$log" 2>&1
  else
    torchrun --standalone --nproc-per-node "$k" "$here/bench_dist_amg.py" --grid "$grid" \
      --preconditioner "${pre:-dist-amg}" --out "$out/runs.jsonl" >"$log" 2>&1
  fi
  rc=$?
  grep '^{' "$log" | tail -1
  # on failure, the first error lines (a rank's own exception, not the launcher's summary)
  [ $rc -eq 0 ] || { echo "run $run failed (exit $rc):"; grep -m5 -E "Error|error:|Traceback|out of memory" "$log"; }
done
# one archive of the logs (a device call brings back only a few files)
tar -czf "$out/logs.tgz" -C "$out" logs && rm -r "$out/logs"
