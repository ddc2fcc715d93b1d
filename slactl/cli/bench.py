"""`slactl bench`: time slactl's solvers and their peers on generated problems, in one process."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from slactl.cli.main import app
from slactl.cli.output import echo_json
from slactl.cli.solve import Device, Dtype, _device

DEFAULT_SOLVERS = "auto,cg+jacobi,pyamg,cupyx-cg+jacobi"


def _command(problems: list[str], sizes: str, solvers: str, device: Device, dtype: Dtype, rtol: float,
             maxiter: Optional[int], repeat: int, warmup: int, max_seconds: Optional[float], json_output: bool,
             append: Optional[Path], plot: Optional[Path]) -> str:
    """The command as run, every option written out (defaults included), so it reproduces the section."""
    args = ["slactl", "bench", *problems, "--sizes", sizes, "--solvers", solvers, "--device", device.value,
            "--dtype", dtype.value, "--rtol", f"{rtol:g}", "--repeat", str(repeat), "--warmup", str(warmup)]
    if maxiter is not None:
        args += ["--maxiter", str(maxiter)]
    if max_seconds is not None:
        args += ["--max-seconds", f"{max_seconds:g}"]
    if json_output:
        args.append("--json")
    if append is not None:
        args += ["--append", str(append)]
    if plot is not None:
        args += ["--plot", str(plot)]
    return shlex.join(args)


@app.command()
def bench(
    problems: Optional[List[str]] = typer.Argument(None, help="poisson2d, poisson3d or any gallery problem (`slactl gallery`); default poisson2d."),
    sizes: str = typer.Option("1000000", "--sizes", help="Comma-separated DOF counts (unknowns; 250k, 1M, 4e6 work); the gallery size nearest to each is used."),
    solvers: str = typer.Option(DEFAULT_SOLVERS, "--solvers", help=(
        "Comma-separated: auto, direct, a backend (superlu, cudss, cupyx, torch), METHOD[+PRECONDITIONER] "
        "(cg+jacobi, cg+amg, cg+sa-amg...; cg alone is unpreconditioned), or a peer: scipy-spsolve, scipy-cg, "
        "pyamg, cupyx-cg, cupyx-cg+jacobi, torch-cg, torch-cg+jacobi, torch-spsolve.")),
    device: Device = typer.Option(Device.auto, help="Where slactl (and the torch/cupyx peers) solve; SciPy and pyamg always run on the host."),
    dtype: Dtype = typer.Option(Dtype.float64, help="Floating-point type."),
    rtol: float = typer.Option(1e-8, help="Relative tolerance of every iterative solver: ||b - A x|| <= rtol ||b||."),
    maxiter: Optional[int] = typer.Option(None, help="Iteration limit (default 10 n, slactl's)."),
    repeat: int = typer.Option(3, help="Timed runs per solver; the median is reported."),
    warmup: int = typer.Option(1, help="Untimed runs before them."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="A run longer than this ends that solver's repeats and skips it at larger sizes."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    append: Optional[Path] = typer.Option(None, "--append", help="Append a dated markdown section to this file (e.g. benchmarks/RESULTS.md)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a log-log plot of time vs DOF per solver (PNG, SVG, PDF)."),
) -> None:
    """Benchmark solvers: setup, solve and total time, iterations, true relative residual, peak bytes/DOF, GB/s, ratio to the best peer (exit 2 on an unknown problem or solver)."""
    import torch

    from slactl.benchmark import Config, parse_sizes, parse_solvers, run_benchmark
    from slactl.benchmark import report
    from slactl.cli.main import _state

    problems = list(problems or ["poisson2d"])
    # The outputs are checked before the (possibly hours long) run, not after it.
    if append is not None:
        _check_output(append, "--append", create_parents=False)
    if plot is not None:
        _check_plot(plot)
    cfg = Config(problems, parse_sizes(sizes), parse_solvers(solvers), device=_device(device),
                 dtype=getattr(torch, dtype.value), rtol=rtol, maxiter=maxiter, repeat=repeat, warmup=warmup,
                 max_seconds=max_seconds, raise_errors=_state["debug"])
    command = _command(problems, sizes, solvers, device, dtype, rtol, maxiter, repeat, warmup, max_seconds,
                       json_output, append, plot)
    machine = report.machine(cfg.device)
    # A wide table: where the output is not a terminal (a log, a pipe), do not fold it at 80 columns.
    stream = sys.stderr if json_output else sys.stdout
    console = Console(stderr=json_output, highlight=False, width=None if stream.isatty() else 220)
    total = len(cfg.problems) * len(cfg.sizes) * len(cfg.solvers)
    progress = Progress(TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                        TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task("starting", total=total)

    def hear(event: str, **info) -> None:
        if event == "build":
            progress.update(task, description=f"building {info['problem']} at {info['dof']:,} DOF")
        elif event == "run":
            progress.update(task, description=f"{info['problem']} n={info['n']:,} {info['solver']}: {info['phase']}")
        elif event == "row":
            progress.advance(task)
            c = report.cells(info["row"])
            if info["row"].status in ("ok", "not converged"):
                progress.console.print(f"  {c['problem']} {c['dof']:>12} {c['solver']:<18} total {c['total']:>9} s  "
                                       f"iterations {c['iterations']:>6}  relres {c['relres']}  {c['note']}", markup=False)
            else:
                progress.console.print(f"  {c['problem']} {c['dof']:>12} {c['solver']:<18} {c['note']}", markup=False)

    with progress:
        rows = run_benchmark(cfg, progress=hear)
    # Results first: a file that still cannot be written must not lose them.
    if json_output:
        echo_json(report.to_json(rows, cfg, machine, command))
        _write_outputs(rows, cfg, machine, command, append, plot)
        return
    table = Table(title=f"slactl bench on {cfg.device}: {report.machine_line(machine)}", title_justify="left")
    for key, head in report.COLUMNS:
        table.add_column(head, overflow="fold", no_wrap=key != "note", min_width=12 if key == "note" else None,
                         justify="left" if key in ("problem", "solver", "note") else "right")
    for r in rows:
        c = report.cells(r)
        style = None if r.status == "ok" else ("red" if r.status in ("failed", "not converged") else "dim")
        table.add_row(*(c[k] for k, _ in report.COLUMNS), style=style)
    console.print(table)
    for line in report.definitions(cfg):
        console.print(line, style="dim")
    _write_outputs(rows, cfg, machine, command, append, plot)
    for path, what in ((append, "appended to"), (plot, "plot written to")):
        if path is not None:
            console.print(f"{what} {path}")


def _write_outputs(rows, cfg, machine: dict, command: str, append: Optional[Path], plot: Optional[Path]) -> None:
    """--append and --plot, after the results are printed; a failure is one line naming the path."""
    from slactl.benchmark import report
    from slactl.errors import OutputError

    for path, option, write in (
        (append, "--append", lambda: report.append_markdown(append, report.markdown(rows, cfg, machine, command))),
        (plot, "--plot", lambda: _plot_atomically(rows, cfg, plot, machine)),
    ):
        if path is None:
            continue
        try:
            write()
        except OSError as exc:
            # atomic_output words the error after the path; the OSError beneath says what went wrong
            cause = exc.__cause__ if isinstance(exc, OutputError) and isinstance(exc.__cause__, OSError) else exc
            raise OutputError(f"{option} {path}: {cause.strerror or cause}; the results are printed above") from None


def _plot_atomically(rows, cfg, path: Path, machine: dict) -> None:
    """Write the plot to a temporary sibling, then rename it into place, like every other output."""
    import os

    from slactl.benchmark import report
    from slactl.io.atomic import atomic_output

    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)  # --plot creates its directory (checked before the run)
    with atomic_output(path, force=True) as tmp:
        # matplotlib picks the format by the extension, which the temporary name lacks
        named = tmp.with_name(tmp.name + path.suffix)
        try:
            report.plot(rows, cfg, named, machine)
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)


def _check_output(path: Path, option: str, *, create_parents: bool) -> None:
    """A file ``option`` can write: not a directory; its directory exists (or, with
    ``create_parents``, can be created) and is writable; an existing file is writable."""
    import os

    from slactl.errors import UsageError

    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory; give a file path")
    parent = path.parent
    if not parent.is_dir():
        if not create_parents:
            raise UsageError(f"{option} {path}: directory {parent} does not exist; create it or choose another path")
        while not parent.exists():  # the nearest existing ancestor must let us create the rest
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: directory {parent} is not writable; choose another path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: the file is not writable; choose another path")


def _check_plot(path: Path) -> None:
    """--plot: a writable path whose extension is an image format matplotlib writes."""
    from slactl.errors import BackendUnavailableError, UsageError

    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ModuleNotFoundError:
        raise BackendUnavailableError("--plot needs matplotlib, which is not installed here: pip install matplotlib") from None
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        what = f"extension .{suffix} is not an image format matplotlib writes" if suffix else "the name has no extension"
        raise UsageError(f"--plot {path}: {what}; use one of "
                         f"{', '.join('.' + f for f in formats)} (e.g. .png, .svg, .pdf)")
    _check_output(path, "--plot", create_parents=True)
