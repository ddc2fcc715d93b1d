"""What `slactl bench` writes: the machine, a markdown section for RESULTS.md, JSON and a plot."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from slactl.benchmark.measure import BANDWIDTH_MODEL, MEMORY_MODELS
from slactl.benchmark.runner import Config, Row


def _version(*dists: str) -> str | None:
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _gpus() -> list[str]:
    """GPU names from nvidia-smi (no CUDA context needed); torch's name where nvidia-smi is missing."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def machine(device: str) -> dict[str, Any]:
    """Where and with what the benchmark ran."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "memory_gib": _memory_gib(),
        "os": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "numpy": _version("numpy"), "scipy": _version("scipy"), "pyamg": _version("pyamg"),
        "cupy": _version("cupy-cuda13x", "cupy-cuda12x", "cupy"), "nvmath_python": _version("nvmath-python"),
        "load_average_start": load,
    }
    if device == "cuda":
        info["gpus"] = _gpus()
        info["torch_cuda"] = torch.version.cuda
    return info


def machine_line(m: dict[str, Any]) -> str:
    parts = []
    if m.get("gpus"):
        parts.append(f"{m['gpus'][0]}" + (f" (and {len(m['gpus']) - 1} more)" if len(m["gpus"]) > 1 else ""))
    mem = f", {m['memory_gib']:.0f} GiB RAM" if m.get("memory_gib") else ""
    parts.append(f"{m['cpu_count']} CPU cores ({m['cpu']}){mem}, {m['os']}")
    soft = [f"Python {m['python']}", f"torch {m['torch']} ({m['torch_threads']} threads)"]
    soft += [f"{k.replace('_', '-')} {m[k]}" for k in ("numpy", "scipy", "pyamg", "cupy", "nvmath_python") if m.get(k)]
    return "; ".join(parts) + ". " + ", ".join(soft) + "."


# ------------------------------------------------------------------------------------ formats
def _s(t: float | None) -> str:
    if t is None:
        return ""
    return f"{t:.4f}" if t < 10 else f"{t:.2f}"


def cells(r: Row) -> dict[str, str]:
    """A row's figures as short strings (shared by the rich table and the markdown)."""
    ok = r.status in ("ok", "not converged")
    note = r.ran if ok else f"{r.status}: {r.reason}"
    if ok and r.status != "ok":
        note = f"NOT CONVERGED; {note}"
    if ok and r.reason:
        note += f" ({r.reason})"
    return {
        "problem": r.problem, "dof": f"{r.n:,}", "solver": r.solver,
        "setup": _s(r.setup_seconds) if ok else "", "solve": _s(r.solve_seconds) if ok else "",
        "total": _s(r.total_seconds) if ok else "",
        "iterations": "" if not ok else ("direct" if r.iterations is None else str(r.iterations)),
        "relres": f"{r.relres:.1e}" if r.relres is not None else "",
        "bytes_per_dof": f"{r.peak_bytes_per_dof:.0f}" if r.peak_bytes_per_dof is not None else "",
        "gbs": f"{r.bandwidth_gbs:.1f}" if r.bandwidth_gbs is not None else "",
        "vs_peer": f"{r.vs_best_peer:.2f}x" if r.vs_best_peer is not None else "",
        "note": note,
    }


COLUMNS = [("problem", "problem"), ("dof", "DOF"), ("solver", "solver"), ("setup", "setup (s)"),
           ("solve", "solve (s)"), ("total", "total (s)"), ("iterations", "iterations"), ("relres", "true relres"),
           ("bytes_per_dof", "peak B/DOF"), ("gbs", "GB/s"), ("vs_peer", "vs best peer"), ("note", "what ran / note")]


def definitions(cfg: Config) -> list[str]:
    bases = sorted({b for b in ("cuda", "host") if b == "host" or cfg.device == "cuda"})
    return [
        f"b = A @ ones, rtol {cfg.rtol:g} (||b - A x|| <= rtol ||b||), {str(cfg.dtype).replace('torch.', '')}; "
        f"DOF = unknowns. Times: median of {cfg.repeat} run(s) after {cfg.warmup} warm-up run(s), each run on a "
        "fresh copy of the matrix (no pattern cache survives between runs), clock read after a device "
        "synchronization. total = wall clock of the whole call (setup + solve + dispatch and structure "
        "checks); setup / solve as the solver reports them (slactl: SolveResult.setup_seconds / solve_seconds; "
        "pyamg: hierarchy / CG; cupyx and torch peers: Jacobi diagonal / CG; spsolve: one call)"
        + ("; on CUDA slactl's set-up timer does not synchronize, so set-up kernels still queued when it "
           "returns are counted in solve (total is exact)." if cfg.device == "cuda" else "."),
        "true relres = ||b - A x|| / ||b|| recomputed by SciPy on the host in float64 (worst timed run).",
        *[f"peak B/DOF ({b}): {MEMORY_MODELS[b]}." for b in bases],
        f"GB/s: {BANDWIDTH_MODEL}.",
        "vs best peer = (fastest converged peer's total) / (this total), per problem and size: > 1 is faster.",
    ]


