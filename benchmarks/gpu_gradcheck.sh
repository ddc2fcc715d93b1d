#!/usr/bin/env bash
# slactl gradcheck on every gallery matrix, on the GPU, float64 (issue 5's "Show").
# usage: bash benchmarks/gpu_gradcheck.sh [OUTDIR]
out=${1:-.}
status=0
for spec in "poisson2d 16" "poisson3d 6" "anisotropic2d 16" "highcontrast2d 16" "convdiff2d 16" "rgg_laplacian 300" "elasticity2d 8"; do
  set -- $spec
  python3 -m slactl.cli.main gradcheck --gallery "$1" --size "$2" --op all --device cuda --json > "$out/gradcheck_$1.json"
  rc=$?
  echo "$1 size $2: exit $rc"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
