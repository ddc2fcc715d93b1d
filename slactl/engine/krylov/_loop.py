"""The machinery every Krylov method shares: per-column bookkeeping on the device and the driver.

Per-column state lives in device tensors (``active``, status ``code``, iteration ``count``), so an
iteration never synchronizes with the host: a column that meets the tolerance (or fails) is frozen
by zeroing the coefficients that would update it (``torch.where(active, c, 0)``), which keeps its
iterate exactly at the first iteration that converged. The host looks at the state only every
``check_every`` iterations, with one synchronization, and the history is trimmed to the last
iteration in which some column was still active.

The driver wraps a method's core: it checks the system, runs the core, recomputes the true residual
``||b - A x||``, restarts the core from its iterate (a few times) where the recurrence claimed
convergence but the true residual disagrees or the method broke down, and builds the result.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from slactl.engine.krylov.operator import as_operator, check_system
from slactl.engine.krylov.result import KrylovResult, Status, overall_status
from slactl.errors import UsageError

RUNNING = 0
# Restarts from the current iterate when the true residual disagrees with the recurrence, or after
# a breakdown. Each costs one matvec and, in practice, a handful of iterations.
_MAX_RECOVERIES = 3


def default_check_every(device: torch.device) -> int:
    """1 on the CPU (a check is free there); 8 on an accelerator (one host sync per 8 iterations)."""
    return 1 if device.type == "cpu" else 8


def masked(active: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` where the column is active, else 0 (a NaN in an inactive column never leaks)."""
    return torch.where(active, value, 0.0)


