"""Time to solution of 2D Poisson (5-point, b = A @ ones, rtol 1e-8), slactl against its peers.

CPU peers: scipy.sparse.linalg.spsolve and pyamg smoothed-aggregation CG (setup + solve).
GPU peers: cupyx CG (unpreconditioned, like every CuPy user would run it); cuDSS is timed through
slactl (first solve with analysis, then a values-only re-factorization + solve with the analysis
kept). Every timed solve's true relative residual ||b - A x|| / ||b|| is checked and printed.

    python benchmarks/bench_solve.py --device cpu --sizes 1000000
    python benchmarks/bench_solve.py --device cuda --sizes 1000000 4000000 --append benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import statistics
import sys
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

import slactl
from slactl.io.gallery import generate


def _clock(device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def timed(fn: Callable[[], object], device: str, repeat: int) -> tuple[float, object]:
    """Median wall time of ``fn`` over ``repeat`` runs after one warm-up, and its last result."""
    out = fn()
    samples = []
    for _ in range(repeat):
        t0 = _clock(device)
        out = fn()
        samples.append(_clock(device) - t0)
    return statistics.median(samples), out


def relres(a: sp.csr_array, x: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(b - a @ x) / np.linalg.norm(b))


def bench_cpu(a: sp.csr_array, rows: list, repeat: int) -> None:
    import scipy.sparse.linalg as spla

    n = a.shape[0]
    b = a @ np.ones(n)
    A = slactl.SparseMatrix.from_scipy(a)
    bt = torch.from_numpy(b)

    def ours():
        return slactl.solve(A, bt, rtol=1e-8, return_result=True)

    t, res = timed(ours, "cpu", repeat)
    rows.append(("slactl solve (auto)", n, t, res.iterations, relres(a, res.x.numpy(), b),
                 f"{res.method}+{res.preconditioner} on {res.backend}"))
    base = t
    if n <= 1_100_000:
        t, x = timed(lambda: spla.spsolve(a.tocsc(), b), "cpu", max(1, repeat // 2))
        rows.append(("scipy spsolve", n, t, 0, relres(a, x, b), f"peer time / slactl time {t / base:.2f}"))
    try:
        import pyamg
    except ImportError:
        rows.append(("pyamg SA-CG", n, None, None, None, "pyamg not installed"))
        return
    residuals: list[float] = []

    def peer():
        residuals.clear()
        ml = pyamg.smoothed_aggregation_solver(a)
        return ml.solve(b, tol=1e-8, accel="cg", residuals=residuals)

    t, x = timed(peer, "cpu", repeat)
    rows.append(("pyamg SA-CG (setup+solve)", n, t, len(residuals) - 1, relres(a, x, b), f"peer time / slactl time {t / base:.2f}"))


def bench_cuda(a: sp.csr_array, rows: list, repeat: int) -> None:
    n = a.shape[0]
    A = slactl.SparseMatrix.from_scipy(a, device="cuda")
    b = A @ torch.ones(n, dtype=torch.float64, device="cuda")
    bn = b.cpu().numpy()

    def check(x):
        return relres(a, x.detach().cpu().numpy(), bn)

    for label, kw in [("slactl CG+AMG (auto)", dict()), ("slactl CG+Jacobi", dict(method="cg", preconditioner="jacobi")),
                      ("slactl CG (none)", dict(method="cg", preconditioner="none"))]:
        t, res = timed(lambda: slactl.solve(A, b, rtol=1e-8, maxiter=20000, return_result=True, **kw), "cuda", repeat)
        rows.append((label, n, t, res.iterations, check(res.x), f"setup {res.setup_seconds:.3f} s, solve {res.solve_seconds:.3f} s"))
        if label.startswith("slactl CG+Jacobi"):
            jac = t
    # Adjoint cost of an iterative solve: backward / forward.
    v = A.values.detach().clone().requires_grad_()
    def fwd_bwd():
        x = slactl.solve(A.with_values(v), b, method="cg", preconditioner="jacobi", rtol=1e-8, maxiter=20000)
        x.sum().backward()
        return x
    t_fb, _ = timed(fwd_bwd, "cuda", max(1, repeat // 2))
    rows.append(("slactl CG+Jacobi forward+backward", n, t_fb, None, None, f"backward / forward = {(t_fb - jac) / jac:.2f}"))
    torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated()
    slactl.solve(A, b, method="cg", preconditioner="none", rtol=1e-8, maxiter=20000)
    torch.cuda.synchronize()
    rows.append(("slactl CG (none) peak memory", n, None, None, None,
                 f"{(torch.cuda.max_memory_allocated() - base_mem + A.nnz * 12 + (n + 1) * 4) / n:.0f} bytes/DOF incl. matrix"))
    try:
        import cupy as cp
        import cupyx.scipy.sparse as csp
        import cupyx.scipy.sparse.linalg as cspla

        ca = csp.csr_matrix(a)
        cb = cp.asarray(bn)
        its = []

        def cupyx_cg():
            its.clear()
            try:
                x, info = cspla.cg(ca, cb, rtol=1e-8, maxiter=20000, callback=lambda xk: its.append(1))
            except TypeError:  # CuPy < 14 calls it tol
                x, info = cspla.cg(ca, cb, tol=1e-8, maxiter=20000, callback=lambda xk: its.append(1))
            return x

        t, x = timed(cupyx_cg, "cuda", repeat)
        rows.append(("cupyx CG (none)", n, t, len(its), relres(a, cp.asnumpy(x), bn), ""))
    except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not hidden
        rows.append(("cupyx CG", n, None, None, None, f"failed: {type(exc).__name__}: {exc}"[:120]))
    if slactl.engine.linear.BACKENDS["cudss"].availability()[0]:
        t0 = _clock("cuda")
        F = slactl.factorize(A, backend="cudss")
        x = F.solve(b)
        first = _clock("cuda") - t0
        rows.append(("slactl cuDSS first solve (analysis+factor+solve)", n, first, 0, check(x),
                     f"analysis {F.prepared.analysis_seconds:.2f} s, factorization {F.prepared.factorization_seconds:.3f} s"))

        scaled = A.with_values(A.values * 1.0001)

        def refactor_solve():
            G = slactl.factorize(scaled, backend="cudss")
            return G.solve(b)

        t, x = timed(refactor_solve, "cuda", repeat)
        rr = float(torch.linalg.vector_norm(b - scaled @ x) / torch.linalg.vector_norm(b))
        rows.append(("slactl cuDSS values-only re-factorization + solve", n, t, 0, rr, "analysis kept"))
        t_solve, x = timed(lambda: F.solve(b), "cuda", repeat)
        rows.append(("slactl cuDSS re-solve (factors kept)", n, t_solve, 0, check(x), ""))
        v = A.values.detach().clone().requires_grad_()
        Av = A.with_values(v)
        Fv = slactl.factorize(Av, backend="cudss")
        def direct_fb():
            x = Fv.solve(b)
            x.sum().backward()
        t_fb, _ = timed(direct_fb, "cuda", repeat)
        rows.append(("slactl cuDSS solve forward+backward (factors kept)", n, t_fb, None, None,
                     f"backward / (factorization + solve) = {(t_fb - t_solve) / (F.prepared.factorization_seconds + t_solve):.2f}"))
    else:
        rows.append(("cuDSS", n, None, None, None, "not available: " + slactl.engine.linear.BACKENDS["cudss"].availability()[1]))


def render(rows: list, device: str, command: str) -> str:
    mach = torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()}, {torch.get_num_threads()} threads"
    out = [f"### Linear solve, 2D Poisson, b = A @ ones, rtol 1e-8 ({device}: {mach}, torch {torch.__version__})", "",
           f"Date {_dt.date.today().isoformat()}. Command: `{command}`. Times are medians after a warm-up, set-up included.", "",
           "| solver | n | time (s) | iterations | true relres | note |", "|---|---|---|---|---|---|"]
    for name, n, t, it, rr, note in rows:
        out.append(f"| {name} | {n:,} | {'' if t is None else f'{t:.4f}'} | {'' if it is None else it} | "
                   f"{'' if rr is None else f'{rr:.1e}'} | {note} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--append")
    args = p.parse_args()
    rows: list = []
    for size in args.sizes:
        a = generate("poisson2d", int(round(size**0.5))).matrix
        (bench_cuda if args.device == "cuda" else bench_cpu)(a, rows, args.repeat)
    text = render(rows, args.device, "python " + " ".join(sys.argv))
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
