"""SpMV, SpMM and SpGEMM, forward and backward: slactl against its peers in the same process.

Peers: torch's own CSR kernels (torch.mv / torch.mm / sparse @ sparse, and torch autograd where it
supports the input), SciPy on the CPU, cupyx on CUDA when CuPy is installed. Matrices: 2D Poisson
(5-point) and a random sparse matrix with ~16 nonzeros per row. Times are medians of repeated runs
after a warm-up, with a CUDA synchronize before every clock read.

    python benchmarks/bench_kernels.py --device cpu --sizes 250000 1000000
    python benchmarks/bench_kernels.py --device cpu --sizes 1000000 --ops spgemm
    python benchmarks/bench_kernels.py --device cuda --sizes 1000000 4000000 16000000 --append benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import statistics
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

import slactl


OPS = frozenset({"spmv", "spmm", "spgemm"})


def poisson2d(n_dof: int) -> sp.csr_array:
    k = int(round(n_dof**0.5))
    t = sp.diags_array([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], offsets=[-1, 0, 1])
    eye = sp.eye_array(k)
    return sp.csr_array(sp.kron(t, eye) + sp.kron(eye, t))


def random_sparse(n: int, per_row: int = 16, seed: int = 0) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), per_row)
    cols = rng.integers(0, n, n * per_row)
    a = sp.csr_array((rng.standard_normal(n * per_row), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    return a


def timeit(fn: Callable[[], object], device: str, repeat: int = 7, min_time: float = 0.2) -> float:
    """Median seconds of one call of ``fn`` (several calls per sample when a call is short)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - t0
    inner = max(1, int(min_time / max(once, 1e-7) / repeat))
    samples = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def _cupy_matrix(a: sp.csr_array):
    try:
        import cupy as cp
        import cupyx.scipy.sparse as csp
    except Exception:  # noqa: BLE001 - CuPy is an optional peer
        return None, None
    return cp, csp.csr_matrix(a)


