"""cuDSS default vs hybrid memory mode (factors in host memory, streamed through a device limit), issue 7.

For 2D Poisson (grid x grid, float64, b = A @ ones): the default mode, then the hybrid mode with a
device limit of a fraction of the default mode's estimated peak, or 1.05x cuDSS's hybrid minimum where that is larger
(``SLACTL_CUDSS_DEVICE_MEMORY_LIMIT``).
Per mode: analysis, factorization and solve seconds, the true relative residual, cuDSS's memory
estimates, and the device memory in use after the factorization (``cudaMemGetInfo``: cuDSS's own
allocations included, whatever allocator it uses) above the state before the analysis.

    python3 benchmarks/bench_cudss_hybrid.py --grids 1000,2000 --fraction 0.25 --out OUT.json

``--dim 3 --auto-only``: 3D Poisson (grid^3), the default call only, in which slactl itself picks
hybrid mode where cuDSS's estimated device peak exceeds 90% of the free device memory: the run for
factors larger than the GPU (it needs host memory above the factor size: on a machine with less host
memory than GPU memory, such as the lent H200, it cannot be done).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import scipy.sparse as sp
import torch

import slactl


def poisson(n: int, dim: int = 2) -> sp.csr_matrix:
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    I = sp.identity(n, format="csr")
    if dim == 2:
        return (sp.kron(T, I) + sp.kron(I, T)).tocsr()
    I2 = sp.identity(n * n, format="csr")
    return (sp.kron(T, I2) + sp.kron(I, sp.kron(T, I)) + sp.kron(I2, T)).tocsr()


def used() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


def run(S: sp.csr_matrix, limit: int | None) -> dict:
    if limit is None:
        os.environ.pop("SLACTL_CUDSS_DEVICE_MEMORY_LIMIT", None)
    else:
        os.environ["SLACTL_CUDSS_DEVICE_MEMORY_LIMIT"] = str(limit)
    torch.cuda.empty_cache()
    A = slactl.SparseMatrix.from_scipy(S, device="cuda")
    b = A @ torch.ones(S.shape[0], dtype=torch.float64, device="cuda")
    torch.cuda.synchronize()
    base = used()
    t0 = time.perf_counter()
    F = slactl.factorize(A, backend="cudss")
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    held = used() - base
    x = F.solve(b)
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    xh = x.cpu().numpy()
    bh = S @ np.ones(S.shape[0])
    P = F.prepared
    out = {"n": S.shape[0], "mode": "hybrid" if P.hybrid_memory else "default", "device_limit_bytes": limit,
           "analysis_s": P.analysis_seconds, "factorization_s": P.factorization_seconds, "setup_s": t1 - t0,
           "solve_s": t2 - t1, "relres": float(np.linalg.norm(bh - S @ xh) / np.linalg.norm(bh)),
           "device_bytes_held_after_factorization": held, "estimates": P.memory_estimates}
    del F, A, b, x
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grids", default="1000")
    ap.add_argument("--fraction", type=float, default=0.25, help="hybrid device limit / default-mode estimated peak")
    ap.add_argument("--dim", type=int, choices=(2, 3), default=2, help="2D or 3D Poisson")
    ap.add_argument("--auto-only", action="store_true", help="only the default call (slactl picks the mode)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    run(poisson(100), None)  # warm-up: library loads, handles
    rows = []
    for g in (int(v) for v in args.grids.split(",")):
        S = poisson(g, args.dim)
        default = run(S, None)
        default["device_total_bytes"] = torch.cuda.mem_get_info()[1]
        print(json.dumps(default), flush=True)
        rows.append(default)
        if args.auto_only:
            continue
        est = default["estimates"]  # cuDSS refuses a limit below its hybrid minimum
        limit = max(int(args.fraction * est["peak_device_memory"]), int(1.05 * est["hybrid_min_device_memory"]))
        hybrid = run(S, limit)
        print(json.dumps(hybrid), flush=True)
        rows.append(hybrid)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
