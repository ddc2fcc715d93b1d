"""Fused conjugate gradients on CUDA: Triton kernels, device-side scalars, CUDA-graph replay.

The eager loop of :func:`~slactl.engine.krylov.cg` launches a dozen small kernels per iteration
and reads and writes every vector several times. This path runs one CG iteration as two streaming
Triton kernels (see :mod:`slactl.engine.krylov._fused_cg_kernels`):

* ``p = z + beta p`` fused into the CSR SpMV ``Ap = A p`` with the partial sums of ``p . Ap``, and
  the previous iteration's ``x += alpha p`` (on the rows of ``p`` it reads anyway);
* ``r -= alpha Ap``, ``z = dinv r`` (Jacobi) with the partial sums of ``r . r`` and ``r . z``,

so an iteration moves the matrix once and 9 vector passes (the bandwidth floor) when the gathers
hit in cache. Alpha, beta, the stopping test, the failure statuses and the residual history are
computed on the device from per-program partial sums reduced in a fixed order (deterministic: the
atomic counters only tell which program finishes last): no host synchronization inside an
iteration. Every ``check_every`` iterations (a *block*) the host reads the state once; the block is
captured once in a CUDA graph and replayed (eager launches where capture fails). The next block is
launched before the previous one is read, so the GPU never waits for the host; iterations run past
convergence are *frozen* (``alpha = beta = 0``: ``x`` and ``r`` stay at the first iterate that met
the tolerance, exactly as the eager loop freezes a converged column), do not count, and are trimmed
from the history: the reported iteration count is the true one. Small systems (few partial sums)
reduce them at the top of the next kernel and launch the kernels as programmatic dependent launches
(2 kernels per iteration); large ones add a small reduction kernel after each streaming kernel.

Measured on one H200 (float64 2-D Poisson, int32 CSR, ``b = A 1``, rtol 1e-8, copy bandwidth
4.27 TB/s, floor 136 B/DOF per iteration; ``benchmarks/bench_fused_cg.py``,
``benchmarks/raw/fused_cg/fused_cg_h200_2026-11-22_run6.json``), per iteration, whole solve:
10K DOF 13.1 us (eager loop 264 us, cupyx 188 us), 1M 47 us (eager 371, cupyx 197), 16M 566 us =
1.11x the floor (eager 982 us, 1.93x; cupyx 1225 us). Jacobi 16M: 628 us (eager 1101); float32
16M: 365 us (eager 632). Faster than the eager loop at every size measured, so ``cg()`` takes it
whenever it applies.

Scope: one real (float32 / float64) unbatched :class:`~slactl.engine.matrix.SparseMatrix` on CUDA,
one right-hand side, no preconditioner or Jacobi, no callback. :func:`~slactl.engine.krylov.cg`
uses it automatically there when Triton imports (``fused=False`` turns it off); everything around
the iterations (initial residual, true-residual check, restarts, the :class:`KrylovResult`) is the
shared driver of :mod:`slactl.engine.krylov._loop`, so the result has the same fields and meaning.
It is a forward kernel only: the adjoint (backward) solve of ``slactl.solve`` is another ``cg``
call, fused in its turn.

Under ``TRITON_INTERPRET=1`` (set before triton is imported) the same kernels run on the CPU in
Triton's interpreter: ``fused_cg(..., interpret=True)`` (tests).
"""

from __future__ import annotations

import importlib
import math
import os
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from typing import Any

import torch

from slactl.engine.krylov.result import KrylovResult, Status
from slactl.engine.matrix import SparseMatrix
from slactl.errors import UsageError

_KERNELS = "slactl.engine.krylov._fused_cg_kernels"
# State vector offsets (mirror of _fused_cg_kernels).
_A_RZ, _A_BETA, _A_ACTIVE, _A_CODE, _A_COUNT = 0, 1, 2, 3, 4
_TOL = 5  # the tolerance (read by the host only)
_B_ALPHA = 9
_HIST = 16

# Up to this many per-block partial sums, every program of the next kernel reduces them itself
# (the scalar stages run "inline": 2 launches per iteration instead of 4).
INLINE_MAX_PARTIALS = 256
# Plans (static buffers + captured graphs) kept for re-solves with the same matrix.
_CACHE_SIZE = 2
_cache: "OrderedDict[tuple, _Plan]" = OrderedDict()
_cache_lock = threading.RLock()  # re-entrant: a weakref callback may evict during a GC in the lock
_triton_ok: bool | None = None
# Set when the fused path failed in automatic mode: cg() then stays on the eager loop.
_disabled_reason: str | None = None


