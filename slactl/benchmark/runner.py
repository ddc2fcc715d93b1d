"""The measuring loop of `slactl bench`: every (problem, size, solver), warm-up, median of repeats.

Each run gets a fresh copy of the matrix (a new pattern object: no cuDSS analysis, SpGEMM structure
or CSR view survives between runs), made outside the timed region but inside the memory
measurement; the clock is read after a device synchronization; the true relative residual of every
timed run is recomputed by SciPy (the worst is reported).
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from slactl.benchmark.measure import MemoryMeter, cg_bytes_per_iteration, clock, relative_residual, to_host
from slactl.benchmark.problems import Case, build_case, check_problem
from slactl.benchmark.solvers import Solver
from slactl.errors import BackendUnavailableError, SlactlError, UsageError


@dataclass
class Config:
    problems: list[str]
    sizes: list[int]
    solvers: list[Solver]
    device: str = "cpu"
    dtype: torch.dtype = torch.float64
    rtol: float = 1e-8
    maxiter: int | None = None
    repeat: int = 3
    warmup: int = 1
    max_seconds: float | None = None  # a run longer than this: no more repeats, no larger sizes
    raise_errors: bool = False  # re-raise a solver's unexpected exception instead of recording it

    def __post_init__(self) -> None:
        for p in self.problems:
            check_problem(p)
        if self.repeat < 1 or self.warmup < 0:
            raise UsageError(f"--repeat must be >= 1 and --warmup >= 0, got {self.repeat} and {self.warmup}")


@dataclass
class Row:
    """One (problem, size, solver): medians over the timed runs (see the module docstring)."""

    problem: str
    requested_dof: int
    n: int
    nnz: int
    solver: str
    kind: str
    device: str
    status: str  # "ok", "not converged", "skipped", "failed"
    reason: str = ""
    ran: str = ""
    setup_seconds: float | None = None
    solve_seconds: float | None = None
    total_seconds: float | None = None
    other_seconds: float | None = None  # total - setup - solve: dispatch, structure checks, copies
    iterations: int | None = None
    relres: float | None = None
    converged: bool | None = None
    peak_bytes: int | None = None
    peak_bytes_per_dof: float | None = None
    memory_basis: str | None = None
    bytes_per_iteration: int | None = None
    bandwidth_gbs: float | None = None
    vs_best_peer: float | None = None
    best_peer: str | None = None
    runs: int = 0
    totals: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Sample:
    total: float
    outcome: Any
    relres: float
    peak: int | None


def _one_run(solver: Solver, case: Case, cfg: Config, basis: str) -> _Sample:
    dev = solver.device_for(case)
    meter = MemoryMeter(basis)
    meter.start()
    state = solver.prepare(case)
    t0 = clock(dev)
    out = solver.run(state, case, cfg.rtol, cfg.maxiter)
    total = clock(dev) - t0
    peak = meter.peak()
    x = to_host(out.x)
    out.x = None
    del state
    rr = relative_residual(case.check, x, case.b_host.astype("float64"))
    return _Sample(total, out, rr, peak)


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _summarize(row: Row, samples: list[_Sample], case: Case, basis: str, solver: Solver) -> None:
    mid = sorted(samples, key=lambda s: s.total)[(len(samples) - 1) // 2]  # the median run (lower median)
    row.runs = len(samples)
    row.totals = [s.total for s in samples]
    row.total_seconds = statistics.median(row.totals)
    row.setup_seconds = _median([s.outcome.setup_seconds for s in samples])
    row.solve_seconds = _median([s.outcome.solve_seconds for s in samples])
    if row.setup_seconds is not None or row.solve_seconds is not None:
        row.other_seconds = row.total_seconds - (row.setup_seconds or 0.0) - (row.solve_seconds or 0.0)
    row.iterations = mid.outcome.iterations
    row.ran = mid.outcome.ran
    row.relres = max(s.relres for s in samples)
    row.converged = all(s.outcome.converged for s in samples)
    row.status = "ok" if row.converged else "not converged"
    peaks = [s.peak for s in samples if s.peak is not None]
    if peaks:
        resident = case.vector_bytes() + (case.matrix_bytes() if basis == "host" else 0)
        row.peak_bytes = max(peaks) + resident
        row.peak_bytes_per_dof = row.peak_bytes / case.n
    row.memory_basis = basis
    o = mid.outcome
    if o.method == "cg" and o.preconditioner is not None:
        row.bytes_per_iteration = cg_bytes_per_iteration(case.n, case.nnz, case.value_bytes, case.index_bytes,
                                                         o.preconditioner)
        if row.bytes_per_iteration and row.iterations and row.solve_seconds:
            row.bandwidth_gbs = row.bytes_per_iteration * row.iterations / row.solve_seconds / 1e9


def measure(solver: Solver, case: Case, cfg: Config, progress: Callable[..., None] | None = None) -> Row:
    """Warm-up, then ``cfg.repeat`` timed runs of ``solver`` on ``case`` (fewer past ``max_seconds``)."""
    dev = solver.device_for(case)
    row = Row(case.problem, case.requested_dof, case.n, case.nnz, solver.name, solver.kind, dev, "skipped")
    reason = solver.unavailable(case)
    if reason is not None:
        row.reason = reason
        return row
    basis = "cuda" if dev == "cuda" else "host"
    samples: list[_Sample] = []
    total_runs = cfg.warmup + cfg.repeat
    try:
        for i in range(total_runs):
            if progress is not None:
                progress("run", problem=case.problem, n=case.n, solver=solver.name,
                         phase="warm-up" if i < cfg.warmup else f"run {i - cfg.warmup + 1}/{cfg.repeat}")
            sample = _one_run(solver, case, cfg, basis)
            warm = i < cfg.warmup
            if not warm:
                samples.append(sample)
            slow = cfg.max_seconds is not None and sample.total > cfg.max_seconds
            if not sample.outcome.converged or slow:
                if warm:
                    samples.append(sample)
                    row.reason = "figures from the warm-up run only"
                if slow:
                    row.reason = (row.reason + "; " if row.reason else "") + \
                        f"a run took {sample.total:.1f} s > --max-seconds {cfg.max_seconds:g}: no more repeats"
                break
    except BackendUnavailableError as exc:
        row.reason = str(exc)
        return row
    except Exception as exc:  # noqa: BLE001 - one failing solver must not end a long benchmark
        if cfg.raise_errors:
            raise
        row.status = "failed"
        kind = "" if isinstance(exc, SlactlError) else f"{type(exc).__name__}: "
        row.reason = (kind + str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:200]
        return row
    finally:
        gc.collect()
    _summarize(row, samples, case, basis, solver)
    return row


def _ratios(rows: list[Row]) -> None:
    """vs_best_peer = best peer's total / this total (> 1: faster than every peer) per (problem, n)."""
    groups: dict[tuple[str, int], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.problem, r.n), []).append(r)
    for group in groups.values():
        peers = [r for r in group if r.kind == "peer" and r.status == "ok" and r.total_seconds]
        if not peers:
            continue
        best = min(peers, key=lambda r: r.total_seconds)
        for r in group:
            if r.status in ("ok", "not converged") and r.total_seconds:
                r.vs_best_peer = best.total_seconds / r.total_seconds
                r.best_peer = best.solver


