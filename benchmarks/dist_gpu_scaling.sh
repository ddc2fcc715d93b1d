#!/usr/bin/env bash
# Strong and weak scaling of distributed PCG on one node (benchmarks/bench_dist.py), with NVLink
# multicast off. usage: bash benchmarks/dist_gpu_scaling.sh OUTDIR NGPU [extra bench_dist.py args]
# Default sizes: strong 4000 x 4000 (16M DOF) on 1..NGPU GPUs, weak 2000 x 2000 (4M DOF) per GPU;
# about 6 minutes for NGPU=4 (the --budget of 480 s skips runs that would start later).
set -u
out=${1:-.}; ngpu=${2:-2}; shift 2 2>/dev/null || shift $#
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p "$out"
nvidia-smi topo -m > "$out/topo.txt" 2>&1 || true
python3 "$(dirname "$0")/bench_dist.py" --gpus "$ngpu" --budget 480 --out "$out" "$@" 2> >(tee "$out/bench_dist.log" >&2)