def bench_matrix(name: str, a: sp.csr_array, device: str, k: int, rows: list[dict], ops: set[str] = OPS) -> None:
    dtype = torch.float64
    A = slactl.SparseMatrix.from_scipy(a, dtype=dtype, device=device)
    tcsr = A.to_torch()
    n = a.shape[0]
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, dtype=dtype, device=device, generator=gen)
    X = torch.randn(n, k, dtype=dtype, device=device, generator=gen)
    xs = x.cpu().numpy()
    Xs = X.cpu().numpy()
    cp, ca = _cupy_matrix(a) if device == "cuda" else (None, None)

    def add(op, impl, seconds, bytes_moved=None):
        rows.append(dict(matrix=name, n=n, nnz=a.nnz, op=op, impl=impl, ms=seconds * 1e3,
                         gbs=(bytes_moved / seconds / 1e9) if bytes_moved else None))
        print(f"# {name} n={n} {op} {impl}: {seconds * 1e3:.3f} ms", flush=True)  # survives a crash

    def trial(op, impl, fn, bytes_moved=None, repeat=7):
        try:
            add(op, impl, timeit(fn, device, repeat=repeat), bytes_moved)
        except Exception as exc:  # noqa: BLE001 - e.g. a peer running out of memory: recorded, not fatal
            rows.append(dict(matrix=name, n=n, nnz=a.nnz, op=op, impl=impl, ms=None, gbs=None,
                             note=f"failed: {type(exc).__name__}"))
        if device == "cuda":
            torch.cuda.empty_cache()
            if cp is not None:
                cp.get_default_memory_pool().free_all_blocks()

    # SpMV bytes: values + col indices + row offsets + x gathered (lower bound: once) + y written.
    idx_bytes = A.pattern.col.element_size()
    spmv_bytes = a.nnz * (8 + idx_bytes) + (n + 1) * idx_bytes + 2 * n * 8

    # differentiable copies, shared by the forward + backward trials
    v = A.values.detach().clone().requires_grad_(True)
    xg = x.clone().requires_grad_(True)
    Ag = A.with_values(v)

    # ---- SpMV forward
    if "spmv" in ops:
        trial("SpMV", "slactl A@x", lambda: A @ x, spmv_bytes)
        add("SpMV", "torch.mv(csr)", timeit(lambda: torch.mv(tcsr, x), device), spmv_bytes)
        if device == "cpu":
            trial("SpMV", "scipy A@x", lambda: a @ xs, spmv_bytes)
        elif ca is not None:
            xc = cp.asarray(xs)
            trial("SpMV", "cupyx A@x", lambda: ca @ xc, spmv_bytes)

        # ---- SpMV forward + backward (grad w.r.t. values and x)

        def slactl_fb():
            y = Ag @ xg
            gv, gx = torch.autograd.grad(y, (v, xg), grad_outputs=x)
            return gv

        add("SpMV fwd+bwd (values, x)", "slactl", timeit(slactl_fb, device))

        def torch_fb_x():
            y = torch.mv(tcsr, xg)
            (gx,) = torch.autograd.grad(y, (xg,), grad_outputs=x)
            return gx

        trial("SpMV fwd+bwd (x only)", "torch autograd", torch_fb_x)
        tv = tcsr.detach().clone().requires_grad_(True)

        def torch_fb_values():
            y = torch.mv(tv, x)
            (gv,) = torch.autograd.grad(y, (tv,), grad_outputs=x)
            return gv

        try:
            if n > 250_000:
                raise RuntimeError("skipped above 250,000 rows: torch's CSR values gradient is seconds per call")
            trial("SpMV fwd+bwd (values)", "torch autograd", torch_fb_values)
        except Exception as exc:  # noqa: BLE001 - record what the peer cannot do
            rows.append(dict(matrix=name, n=n, nnz=a.nnz, op="SpMV fwd+bwd (values)", impl="torch autograd",
                             ms=None, gbs=None, note=f"not run: {exc}"[:90]))

    # ---- SpMM forward (k columns)
    if "spmm" in ops:
        trial(f"SpMM k={k}", "slactl A@X", lambda: A @ X)
        add(f"SpMM k={k}", "torch.mm(csr)", timeit(lambda: torch.mm(tcsr, X), device))
        if device == "cpu":
            trial(f"SpMM k={k}", "scipy A@X", lambda: a @ Xs)
        elif ca is not None:
            Xc = cp.asarray(Xs)
            trial(f"SpMM k={k}", "cupyx A@X", lambda: ca @ Xc)
        Xg = X.clone().requires_grad_(True)

        def slactl_spmm_fb():
            y = Ag @ Xg
            return torch.autograd.grad(y, (v, Xg), grad_outputs=X)

        add(f"SpMM k={k} fwd+bwd (values, X)", "slactl", timeit(slactl_spmm_fb, device))

    # ---- SpGEMM forward and backward (A @ A); the product structure is O(flops) memory
    if "spgemm" in ops:
        if a.nnz > (25_000_000 if device == "cuda" else 8_000_000):
            return  # the product structure of random16 at 1M rows (256M products) exceeds a 24 GiB host
        A2 = A @ A  # symbolic phase, cached on the pattern pair
        trial("SpGEMM A@A", "slactl (symbolic cached)", lambda: A @ A)
        fresh = slactl.SparseMatrix.from_scipy(a, dtype=dtype, device=device)

        def slactl_spgemm_cold():
            B = slactl.SparseMatrix.from_pattern(
                slactl.engine.pattern.Pattern(fresh.pattern.crow, fresh.pattern.col, fresh.shape), fresh.values)
            return B @ B

        trial("SpGEMM A@A", "slactl (symbolic + numeric)", slactl_spgemm_cold, repeat=3)
        trial("SpGEMM A@A", "torch csr@csr", lambda: tcsr @ tcsr)
        if device == "cpu":
            trial("SpGEMM A@A", "scipy A@A", lambda: a @ a)
        elif ca is not None:
            trial("SpGEMM A@A", "cupyx A@A", lambda: ca @ ca)
        w = torch.randn(A2.nnz, dtype=dtype, device=device, generator=gen)

        def slactl_spgemm_fb():
            C = Ag @ Ag
            return torch.autograd.grad((C.values * w).sum(), (v,))

        trial("SpGEMM fwd+bwd (values)", "slactl", slactl_spgemm_fb)
        tcoo = A.to_torch(torch.sparse_coo).detach().clone().requires_grad_(True)

        def torch_spgemm_fb():
            C = torch.sparse.mm(tcoo, tcoo)
            return torch.autograd.grad(torch.sparse.sum(C), (tcoo,))

        if n > 1_100_000 or (device == "cpu" and a.nnz > 1_000_000):
            return  # torch's COO autograd is slow and, on the host, ran out of 24 GiB at 4M nonzeros
        try:
            trial("SpGEMM fwd+bwd (values)", "torch.sparse.mm COO autograd", torch_spgemm_fb, repeat=3)
        except Exception as exc:  # noqa: BLE001
            rows.append(dict(matrix=name, n=n, nnz=a.nnz, op="SpGEMM fwd+bwd (values)", impl="torch.sparse.mm COO autograd",
                             ms=None, gbs=None, note=f"unsupported: {type(exc).__name__}"))


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def render(rows: list[dict], device: str, command: str) -> str:
    out = [f"### Kernels on {device}: {machine(device)}", "",
           f"Date {_dt.date.today().isoformat()}. Command: `{command}`. float64; median of 7 samples after warm-up.", "",
           "| matrix | n | nnz | operation | implementation | time (ms) | peer time / slactl time | GB/s |",
           "|---|---|---|---|---|---|---|---|"]
    base: dict[tuple, float] = {}  # the first slactl row of each operation (the cached one for SpGEMM)
    for r in rows:
        if r["impl"].startswith("slactl") and r["ms"] is not None:
            base.setdefault((r["matrix"], r["n"], r["op"]), r["ms"])
    for r in rows:
        key = (r["matrix"], r["n"], r["op"])
        ms = "n/a" if r["ms"] is None else f"{r['ms']:.3f}"
        ratio = ""
        if r["ms"] is not None and key in base and not r["impl"].startswith("slactl"):
            ratio = f"{r['ms'] / base[key]:.2f}"
        gbs = "" if r.get("gbs") is None else f"{r['gbs']:.0f}"
        note = r.get("note", "")
        out.append(f"| {r['matrix']} | {r['n']:,} | {r['nnz']:,} | {r['op']} | {r['impl']} {note} | {ms} | {ratio} | {gbs} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    p.add_argument("--k", type=int, default=16, help="columns of the SpMM block")
    p.add_argument("--append", help="append the markdown table to this file")
    p.add_argument("--ops", nargs="+", choices=sorted(OPS), default=sorted(OPS), help="which kernels to time")
    args = p.parse_args()
    rows: list[dict] = []
    for size in args.sizes:
        bench_matrix("poisson2d", poisson2d(size), args.device, args.k, rows, set(args.ops))
        if size <= 4_000_000:
            bench_matrix("random16", random_sparse(size), args.device, args.k, rows, set(args.ops))
    import sys

    text = render(rows, args.device, "python " + " ".join(sys.argv))
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