class Monitor:
    """Per-column status, iteration counts and residual history of one solve (device-resident).

    Per iteration it costs a handful of tiny kernels and no synchronization: ``record`` stores the
    norm and clears ``active`` where ``rnorm > tol`` fails (met, or NaN); *why* a column stopped
    there is decided later from its last norm (:meth:`resolve`). Failures (``fail``) set their
    status at once.
    """

    def __init__(
        self,
        tol: torch.Tensor,
        maxiter: int,
        check_every: int,
        callback: Callable[[int, float], Any] | None,
    ):
        self.tol = tol
        self.maxiter = maxiter
        self.check_every = max(1, int(check_every))
        self.callback = callback
        self.code = torch.full(tol.shape, RUNNING, dtype=torch.int8, device=tol.device)
        self.active = torch.ones(tol.shape, dtype=torch.bool, device=tol.device)
        self.count = torch.zeros(tol.shape, dtype=torch.int64, device=tol.device)
        self.norms: list[torch.Tensor] = []
        self.it = 0  # iterations executed (the maxiter budget), including frozen ones
        self._go = self.active
        self._next_check = 1
        self._last_check: tuple[int, float] | None = None
        self.syncs = 0

    # ---------------------------------------------------------------- state updates (no sync)
    def _classify(self, rnorm: torch.Tensor) -> None:
        """Stop active columns whose norm met the tolerance (CONVERGED) or is not finite."""
        hit = self.active & ~(rnorm > self.tol)
        code = torch.where(rnorm <= self.tol, Status.CONVERGED.code, Status.NONFINITE.code)
        self.code = torch.where(hit, code.to(self.code.dtype), self.code)
        self.active = self.active ^ hit

    def begin(self, r0norm: torch.Tensor) -> None:
        """Start a run from a residual of norm ``r0norm``: columns still RUNNING become active."""
        if not self.norms:
            self.norms.append(r0norm)
        self._run_start = (len(self.norms), self.count.clone())
        self.active = self.code == RUNNING
        self._classify(r0norm)

    def end_run(self) -> None:
        """Drop the history of the iterations run after every column had stopped (between the
        last convergence and the check point that saw it), then :meth:`resolve` the statuses."""
        start, count0 = self._run_start
        used = int((self.count - count0).max()) if self.count.numel() else 0
        del self.norms[start + used :]
        self.resolve()

    def recheck(self, rnorm: torch.Tensor) -> None:
        """Classify active columns by a freshly computed (true) residual norm; no history entry."""
        self.resolve()
        self._classify(rnorm)

    def iterations_left(self) -> int:
        return self.maxiter - self.it

    def start_iteration(self) -> torch.Tensor:
        """Count one iteration for every active column; return the active mask."""
        self.it += 1
        self._go = self.active
        self.count += self.active
        return self.active

    def fail(self, mask: torch.Tensor, status: Status) -> torch.Tensor:
        """Stop the active columns where ``mask`` holds with ``status``; return the new active mask."""
        hit = self.active & mask
        self.code = torch.where(hit, status.code, self.code)
        self.active = self.active ^ hit
        return self.active

    def record(self, rnorm: torch.Tensor) -> None:
        """Append this iteration's residual norm (frozen columns keep their last value) and stop
        the columns where ``rnorm <= tol`` or ``rnorm`` is NaN (why: see :meth:`resolve`)."""
        self.norms.append(torch.where(self._go, rnorm, self.norms[-1]))
        self.active = self.active & (rnorm > self.tol)

    def resolve(self) -> None:
        """Give the columns that ``record`` stopped their status from their last recorded norm."""
        last = self.norms[-1]
        stopped = (self.code == RUNNING) & ~self.active
        code = torch.where(last <= self.tol, Status.CONVERGED.code, Status.NONFINITE.code)
        self.code = torch.where(stopped, code.to(self.code.dtype), self.code)

    # ------------------------------------------------------------------- host checks (sync)
    def should_stop(self) -> bool:
        """At a check point synchronize once and say whether every column has stopped; call the
        callback there.

        Check points come every ``check_every`` iterations at most, sooner when the observed
        convergence rate predicts that the tolerance will be met earlier: the iterations run past
        convergence (frozen, but paid for) stay few even with an expensive preconditioner.
        """
        if self.it < self._next_check and self.it < self.maxiter:
            return False
        last = self.norms[-1]
        ratio = torch.where(self.active, last / self.tol, 0.0).max()
        any_active, worst, ratio = torch.stack(
            [self.active.any().to(last.dtype), last.max(), ratio.to(last.dtype)]
        ).tolist()
        self.syncs += 1
        if self.callback is not None:
            self.callback(self.it, worst)
        self._next_check = self.it + self._gap(ratio)
        return not any_active or self.it >= self.maxiter

    def _gap(self, ratio: float) -> int:
        """Iterations to the next check: the predicted iterations to convergence, in [1, check_every]."""
        prev, self._last_check = self._last_check, (self.it, ratio)
        if self.check_every == 1 or prev is None or not (1.0 < ratio < float("inf")):
            return self.check_every if prev is not None else 1
        steps, before = self.it - prev[0], prev[1]
        if not (ratio < before) or steps <= 0:
            return self.check_every
        rate = (ratio / before) ** (1.0 / steps)  # contraction per iteration
        predicted = math.ceil(math.log(ratio) / -math.log(rate))
        return max(1, min(self.check_every, predicted))

    def history(self) -> torch.Tensor:
        """``[iterations + 1, ...]``: the norms of the iterations in which some column was active."""
        return torch.stack(self.norms)


class _Identity:
    name = "none"

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        return r


class _CallablePreconditioner:
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn
        self.name = getattr(fn, "__name__", "callable")

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        return self.fn(r)


def resolve_preconditioner(preconditioner: Any, A: Any) -> Any:
    """``None`` -> identity; a name -> :func:`make_preconditioner` on ``A``; an object with
    ``apply`` -> itself; a callable -> wrapped."""
    if preconditioner is None:
        return _Identity()
    if isinstance(preconditioner, str):
        from slactl.engine.preconditioners import make_preconditioner

        matrix = getattr(A, "matrix", A)
        return make_preconditioner(preconditioner, matrix)
    if hasattr(preconditioner, "apply"):
        return preconditioner
    if callable(preconditioner):
        return _CallablePreconditioner(preconditioner)
    raise UsageError(
        f"preconditioner must be None, a name, an object with apply(r) or a callable, got "
        f"{type(preconditioner).__name__}"
    )