def markdown(rows: list[Row], cfg: Config, m: dict[str, Any], command: str) -> str:
    """A dated section for benchmarks/RESULTS.md."""
    problems = ", ".join(cfg.problems)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    lines = [f"## slactl bench: {problems} on {cfg.device} ({m['date'][:10]})", "",
             f"Date: {m['date']}. Machine: {machine_line(m)}"]
    if m.get("load_average_start") is not None and load_end is not None:
        # The start figure is the machine before this benchmark; the end one includes its own threads.
        busy = m["load_average_start"] > 0.5 * (m["cpu_count"] or 1)
        lines[-1] += (f" Load average (1 min) at start / end: {m['load_average_start']:.2f} / {load_end:.2f} (the end "
                      f"figure includes this benchmark){'; other processes were running at the start' if busy else ''}.")
    lines += [f"Command: `{command}`", ""]
    lines += [f"- {d}" for d in definitions(cfg)] + [""]
    lines.append("| " + " | ".join(h for _, h in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for r in rows:
        c = cells(r)
        lines.append("| " + " | ".join(c[k].replace("|", "\\|") for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def append_markdown(path: Path, text: str) -> None:
    """Append ``text`` as a new section at the end of ``path`` (a new file gets a heading), whole
    or not at all, without losing a section another process appends at the same time.

    The file is locked (``flock``) and its end read under the lock, so concurrent appends queue
    instead of overwriting each other (a copy-and-rename would keep only the last one). The section
    goes out in one ``write`` on an ``O_APPEND`` descriptor, and a write that fails or stops short
    (a full disk, an interrupt) is cut back to the old length: never half a section."""
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size == 0:
            sep = "# Benchmark results\n\n"
        else:
            with open(path, "rb") as f:  # the last two bytes: how many newlines the file ends with
                f.seek(max(size - 2, 0))
                tail = f.read()
            sep = "" if tail.endswith(b"\n\n") else ("\n" if tail.endswith(b"\n") else "\n\n")
        data = (sep + text).encode()
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "No space left on device (short write)", str(path))
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)  # (releases the lock)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN and infinity as None (JSON null), in nested dicts, lists and tuples:
    JSON has no such numbers, and json.dumps would write ``NaN``, which strict readers refuse. The
    one copy: every ``--json`` output of the CLI goes through it too (slactl.cli.output)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(rows: list[Row], cfg: Config, m: dict[str, Any], command: str) -> dict[str, Any]:
    return json_safe({
        "command": command, "machine": m, "device": cfg.device, "dtype": str(cfg.dtype).replace("torch.", ""),
        "rtol": cfg.rtol, "repeat": cfg.repeat, "warmup": cfg.warmup, "problems": cfg.problems, "sizes": cfg.sizes,
        "solvers": [s.name for s in cfg.solvers], "definitions": definitions(cfg),
        "rows": [r.to_dict() for r in rows],
    })


def plot(rows: list[Row], cfg: Config, path: Path, m: dict[str, Any]) -> None:
    """Total time vs DOF per solver, log-log, one panel per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = cfg.problems
    fig, axes = plt.subplots(1, len(problems), figsize=(6.4 * len(problems), 4.8), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for s in cfg.solvers:
            pts = sorted((r.n, r.total_seconds) for r in rows
                         if r.problem == problem and r.solver == s.name and r.status == "ok" and r.total_seconds)
            if pts:
                ax.loglog(*zip(*pts), marker="o", linestyle="-" if s.kind == "slactl" else "--",
                          label=f"{s.name}{'' if s.kind == 'slactl' else ' (peer)'}")
        ax.set_xlabel("DOF")
        ax.set_ylabel("time to solution, setup included (s)")
        ax.set_title(f"{problem}, {cfg.device}, rtol {cfg.rtol:g}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    where = m["gpus"][0].split(",")[0] if m.get("gpus") else f"{m['cpu_count']} CPU cores"
    fig.suptitle(f"slactl bench ({where}, torch {m['torch']}, {m['date'][:10]})", fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