# --------------------------------------------------------------------------------- availability
def triton_available() -> bool:
    """True when ``triton`` imports (checked once)."""
    global _triton_ok
    if _triton_ok is None:
        try:
            import triton  # noqa: F401
            import triton.language  # noqa: F401

            _triton_ok = True
        except Exception:  # noqa: BLE001  (ImportError, or a broken install)
            _triton_ok = False
    return _triton_ok


def interpreting() -> bool:
    """True when Triton runs its CPU interpreter (``TRITON_INTERPRET=1`` in the environment when
    ``triton`` was imported; Triton's own ``tl.zeros``/``tl.sum`` are decorated then, so the mode
    cannot be switched inside a process)."""
    if not triton_available():
        return False
    import triton

    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def load_kernels() -> Any:
    """The kernels module (compiled for the GPU, or interpreted under ``TRITON_INTERPRET=1``)."""
    return importlib.import_module(_KERNELS)


def _preconditioner_kind(M: Any, A: SparseMatrix) -> str | None:
    """``"none"`` / ``"jacobi"`` for the preconditioners the fused path runs, else None."""
    if M is None:
        return "none"
    if isinstance(M, str):
        key = M.lower()
        return key if key in ("none", "jacobi") else None
    from slactl.engine.krylov._loop import _Identity
    from slactl.engine.preconditioners.base import Identity
    from slactl.engine.preconditioners.jacobi import Jacobi

    if type(M) in (Identity, _Identity):
        return "none"
    if type(M) is Jacobi:  # exactly Jacobi: a subclass may change apply()
        d = getattr(M, "inv_diag", None)
        if M.shape is None or d is None or not torch.is_tensor(d):
            return None
        if d.dim() != 1 or d.numel() != A.shape[0] or d.device != A.device or d.dtype != A.dtype:
            return None
        return "jacobi"
    return None


def unsupported_reason(A: Any, b: Any, preconditioner: Any = None, callback: Any = None, *,
                       interpret: bool = False) -> str | None:
    """Why the fused CG cannot run this solve (None when it can).

    It runs one real float32/float64 unbatched SparseMatrix on CUDA (on the CPU with
    ``interpret=True``), a vector ``b``, preconditioner None / "none" / "jacobi" / a Jacobi or
    Identity instance, no callback, with Triton importable.
    """
    if not isinstance(A, SparseMatrix):
        return f"A is a {type(A).__name__}, not a SparseMatrix"
    if A.is_batched:
        return "A is a batch of matrices"
    if A.device.type != "cuda" and not interpret:
        return f"A is on {A.device}, not on a CUDA device"
    if A.dtype not in (torch.float32, torch.float64):
        return f"A is {A.dtype}; the fused CG runs float32 and float64"
    if not torch.is_tensor(b) or b.dim() != 1:
        return "b is not a single vector (blocks of right-hand sides run on the eager loop)"
    if callback is not None:
        return "a callback is given (it runs at the eager loop's check points)"
    if _preconditioner_kind(preconditioner, A) is None:
        return (f"preconditioner {getattr(preconditioner, 'name', preconditioner)!r} is not none or "
                "jacobi (a set-up Jacobi of A)")
    if not triton_available():
        return "triton is not installed"
    if interpreting() and not interpret:
        return "Triton's CPU interpreter is on (TRITON_INTERPRET=1)"
    return None


def disabled_reason() -> str | None:
    """Why automatic use was switched off in this process (after a failure), else None."""
    return _disabled_reason


def _disable(exc: BaseException) -> None:
    global _disabled_reason
    _disabled_reason = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"the fused CG failed ({_disabled_reason}); cg() uses the eager loop from now on in this "
        "process (pass fused=True to see the error)", RuntimeWarning, stacklevel=3)


def clear_cache() -> None:
    """Drop the cached plans (their buffers and CUDA graphs)."""
    with _cache_lock:
        _cache.clear()


