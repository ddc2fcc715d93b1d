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

import time
from typing import Any, Callable

import torch

from slactl.engine.krylov.operator import LinearOperator, as_operator, check_system
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
    return torch.where(active, value, torch.zeros((), dtype=value.dtype, device=value.device))


class Monitor:
    """Per-column status, iteration counts and residual history of one solve (device-resident)."""

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
        self.it = 0
        self._go = self.active

    # ---------------------------------------------------------------- state updates (no sync)
    def _set(self, mask: torch.Tensor, status: Status) -> None:
        hit = self.active & mask
        self.code = torch.where(hit, torch.full_like(self.code, status.code), self.code)
        self.active = self.active & ~hit

    def _classify(self, rnorm: torch.Tensor) -> None:
        self._set(~torch.isfinite(rnorm), Status.NONFINITE)
        self._set(rnorm <= self.tol, Status.CONVERGED)

    def begin(self, r0norm: torch.Tensor) -> None:
        """Start a run from a residual of norm ``r0norm``: columns still RUNNING become active."""
        if not self.norms:
            self.norms.append(r0norm)
        self.active = self.code == RUNNING
        self._classify(r0norm)

    def recheck(self, rnorm: torch.Tensor) -> None:
        """Classify active columns by a freshly computed (true) residual norm; no history entry."""
        self._classify(rnorm)

    def iterations_left(self) -> int:
        return self.maxiter - self.it

    def start_iteration(self) -> torch.Tensor:
        """Count one iteration for every active column; return the active mask."""
        self.it += 1
        self._go = self.active
        self.count = self.count + self.active
        return self.active

    def fail(self, mask: torch.Tensor, status: Status) -> torch.Tensor:
        """Stop the active columns where ``mask`` holds with ``status``; return the new active mask."""
        self._set(mask, status)
        return self.active

    def record(self, rnorm: torch.Tensor) -> None:
        """Append this iteration's residual norm (frozen columns keep their last value)."""
        self.norms.append(torch.where(self._go, rnorm, self.norms[-1]))
        self._classify(rnorm)

    # ------------------------------------------------------------------- host checks (sync)
    def should_stop(self) -> bool:
        """At a check point (every ``check_every`` iterations, or at maxiter) synchronize once and
        say whether every column has stopped; call the callback there."""
        if self.it % self.check_every and self.it < self.maxiter:
            return False
        last = self.norms[-1]
        probe = torch.stack([self.active.any().to(last.dtype), last.max()]).tolist()
        if self.callback is not None:
            self.callback(self.it, probe[1])
        return not probe[0] or self.it >= self.maxiter

    def history(self) -> torch.Tensor:
        """``[iterations + 1, ...]``: trimmed to the last iteration in which a column was active."""
        hist = torch.stack(self.norms)
        last = int(self.count.max()) if self.count.numel() else 0
        return hist[: last + 1]


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
    if rtol < 0 or atol < 0:
        raise UsageError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    M = resolve_preconditioner(preconditioner, A)
    n = op.shape[0]
    maxiter = 10 * n if maxiter is None else int(maxiter)
    if maxiter < 0:
        raise UsageError(f"maxiter must be non-negative, got {maxiter}")
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
            true_norm = op.norm(b - op.matvec(x))
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
        info={k: v for k, v in options.items()},
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