def run_benchmark(cfg: Config, progress: Callable[..., None] | None = None) -> list[Row]:
    """Every (problem, size, solver) of ``cfg``; ``progress(event, **info)`` hears "build", "run", "row"."""
    rows: list[Row] = []
    too_slow: dict[tuple[str, str], str] = {}
    for problem in cfg.problems:
        for dof in cfg.sizes:
            if progress is not None:
                progress("build", problem=problem, dof=dof)
            t0 = time.perf_counter()
            case = build_case(problem, dof, cfg.device, cfg.dtype)
            build_seconds = time.perf_counter() - t0
            for solver in cfg.solvers:
                key = (problem, solver.name)
                if key in too_slow:
                    row = Row(problem, dof, case.n, case.nnz, solver.name, solver.kind, solver.device_for(case),
                              "skipped", reason=too_slow[key])
                else:
                    row = measure(solver, case, cfg, progress)
                    if cfg.max_seconds is not None and row.totals and max(row.totals) > cfg.max_seconds:
                        too_slow[key] = f"skipped: took {max(row.totals):.1f} s at n = {case.n:,} (> --max-seconds)"
                rows.append(row)
                if progress is not None:
                    progress("row", row=row, build_seconds=build_seconds)
            del case
            gc.collect()
            if cfg.device == "cuda":
                torch.cuda.empty_cache()
    _ratios(rows)
    return rows