def _next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------------------- plan
class _Plan:
    """Static buffers, launch parameters and captured graphs of the fused CG for one matrix."""

    def __init__(self, A: SparseMatrix, jacobi: bool, k: int, *, graphs: bool, interpret: bool,
                 tuning: dict[str, Any]):
        t0 = time.perf_counter()
        self.K = load_kernels()
        self.interpret = interpret
        self.lock = threading.Lock()
        self.jacobi = jacobi
        self.k = int(k)
        self.n = n = A.shape[0]
        dev, dt = A.device, A.dtype
        self.device, self.dtype = dev, dt
        self.cuda = dev.type == "cuda" and not interpret
        self.val = A.values.detach().contiguous()
        self.crow = A.pattern.crow.contiguous()
        self.col = A.pattern.col.contiguous()
        maxlen = A.pattern.cached(("fused_cg_maxlen",), lambda: int((self.crow[1:] - self.crow[:-1]).max()) if n else 0)
        # The entries of a block of rows are read as [rows, KP] tiles: a row of up to unroll_max
        # entries in up to 3 tiles whose widths (powers of 2) add up to maxlen where they can
        # (5 = 4 + 1: padding lanes cost registers, so rows in flight), longer rows in a loop over
        # tiles of KP up to maxlen.
        self.maxlen = maxlen
        unroll = _next_pow2(max(1, int(tuning.get("unroll_max", 16))))
        self.LOOP = maxlen > unroll
        if self.LOOP:
            tiles = [unroll]
        elif not tuning.get("split", True):
            tiles = [_next_pow2(max(maxlen, 1))]
        else:
            tiles, rest = [], max(maxlen, 1)
            while rest > 0 and len(tiles) < 2:
                tiles.append(1 << (rest.bit_length() - 1))
                rest -= tiles[-1]
            if rest > 0:
                tiles.append(_next_pow2(rest))
        self.KP, self.KP2, self.KP3 = (tiles + [0, 0])[:3]
        # Evict-first hints on the matrix loads: slower on an H200 (sweep, 16M DOF, 128-row
        # blocks: 576 us per iteration without, 618 with), so off unless asked for.
        self.EVICT = bool(tuning.get("evict", False))
        small = n <= 1 << 17
        self.BS = int(tuning.get("spmv_block", 128))
        self.WS = int(tuning.get("spmv_warps", 4))
        self.BU = int(tuning.get("update_block", 256 if small else 1024))
        self.WU = int(tuning.get("update_warps", 4))
        # A program covers SUB blocks of rows in turn (fewer partials to reduce; but programs
        # that outlive the others leave the GPU part idle at the end, and loop-carried values
        # cost registers): one block unless `partials` asks for about that many programs.
        target = tuning.get("partials")
        self.SS = int(tuning.get("spmv_sub", 1 if target is None else max(1, _cdiv(n, self.BS * int(target)))))
        self.SU = int(tuning.get("update_sub", 1 if target is None else max(1, _cdiv(n, self.BU * int(target)))))
        self.Ps, self.Pu = max(1, _cdiv(n, self.BS * self.SS)), max(1, _cdiv(n, self.BU * self.SU))
        inline = tuning.get("inline")
        self.inline = bool(max(self.Ps, self.Pu) <= INLINE_MAX_PARTIALS if inline is None else inline)
        # Inline: one chunk holds every partial. Finish kernels: programs of CHUNK partials (at
        # most 256 of them: the last one sums their sums in one chunk of RB).
        parts = max(self.Ps, self.Pu)
        self.RB = _next_pow2(parts) if self.inline else 16
        self.CHUNK = max(int(tuning.get("reduce_block", max(1024, _next_pow2(_cdiv(parts, 256))))), 2)
        self.RB = max(16, _next_pow2(_cdiv(parts, self.CHUNK)), self.RB)
        self.Ga, self.Gb = _cdiv(self.Ps, self.CHUNK), _cdiv(self.Pu, self.CHUNK)
        self.WF = 8 if self.CHUNK >= 4096 else 4
        # Small systems (inline stages, a few microseconds per kernel): the streaming kernels are
        # programmatic dependent launches (Hopper and later): a kernel's programs start, and load
        # the matrix, while the previous kernel finishes.
        self.PDL = bool(tuning.get("pdl", True)) and self.inline and self.cuda and self.K.HAS_GDC \
            and torch.cuda.get_device_capability(dev)[0] >= 9
        self.pdl_kw = {"launch_pdl": True} if self.PDL else {}
        self.code_im = Status.INDEFINITE_MATRIX.code
        self.code_ip = Status.INDEFINITE_PRECONDITIONER.code
        e = lambda m: torch.zeros(m, dtype=dt, device=dev)  # noqa: E731
        self.r, self.ap, self.p0, self.p1 = e(n), e(n), e(n), e(n)
        # x: the kernels update the caller's iterate in place, not a copy of it (one n-vector less
        # at the peak: issue 7, <= 130 B/DOF for plain CG). The graphs capture its address, so a
        # later run may replay them only with its x at that same address; a run whose x lies
        # elsewhere (a re-solve while the first result is alive) gives the plan its own buffer
        # (copied in and out, as every run did before) and captures once more. No reference to
        # the caller's x is kept between runs.
        self.x: torch.Tensor | None = None
        self._x_own: torch.Tensor | None = None
        self._x_ptr: int | None = None
        self.z = e(n) if jacobi else self.r
        self.dinv = e(n) if jacobi else self.r  # not read without Jacobi
        self.pap_part = e(self.Ps)
        self.rr_part = e(self.Pu)
        self.rz_part = e(self.Pu) if jacobi else self.rr_part
        self.pap2, self.rr2 = e(self.Ga), e(self.Gb)
        self.rz2 = e(self.Gb) if jacobi else self.rr2
        self.counters = torch.zeros(2, dtype=torch.int32, device=dev)
        self.tol = torch.zeros((), dtype=dt, device=dev)
        self.state = torch.zeros(_HIST + max(self.k, 1), dtype=torch.float64, device=dev)
        self.use_graphs = bool(graphs) and self.cuda
        self.graphs: dict[int, Any] = {}
        self.graph_error: str | None = None
        self.capture_seconds = 0.0
        if self.cuda:
            self.snaps = [torch.zeros(self.state.numel(), dtype=torch.float64, pin_memory=True) for _ in range(2)]
            self.events = [torch.cuda.Event() for _ in range(2)]
        else:
            self.snaps = [self.state.clone() for _ in range(2)]
        self.setup_seconds = time.perf_counter() - t0

    # ----------------------------------------------------------------------------- launches
    def _iteration(self, g: int, j: int) -> None:
        """Launch iteration ``j`` of a block (``g``: iterations since the run started, for the
        parity of the ``p`` buffers)."""
        self._spmv(g, j)
        if not self.inline:
            self._alpha_finish()
        self._update()
        if not self.inline:
            self._beta_finish(j)

    def _spmv(self, g: int, j: int) -> Any:
        p_old, p_new = (self.p0, self.p1) if g % 2 == 0 else (self.p1, self.p0)
        beta_inline = self.inline and j > 0  # the first of a block reads beta from the state
        return self.K._spmv_kernel[(self.Ps,)](
            self.crow, self.col, self.val, self.z, p_old, p_new, self.ap, self.x, self.pap_part, self.state,
            self.rr_part, self.rz_part, self.tol, self.n, self.Pu, max(j - 1, 0), self.maxlen,
            BLOCK=self.BS, SUB=self.SS, KP=self.KP, KP2=self.KP2, KP3=self.KP3, LOOP=self.LOOP,
            EVICT=self.EVICT, BETA_INLINE=beta_inline, JACOBI=self.jacobi, RB=self.RB,
            CODE_INDEF_PRECONDITIONER=self.code_ip, PDL=self.PDL, num_warps=self.WS, **self.pdl_kw)

    def _alpha_finish(self) -> None:
        self.K._alpha_finish[(self.Ga,)](self.state, self.pap_part, self.Ps, self.pap2, self.counters[0:],
                                         CHUNK=self.CHUNK, RB=self.RB, CODE_INDEF_MATRIX=self.code_im,
                                         num_warps=self.WF)

    def _update(self) -> Any:
        return self.K._update_kernel[(self.Pu,)](
            self.r, self.z, self.dinv, self.ap, self.state, self.pap_part, self.rr_part, self.rz_part, self.n,
            self.Ps, BLOCK=self.BU, SUB=self.SU, ALPHA_INLINE=self.inline, JACOBI=self.jacobi, RB=self.RB,
            CODE_INDEF_MATRIX=self.code_im, PDL=self.PDL, num_warps=self.WU, **self.pdl_kw)

    def _beta_finish(self, j: int) -> None:
        self.K._beta_finish[(self.Gb,)](self.state, self.rr_part, self.rz_part, self.Pu, self.rr2, self.rz2,
                                        self.counters[1:], self.tol, j, CHUNK=self.CHUNK, RB=self.RB,
                                        JACOBI=self.jacobi, CODE_INDEF_PRECONDITIONER=self.code_ip,
                                        num_warps=self.WF)

    def _block(self, g0: int, m: int) -> None:
        for j in range(m):
            self._iteration(g0 + j, j)
        if self.inline:
            self._beta_finish(m - 1)  # the last iteration's beta stage (the others ran inline)

    def _graph(self, parity: int) -> Any:
        """The captured block of ``k`` iterations starting at this parity (None: launch eagerly)."""
        if not self.use_graphs or self.graph_error is not None:
            return None
        g = self.graphs.get(parity)
        if g is None:
            t0 = time.perf_counter()
            try:
                from slactl.engine.cuda_graphs import capture

                g, _ = capture(lambda: self._block(parity, self.k), self.device, capture_error_mode="thread_local")
                torch.cuda.synchronize(self.device)
            except Exception as exc:  # noqa: BLE001  fall back to eager launches
                self.graph_error = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"fused CG: CUDA graph capture failed ({self.graph_error}); launching "
                              "kernels eagerly", RuntimeWarning, stacklevel=4)
                try:
                    torch.cuda.synchronize(self.device)
                except Exception:  # noqa: BLE001
                    pass
                return None
            self.capture_seconds += time.perf_counter() - t0
            self.graphs[parity] = g
        return g

    # ---------------------------------------------------------------------------------- run
    def run(self, x: torch.Tensor, r: torch.Tensor, z: torch.Tensor, rz: torch.Tensor, active: torch.Tensor,
            code: torch.Tensor, tol: torch.Tensor, dinv: torch.Tensor | None, budget: int) -> dict[str, Any]:
        """Iterate from ``(x, r, z, rz)`` until the column stops or ``budget`` iterations ran;
        ``x`` is updated in place. Returns the run's counts, status and history (host values)."""
        if self.cuda:
            with torch.cuda.device(self.device):  # Triton launches on the current device
                return self._run(x, r, z, rz, active, code, tol, dinv, budget)
        return self._run(x, r, z, rz, active, code, tol, dinv, budget)

    def _x_buffer(self, x: torch.Tensor) -> torch.Tensor:
        """The buffer the kernels update: ``x`` itself where the captured graphs (if any) point at
        its address, else the plan's own buffer (see ``__init__``)."""
        if self._x_own is None and x.is_contiguous() and (not self.graphs or self._x_ptr == x.data_ptr()):
            self._x_ptr = x.data_ptr()
            return x
        if self._x_own is None:
            self.graphs.clear()  # captured with another address
            self._x_own = torch.empty(self.n, dtype=self.dtype, device=self.device)
        self._x_own.copy_(x)
        return self._x_own

    def _run(self, x: torch.Tensor, r: torch.Tensor, z: torch.Tensor, rz: torch.Tensor, active: torch.Tensor,
             code: torch.Tensor, tol: torch.Tensor, dinv: torch.Tensor | None, budget: int) -> dict[str, Any]:
        self.x = self._x_buffer(x)
        try:
            return self._iterate(x, r, z, rz, active, code, tol, dinv, budget)
        finally:
            self.x = None  # (never hold the caller's x between runs)

    def _iterate(self, x: torch.Tensor, r: torch.Tensor, z: torch.Tensor, rz: torch.Tensor, active: torch.Tensor,
                 code: torch.Tensor, tol: torch.Tensor, dinv: torch.Tensor | None, budget: int) -> dict[str, Any]:
        self.r.copy_(r)
        if self.jacobi:
            self.z.copy_(z)
            self.dinv.copy_(dinv)
        self.tol.copy_(tol.reshape(()))
        self.p0.zero_()  # p = z + 0 * p_old on the first iteration: p_old must be finite
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        self.state.zero_()
        # (the tolerance rides along in the state: the host reads it with the first block's state
        # instead of synchronizing for it here)
        self.state[:_TOL + 1].copy_(torch.stack([rz.reshape(()).to(torch.float64), zero,
                                                 active.reshape(()).to(torch.float64),
                                                 code.reshape(()).to(torch.float64), zero,
                                                 tol.reshape(()).to(torch.float64)]))
        tol_h = math.nan
        k = self.k
        launched = 0
        read = 0  # iterations of the blocks read so far
        predicted = math.inf  # iterations still needed, from the observed convergence rate
        inflight: list[tuple[int, int]] = []  # (iterations, snapshot slot)
        norms: list[float] = []
        count = 0
        last_active, last_code = 1.0, 0.0  # overwritten: budget > 0, so one block is always read
        checks = 0
        graphs_used = 0
        slot = 0
        stop = False
        while True:
            # Keep one block in flight beyond the one being read: the GPU runs it while the host
            # reads the previous block's state (past convergence, it is frozen and not counted).
            while not stop and launched < budget and len(inflight) < 2:
                if inflight and predicted <= launched - read:
                    break  # the block in flight will likely converge: do not pay for a frozen one
                m = min(k, budget - launched)
                # The first block of a new plan runs eagerly (it compiles the kernels, which
                # must not happen during a capture); later blocks, and every block of a re-solve
                # with a cached plan, replay the graph.
                parity = launched % 2
                graph = self._graph(parity) if (m == k and (launched > 0 or parity in self.graphs)) else None
                if graph is not None:
                    graph.replay()
                    graphs_used += 1
                else:
                    self._block(launched, m)
                if self.cuda:  # the block's state, copied to pinned memory in stream order
                    self.snaps[slot].copy_(self.state, non_blocking=True)
                    self.events[slot].record()
                else:
                    self.snaps[slot] = self.state.clone()
                inflight.append((m, slot))
                slot ^= 1
                launched += m
            if not inflight:
                break
            m, s = inflight.pop(0)
            read += m
            if self.cuda:
                self.events[s].synchronize()
            snap = self.snaps[s].tolist()
            tol_h = snap[_TOL]
            checks += 1
            if stop:
                continue  # a frozen block launched before the stop was seen: nothing to read
            new_count = int(round(snap[_A_COUNT]))
            ran = new_count - count  # iterations of this block in which the column was active
            norms.extend(snap[_HIST:_HIST + ran])
            count = new_count
            last_active, last_code = snap[_A_ACTIVE], snap[_A_CODE]
            if last_active <= 0:
                stop = True
            predicted = _predict(norms, tol_h)
        # x lags one iteration (the SpMV applies the previous iteration's update): add the last
        # iteration's alpha p (alpha is 0 when the column had stopped before it).
        p_last = self.p1 if (launched - 1) % 2 == 0 else self.p0
        # (self.x may be x itself: an elementwise op fully in place, the same arithmetic)
        torch.addcmul(self.x, p_last, self.state[_B_ALPHA:_B_ALPHA + 1].to(self.dtype), out=x)
        return {"iterations": count, "launched": launched, "norms": norms, "active": last_active > 0,
                "code": int(round(last_code)), "checks": checks, "graph_replays": graphs_used}