def check_stopping_rule(rtol: float, atol: float, maxiter: int | None) -> None:
    """Refuse a tolerance that is negative or not a number, and a negative iteration limit."""
    import math

    for name, value in (("rtol", rtol), ("atol", atol)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise UsageError(f"{name} must be a finite number >= 0, got {value} (--{name} on the command line)")
    if maxiter is not None and int(maxiter) < 0:
        raise UsageError(f"maxiter must be non-negative, got {maxiter}")


def run_krylov(
    method: str,
    core: Callable[..., None],
    A: Any,
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None,
    rtol: float,
    atol: float,
    maxiter: int | None,
    preconditioner: Any,
    check_every: int | None,
    callback: Callable[[int, float], Any] | None,
    retry: tuple[Status, ...] = (Status.CONVERGED, Status.BREAKDOWN),
    **options: Any,
) -> KrylovResult:
    """Run ``core(op, b, x, M, monitor, **options)`` (which updates ``x`` in place) with restarts
    from the iterate where the true residual disagrees with the recurrence, and build the result."""
    start = time.perf_counter()
    op = as_operator(A, like=b if torch.is_tensor(b) else None)
    check_system(op, b, x0)
    check_stopping_rule(rtol, atol, maxiter)
    M = resolve_preconditioner(preconditioner, A)
    n = op.shape[0]
    maxiter = 10 * n if maxiter is None else int(maxiter)
    check_every = default_check_every(op.device) if check_every is None else check_every
    with torch.no_grad():
        b = b.detach()
        x = torch.zeros_like(b) if x0 is None else x0.detach().clone()
        b_norm = op.norm(b)
        tol = torch.clamp(rtol * b_norm, min=atol)
        mon = Monitor(tol, maxiter, check_every, callback)
        recoveries = 0
        while True:
            core(op, b, x, M, mon, **options)
            mon.end_run()
            true_norm = op.norm(op.residual(b, x))  # (in place where it can: one n-vector)
            ok = true_norm <= tol
            again = ~ok & _isin(mon.code, retry)
            if recoveries >= _MAX_RECOVERIES or mon.iterations_left() <= 0 or not bool(again.any()):
                break
            mon.code = torch.where(again, torch.full_like(mon.code, RUNNING), mon.code)
            recoveries += 1
        code = _final_codes(mon.code, ok)
        codes = code.reshape(-1).tolist()
        history = mon.history()
    elapsed = time.perf_counter() - start
    column_status = tuple(Status.from_code(c) for c in codes)
    iterations = history.shape[0] - 1
    return KrylovResult(
        x=x,
        status=overall_status(column_status),
        iterations=iterations,
        residual_norms=history,
        true_residual_norm=true_norm,
        tolerance=tol,
        b_norm=b_norm,
        method=method,
        preconditioner=getattr(M, "name", type(M).__name__),
        column_status=column_status,
        recoveries=recoveries,
        timings={"solve": elapsed, "per_iteration": elapsed / max(iterations, 1)},
        info={"iterations_run": mon.it, "host_syncs": mon.syncs, **options},
    )


def _isin(code: torch.Tensor, statuses: tuple[Status, ...]) -> torch.Tensor:
    out = torch.zeros_like(code, dtype=torch.bool)
    for s in statuses:
        out = out | (code == s.code)
    return out


def _final_codes(code: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """The true residual decides: met -> CONVERGED; claimed but not met -> INACCURATE; still
    running (maxiter) -> MAX_ITERATIONS; other failures keep their status."""
    full = lambda s: torch.full_like(code, s.code)  # noqa: E731
    out = torch.where(code == RUNNING, full(Status.MAX_ITERATIONS), code)
    out = torch.where(out == Status.CONVERGED.code, full(Status.INACCURATE), out)
    return torch.where(ok, full(Status.CONVERGED), out)
