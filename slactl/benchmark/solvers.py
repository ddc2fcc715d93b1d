"""What `slactl bench --solvers` can run: slactl through its public API, and peers in the same process.

slactl specs (through ``slactl.solve(..., return_result=True)``):

* ``auto``: auto-dispatch; ``direct``: the direct backend auto picks for the device;
* a backend name from ``slactl backends`` (``superlu``, ``cudss``, ``cupyx``, ``torch``);
* ``METHOD`` or ``METHOD+PRECONDITIONER``: a Krylov method (cg, bicgstab, gmres, minres) with any
  preconditioner the registry knows when the benchmark runs (``cg+jacobi``, ``cg+amg``,
  ``cg+sa-amg``...); ``cg`` alone is unpreconditioned, ``cg+auto`` lets slactl choose.

Peers (:data:`PEERS`): ``scipy-spsolve``, ``scipy-cg``, ``pyamg`` (smoothed-aggregation CG; its
hierarchy set-up and its solve timed apart), ``cupyx-cg``, ``cupyx-cg+jacobi`` (CUDA), ``torch-cg``,
``torch-cg+jacobi`` (a textbook eager-PyTorch PCG that checks convergence on the host every
iteration), ``torch-spsolve``. A peer that cannot run here is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import inspect
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from slactl.benchmark.problems import Case
from slactl.errors import ConvergenceError, UsageError


@dataclass
class Outcome:
    """One run: the solution and what the solver says about it (times in seconds)."""

    x: Any
    setup_seconds: float | None
    solve_seconds: float | None
    iterations: int | None
    converged: bool
    ran: str = ""  # what actually ran, e.g. "cg+amg on torch"
    method: str | None = None  # for the bandwidth model
    preconditioner: str | None = None


@dataclass
class Solver:
    """A benchmarked solver: ``prepare(case)`` (untimed; makes its fresh inputs) then ``run(state)``."""

    name: str
    kind: str  # "slactl" or "peer"
    where: str  # "device" (the benchmark's), "host" or "cuda"
    describe: str
    prepare: Callable[[Case], Any]
    run: Callable[[Any, Case, float, int | None], Outcome]
    unavailable: Callable[[Case], str | None] = field(default=lambda case: None)

    def device_for(self, case: Case) -> str:
        return case.device if self.where == "device" else ("cpu" if self.where == "host" else "cuda")


# ------------------------------------------------------------------------------------ slactl
_KRYLOV = ("cg", "bicgstab", "gmres", "minres")


def _slactl_solver(spec: str) -> Solver:
    from slactl.engine.linear.backends import BACKENDS
    from slactl.engine.preconditioners import PRECONDITIONERS

    key = spec.lower()
    kw: dict[str, Any]
    if key == "auto":
        kw = {}
    elif key == "direct":
        kw = dict(method="direct")
    elif key in BACKENDS:
        kw = dict(backend=key)
    else:
        method, _, pre = key.partition("+")
        if method not in _KRYLOV:
            raise UsageError(f"unknown solver {spec!r}; choose auto, direct, a backend ({', '.join(BACKENDS)}), "
                             f"METHOD[+PRECONDITIONER] with METHOD in {', '.join(_KRYLOV)}, or a peer "
                             f"({', '.join(PEERS)})")
        pre = pre or "none"
        if pre != "auto" and pre not in PRECONDITIONERS:
            raise UsageError(f"unknown preconditioner {pre!r} in solver {spec!r}; this slactl knows "
                             f"{', '.join(sorted(PRECONDITIONERS))} (or auto)")
        kw = dict(method=method, preconditioner=pre)

    def unavailable(case: Case) -> str | None:
        if "backend" not in kw:
            return None
        backend = BACKENDS[kw["backend"]]
        if case.device not in backend.devices:
            return f"backend {backend.name} runs on {', '.join(backend.devices)}, not {case.device}"
        ok, why = backend.availability()
        return None if ok else f"backend {backend.name} unavailable: {why}"

    def prepare(case: Case) -> Any:
        return case.fresh_matrix()

    def run(A: Any, case: Case, rtol: float, maxiter: int | None) -> Outcome:
        import slactl

        try:
            res = slactl.solve(A, case.b_device, rtol=rtol, maxiter=maxiter, return_result=True, **kw)
            converged = True
        except ConvergenceError as exc:
            res, converged = exc.result, False
        if res.method == "direct":  # its "iterations" are iterative-refinement steps
            steps = f", {res.iterations} refinement step{'s' if res.iterations != 1 else ''}" if res.iterations else ""
            return Outcome(res.x.detach(), res.setup_seconds, res.solve_seconds, None, converged,
                           f"direct on {res.backend}{steps}", "direct", None)
        return Outcome(res.x.detach(), res.setup_seconds, res.solve_seconds, res.iterations, converged,
                       f"{res.method}+{res.preconditioner} on {res.backend}", res.method, res.preconditioner)

    what = {"auto": "slactl.solve, auto-dispatch", "direct": "slactl.solve(method='direct')"}.get(
        key, f"slactl.solve({', '.join(f'{k}={v!r}' for k, v in kw.items())})")
    return Solver(spec, "slactl", "device", what, prepare, run, unavailable)


# ------------------------------------------------------------------------------------ host peers
def _need(module: str) -> Callable[[Case], str | None]:
    def check(case: Case) -> str | None:
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} is not installed ({exc})"
        return None

    return check


def _host_prepare(case: Case) -> None:
    return None


def _scipy_spsolve(_: Any, case: Case, rtol: float, maxiter: int | None) -> Outcome:
    import scipy.sparse.linalg as spla

    t0 = time.perf_counter()
    x = spla.spsolve(case.a, case.b_host)
    return Outcome(x, None, time.perf_counter() - t0, None, bool(np.all(np.isfinite(x))), "SuperLU (COLAMD), one call")


def _scipy_cg(_: Any, case: Case, rtol: float, maxiter: int | None) -> Outcome:
    import scipy.sparse.linalg as spla

    its = [0]

    def count(xk: Any) -> None:
        its[0] += 1

    t0 = time.perf_counter()
    x, info = spla.cg(case.a, case.b_host, rtol=rtol, atol=0.0, maxiter=maxiter or 10 * case.n, callback=count)
    return Outcome(x, None, time.perf_counter() - t0, its[0], info == 0, "scipy.sparse.linalg.cg", "cg", "none")


def _pyamg(_: Any, case: Case, rtol: float, maxiter: int | None) -> Outcome:
    import pyamg

    t0 = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(case.a)
    t1 = time.perf_counter()
    residuals: list[float] = []
    # pyamg's tol is relative to ||b||: the same stopping rule as slactl's.
    x = ml.solve(case.b_host, tol=rtol, maxiter=maxiter or 10 * case.n, accel="cg", residuals=residuals)
    t2 = time.perf_counter()
    bn = float(np.linalg.norm(case.b_host)) or 1.0
    converged = bool(residuals) and residuals[-1] <= rtol * bn
    return Outcome(x, t1 - t0, t2 - t1, max(len(residuals) - 1, 0), converged,
                   f"pyamg SA hierarchy ({len(ml.levels)} levels) + CG")


# ------------------------------------------------------------------------------------ CUDA peers
def _cupy_unavailable(case: Case) -> str | None:
    if case.device != "cuda":
        return "cupyx peers run on CUDA; the benchmark device is cpu"
    try:
        import cupy  # noqa: F401
        import cupyx.scipy.sparse.linalg  # noqa: F401
    except ImportError as exc:
        return f"CuPy is not installed ({exc})"
    return None


@contextlib.contextmanager
def _cupy_on_torch_allocator():
    """Route CuPy's device allocations through torch's caching allocator, so that
    torch.cuda.max_memory_allocated sees the peer's memory exactly as it sees slactl's."""
    import cupy as cp

    def alloc(size: int):
        buf = torch.empty(max(int(size), 1), dtype=torch.uint8, device="cuda")
        return cp.cuda.MemoryPointer(cp.cuda.UnownedMemory(buf.data_ptr(), int(size), buf), 0)

    getter = getattr(cp.cuda, "get_allocator", None)
    previous = getter() if getter is not None else cp.get_default_memory_pool().malloc
    cp.cuda.set_allocator(alloc)
    try:
        yield cp
    finally:
        cp.cuda.set_allocator(previous)


def _cupyx_prepare(case: Case) -> Any:
    """Fresh device copies of the CSR arrays, wrapped (zero-copy, DLPack) as a cupyx csr_matrix."""
    import cupyx.scipy.sparse as csp

    with _cupy_on_torch_allocator() as cp:
        crow = case.crow.to("cuda", torch.int32)
        col = case.col.to("cuda", torch.int32)
        values = case.values.to("cuda")
        A = csp.csr_matrix((cp.from_dlpack(values), cp.from_dlpack(col), cp.from_dlpack(crow)), shape=(case.n, case.n))
        return A, cp.from_dlpack(case.b_device), (crow, col, values)


def _cupyx_cg(jacobi: bool) -> Callable[[Any, Case, float, int | None], Outcome]:
    def run(state: Any, case: Case, rtol: float, maxiter: int | None) -> Outcome:
        import cupyx.scipy.sparse.linalg as cspla

        A, b, _keep = state
        with _cupy_on_torch_allocator() as cp:
            t0 = time.perf_counter()
            M = None
            if jacobi:
                inv_diag = 1.0 / A.diagonal()
                M = cspla.LinearOperator(A.shape, matvec=lambda r: inv_diag * r, dtype=A.dtype)
                cp.cuda.Device().synchronize()
            t1 = time.perf_counter()
            its = [0]

            def count(xk: Any) -> None:
                its[0] += 1

            # CuPy >= 14 calls the relative tolerance rtol, earlier versions tol.
            tol_name = "rtol" if "rtol" in inspect.signature(cspla.cg).parameters else "tol"
            x, info = cspla.cg(A, b, M=M, maxiter=maxiter or 10 * case.n, callback=count, atol=0.0, **{tol_name: rtol})
            cp.cuda.Device().synchronize()
            t2 = time.perf_counter()
        return Outcome(x, t1 - t0 if jacobi else None, t2 - t1, its[0], info == 0, "cupyx.scipy.sparse.linalg.cg",
                       "cg", "jacobi" if jacobi else "none")

    return run


# ------------------------------------------------------------------------------------ torch peers
def _torch_prepare(case: Case) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(case.crow.to(case.device), case.col.to(case.device),
                                       case.values.to(case.device), (case.n, case.n))


def _diagonal(A: torch.Tensor) -> torch.Tensor:
    crow, col, values = A.crow_indices(), A.col_indices(), A.values()
    n = A.shape[0]
    row = torch.repeat_interleave(torch.arange(n, device=values.device), crow.diff().long())
    on = row == col.long()
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, row[on], values[on])


def _torch_cg(jacobi: bool) -> Callable[[Any, Case, float, int | None], Outcome]:
    """Textbook preconditioned CG in eager PyTorch (torch.mv on CSR), the host checking ||r|| every
    iteration: what a PyTorch user writes without a sparse solver library."""

    def run(A: torch.Tensor, case: Case, rtol: float, maxiter: int | None) -> Outcome:
        dev = case.device
        t0 = time.perf_counter()
        inv_diag = 1.0 / _diagonal(A) if jacobi else None
        if dev == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        b = case.b_device
        x = torch.zeros_like(b)
        r = b.clone()
        z = r * inv_diag if jacobi else r
        p = z.clone()
        rz = torch.dot(r, z)
        tol = rtol * float(torch.linalg.vector_norm(b))
        its, converged = 0, float(torch.linalg.vector_norm(r)) <= tol
        limit = maxiter or 10 * case.n
        while not converged and its < limit:
            Ap = torch.mv(A, p)
            alpha = rz / torch.dot(p, Ap)
            x += alpha * p
            r -= alpha * Ap
            its += 1
            converged = float(torch.linalg.vector_norm(r)) <= tol
            if converged:
                break
            z = r * inv_diag if jacobi else r
            rz_new = torch.dot(r, z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        if dev == "cuda":
            torch.cuda.synchronize()
        return Outcome(x, t1 - t0 if jacobi else None, time.perf_counter() - t1, its, converged,
                       "eager torch PCG, host check per iteration",
                       "cg", "jacobi" if jacobi else "none")

    return run


def _torch_spsolve_unavailable(case: Case) -> str | None:
    a = torch.sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 1]),
                                torch.tensor([2.0, 4.0], dtype=case.dtype), (2, 2)).to(case.device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.sparse.spsolve(a, torch.ones(2, dtype=case.dtype, device=case.device))
    except Exception as exc:  # noqa: BLE001 - an op this torch build lacks makes the peer unavailable
        return f"torch.sparse.spsolve fails on this build/device: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return None


def _torch_spsolve(A: torch.Tensor, case: Case, rtol: float, maxiter: int | None) -> Outcome:
    t0 = time.perf_counter()
    x = torch.sparse.spsolve(A, case.b_device)
    if case.device == "cuda":
        torch.cuda.synchronize()
    return Outcome(x, None, time.perf_counter() - t0, None, bool(torch.isfinite(x).all()), "torch.sparse.spsolve")


PEERS: dict[str, Solver] = {
    s.name: s
    for s in [
        Solver("scipy-spsolve", "peer", "host", "scipy.sparse.linalg.spsolve (SuperLU)", _host_prepare, _scipy_spsolve),
        Solver("scipy-cg", "peer", "host", "scipy.sparse.linalg.cg, no preconditioner", _host_prepare, _scipy_cg),
        Solver("pyamg", "peer", "host", "pyamg smoothed_aggregation_solver + CG acceleration", _host_prepare, _pyamg,
               _need("pyamg")),
        Solver("cupyx-cg", "peer", "cuda", "cupyx.scipy.sparse.linalg.cg, no preconditioner", _cupyx_prepare,
               _cupyx_cg(False), _cupy_unavailable),
        Solver("cupyx-cg+jacobi", "peer", "cuda", "cupyx.scipy.sparse.linalg.cg with a Jacobi LinearOperator",
               _cupyx_prepare, _cupyx_cg(True), _cupy_unavailable),
        Solver("torch-cg", "peer", "device", "eager-PyTorch CG (torch.mv on CSR)", _torch_prepare, _torch_cg(False)),
        Solver("torch-cg+jacobi", "peer", "device", "eager-PyTorch Jacobi-PCG (torch.mv on CSR)", _torch_prepare,
               _torch_cg(True)),
        Solver("torch-spsolve", "peer", "device", "torch.sparse.spsolve", _torch_prepare, _torch_spsolve,
               _torch_spsolve_unavailable),
    ]
}
# "cupyx" alone is slactl's cupyx backend (host LU, GPU triangular solves), not a peer.
ALIASES = {"spsolve": "scipy-spsolve", "scipy": "scipy-spsolve", "pyamg-sa": "pyamg", "pyamg-sa-cg": "pyamg"}


def parse_solvers(text: str) -> list[Solver]:
    """``"auto,cg+amg,pyamg"`` -> solvers, every name checked before anything runs (UsageError)."""
    out: list[Solver] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        key = ALIASES.get(item.lower(), item.lower())
        out.append(PEERS[key] if key in PEERS else _slactl_solver(item))
    if not out:
        raise UsageError("--solvers: name at least one solver, e.g. --solvers auto,pyamg")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise UsageError(f"--solvers: a solver is named twice in {text!r}")
    return out