def _predict(norms: list[float], tol: float, window: int = 16) -> float:
    """Iterations until ``norm <= tol`` at the mean contraction of the last ``window`` iterations
    (inf when unknown or not contracting)."""
    if len(norms) < 2 or not tol > 0:
        return math.inf
    j0 = max(0, len(norms) - 1 - window)
    n0, n1 = norms[j0], norms[-1]
    if not (0 < n1 < n0) or not math.isfinite(n0):
        return math.inf
    if n1 <= tol:
        return 0.0
    rate = (n1 / n0) ** (1.0 / (len(norms) - 1 - j0))
    return math.log(tol / n1) / math.log(rate) if rate < 1 else math.inf


def _history(norms: list[Any], runs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The monitor's history (``[iterations + 1]``) from its list, where each fused run left
    ``None`` placeholders followed by its last norm (``runs``: the run's norms, that last one)."""
    parts: list[torch.Tensor] = []
    pending, i = 0, 0
    for v in norms:
        if v is None:
            pending += 1
        elif i < len(runs) and v is runs[i][1]:
            parts.append(runs[i][0][:pending + 1])
            i, pending = i + 1, 0
        else:
            parts.append(v.reshape(1))
    if pending:  # (a trimmed run: its first entries)
        parts.append(runs[i][0][:pending])
    return torch.cat(parts)


def _plan_for(A: SparseMatrix, jacobi: bool, k: int, graphs: bool, interpret: bool,
              tuning: dict[str, Any]) -> tuple[_Plan, bool]:
    """A cached plan for this matrix (same values / pattern tensors), or a new one. Returns
    ``(plan, cached)``; the caller holds ``plan.lock``."""
    key = (id(A.values), id(A.pattern.crow), id(A.pattern.col), A.dtype, str(A.device), jacobi, k, graphs,
           interpret, tuple(sorted(tuning.items())))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            plan, refs = hit
            if all(ref() is obj for ref, obj in zip(refs, (A.values, A.pattern.crow, A.pattern.col))) \
                    and plan.lock.acquire(blocking=False):
                _cache.move_to_end(key)
                return plan, True
    plan = _Plan(A, jacobi, k, graphs=graphs, interpret=interpret, tuning=tuning)
    plan.lock.acquire()

    def evict(_: Any, key: tuple = key) -> None:
        with _cache_lock:
            _cache.pop(key, None)

    refs = tuple(weakref.ref(t, evict) for t in (A.values, A.pattern.crow, A.pattern.col))
    with _cache_lock:
        if key not in _cache:  # (another thread may hold one for this key: keep theirs)
            _cache[key] = (plan, refs)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return plan, False


# ---------------------------------------------------------------------------------------- solve
def fused_cg(
    A: SparseMatrix,
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    preconditioner: Any = None,
    check_every: int | None = None,
    graphs: bool = True,
    interpret: bool = False,
    tuning: dict[str, Any] | None = None,
) -> KrylovResult:
    """CG with the fused kernels (see the module docstring); same arguments and result as
    :func:`~slactl.engine.krylov.cg` (no ``callback``).

    Parameters
    ----------
    check_every : int, optional
        Iterations per block: one host read and one graph replay per block (default 8, as the
        eager loop on an accelerator). At most ``2 * check_every - 1`` frozen iterations run past
        convergence (they are not counted).
    graphs : bool
        Capture the block in a CUDA graph (default); False launches the kernels eagerly.
    interpret : bool
        Allow CPU tensors: the kernels run under Triton's CPU interpreter, which must be on
        (``TRITON_INTERPRET=1`` before triton is imported). For tests; slow.
    tuning : dict, optional
        For benchmarks (``benchmarks/bench_fused_cg.py --tuning / --sweep``): ``spmv_block``,
        ``spmv_warps``, ``update_block``, ``update_warps`` (rows per block and warps of the two
        streaming kernels), ``spmv_sub``, ``update_sub`` (blocks per program, default 1) or
        ``partials`` (about that many programs), ``inline`` (force or forbid the inline scalar
        stages), ``unroll_max`` (rows longer than this run a loop over tiles), ``split`` (False: one
        padded power-of-2 tile per row instead of 2^k-wide tiles adding up to the row length),
        ``evict`` (evict-first hints on the matrix loads), ``pdl`` (False: no programmatic
        dependent launches), ``reduce_block`` (partials per program of the reduction kernels).

    Returns
    -------
    KrylovResult
        As :func:`~slactl.engine.krylov.cg`'s; ``info`` adds ``fused`` (True), ``cuda_graph``
        (blocks replayed from the graph), ``inline_reductions``, ``pdl``, ``plan_cached``, and
        ``timings`` adds ``setup`` (buffers + graph capture of this call; 0 when the plan was
        cached), ``iterate`` (the iteration loops, without the set-up, the initial and the final
        residual), ``before_iterate`` / ``after_iterate`` (this path's own work around them).

    Raises
    ------
    UsageError
        When the solve is outside the fused path's scope (:func:`unsupported_reason`).
    """
    from slactl.engine.krylov._loop import default_check_every, run_krylov

    if interpret and not interpreting():
        raise UsageError("interpret=True needs Triton's interpreter: set TRITON_INTERPRET=1 in the "
                         "environment before triton is imported")
    why = unsupported_reason(A, b, preconditioner, None, interpret=interpret)
    if why is not None:
        raise UsageError(f"the fused CG cannot run this solve: {why}; use cg(..., fused=False)")
    kind = _preconditioner_kind(preconditioner, A)
    k = default_check_every(A.device if not interpret else torch.device("cuda")) if check_every is None else int(check_every)
    if k < 1:
        raise UsageError(f"check_every must be at least 1, got {check_every}")
    tuning = dict(tuning or {})
    stats: dict[str, Any] = {"setup": 0.0, "iterate": 0.0, "before_iterate": 0.0, "after_iterate": 0.0,
                             "plan_cached": None, "graph_replays": 0, "cuda_graph_error": None,
                             "inline_reductions": None, "pdl": None}

    zero_start = [x0 is None]  # the driver's first x is zeros
    runs: list[tuple[torch.Tensor, torch.Tensor]] = []  # each run's norms (one tensor) and its last

    def core(op: Any, b: torch.Tensor, x: torch.Tensor, M: Any, mon: Any) -> None:
        t_core = time.perf_counter()
        # The start is the eager loop's own (one matvec, one preconditioner application), less
        # the matvec on the first run from x = 0: r = b - A 0 = b (only read below). (A matrix
        # with inf / NaN entries then stops on its first iteration rather than at the start.)
        r = b if zero_start[0] else b - op.matvec(x)
        zero_start[0] = False
        mon.begin(op.norm(r))
        z = M.apply(r)
        rz = op.dot(r, z).real
        mon.fail(rz <= 0, Status.INDEFINITE_PRECONDITIONER)
        budget = mon.iterations_left()
        if budget <= 0 or not bool(mon.active.all()):
            return  # converged at the start, a failure, or no budget: nothing to iterate
        plan, cached = _plan_for(A, kind == "jacobi", k, graphs, interpret, tuning)
        try:
            t_capture, t_run = plan.capture_seconds, time.perf_counter()
            stats["before_iterate"] += t_run - t_core
            out = plan.run(x, r, z, rz, mon.active, mon.code, mon.tol,
                           getattr(M, "inv_diag", None) if kind == "jacobi" else None, budget)
        finally:
            plan.lock.release()
        if stats["plan_cached"] is None:
            stats["plan_cached"] = cached
            stats["setup"] += 0.0 if cached else plan.setup_seconds
        stats["setup"] += plan.capture_seconds - t_capture
        t_done = time.perf_counter()
        stats["iterate"] += t_done - t_run - (plan.capture_seconds - t_capture)
        stats["graph_replays"] += out["graph_replays"]
        stats["cuda_graph_error"] = plan.graph_error
        stats["inline_reductions"] = plan.inline
        stats["pdl"] = plan.PDL
        mon.it += out["launched"]
        mon.syncs += out["checks"]
        if out["norms"]:
            # The monitor keeps one 0-d tensor per iteration and stacks them at the end: host
            # time per iteration, which shows at 10K DOF (a few microseconds per iteration). The
            # run's norms stay one tensor, the monitor gets placeholders and the last norm (all
            # that its checks read; the run adds exactly `iterations` entries, so its trimming
            # leaves them alone), and its history() puts the tensors back in their places.
            t = torch.tensor(out["norms"], dtype=mon.tol.dtype, device=mon.tol.device)
            runs.append((t, t[-1]))
            mon.norms.extend([None] * (t.numel() - 1))
            mon.norms.append(runs[-1][1])
            if "history" not in vars(mon):
                mon.history = lambda: _history(mon.norms, runs)
        mon.count = mon.count + out["iterations"]
        mon.code = torch.full_like(mon.code, out["code"])
        mon.active = torch.full_like(mon.active, out["active"])
        stats["after_iterate"] += time.perf_counter() - t_done

    res = run_krylov("cg", core, A, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter,
                     preconditioner=preconditioner, check_every=k, callback=None)
    res.info.update(fused=True, cuda_graph=stats["graph_replays"] > 0, graph_replays=stats["graph_replays"],
                    inline_reductions=stats["inline_reductions"], pdl=stats["pdl"],
                    plan_cached=stats["plan_cached"], cuda_graph_error=stats["cuda_graph_error"])
    res.timings["setup"] = stats["setup"]
    res.timings["iterate"] = stats["iterate"]  # the iteration loops alone (ends on a host sync)
    res.timings["before_iterate"] = stats["before_iterate"]  # initial residual, checks, plan look-up
    res.timings["after_iterate"] = stats["after_iterate"]  # handing the run's results to the driver
    return res
