"""`slactl gradcheck`: adjoint gradients against finite differences on a matrix file or a gallery problem."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from slactl.cli.main import app
from slactl.cli.output import echo_json
from slactl.cli.solve import Device, Dtype, _device


class Operation(str, Enum):
    solve = "solve"
    eigsh = "eigsh"
    nonlinear = "nonlinear"
    all = "all"


def _matrix(matrix: Optional[Path], gallery: Optional[str], size: Optional[int], dtype, device: str):
    import slactl
    from slactl.errors import UsageError
    from slactl.io.gallery import generate

    if (matrix is None) == (gallery is None):
        raise UsageError("give a MATRIX file or --gallery NAME (with --size N), not both and not neither")
    if gallery is not None:
        problem = generate(gallery, size)
        label = f"gallery {gallery} --size {problem.size}"
        return slactl.SparseMatrix.from_scipy(problem.matrix, dtype=dtype, device=device), label
    return slactl.read_matrix(matrix).to(device=device, dtype=dtype), str(matrix)


@app.command()
def gradcheck(
    matrix: Optional[Path] = typer.Argument(None, help="Matrix file (.mtx, .mtx.gz, .zarr, .npz) or partition store "
                                                      "(distributed: slactl run --procs P -- gradcheck STORE); or use --gallery."),
    op: Operation = typer.Option(Operation.all, "--op", help="Operation to check: solve, eigsh, nonlinear or all."),
    gallery: Optional[str] = typer.Option(None, "--gallery", help="A gallery problem instead of a file (see `slactl.io.gallery`)."),
    size: Optional[int] = typer.Option(None, "--size", help="Size of the gallery problem."),
    directions: int = typer.Option(3, help="Random directions per input."),
    eps: Optional[float] = typer.Option(None, help="Relative finite-difference step (default: eps_mach ** (1/3))."),
    rtol: Optional[float] = typer.Option(None, help="Pass threshold on the relative error (default 1e-6 in float64, 1e-2 in float32)."),
    k: int = typer.Option(4, help="Eigenpairs of the eigsh check."),
    seed: int = typer.Option(0, help="Seed of directions and loss weights."),
    device: Device = typer.Option(Device.auto, help="Where to run."),
    dtype: Dtype = typer.Option(Dtype.float64, help="Floating-point type."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Check adjoint gradients against central finite differences (exit 0 all pass, 9 a check failed, 2 bad input)."""
    import torch

    import slactl
    from slactl.errors import GradcheckFailure

    tol = rtol if rtol is not None else (1e-6 if dtype is Dtype.float64 else 1e-2)
    console = Console(stderr=json_output)
    if matrix is not None and matrix.is_dir() and gallery is None and _is_partition_store(matrix):
        # distributed: every rank checks its share, rank 0 reports
        report = _gradcheck_partitioned(matrix, op.value, directions=directions, eps=eps, seed=seed, rtol=tol, k=k,
                                        dtype=getattr(torch, dtype.value))
        if report is None:
            return
        label = str(matrix)
    else:
        dev = _device(device)
        A, label = _matrix(matrix, gallery, size, getattr(torch, dtype.value), dev)
        with console.status(f"checking gradients of {label}", spinner="dots") if not json_output else _nothing():
            report = slactl.gradcheck(op.value, A, directions=directions, eps=eps, seed=seed, rtol=tol, k=k)
    summary = {"matrix": label, **report.to_dict()}
    if json_output:
        echo_json(summary)
    else:
        _print(console, label, report)
    if not report.passed:
        bad = ", ".join(f"{r.operation} w.r.t. {r.wrt} ({r.relative_error:.2e})" for r in report.failed_rows)
        raise GradcheckFailure(f"{len(report.failed_rows)} check(s) above rtol {tol:g}: {bad}")


def _is_partition_store(path: Path) -> bool:
    from slactl.io.partition_store import is_partition_store

    return is_partition_store(path)


def _gradcheck_partitioned(store: Path, op: str, **kw):
    """The report on rank 0 (None on the other ranks); the process group is torn down either way."""
    import torch.distributed as dist

    from slactl.dist.store_ops import gradcheck_store

    try:
        return gradcheck_store(store, op=op, **kw)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _print(console: Console, label: str, report) -> None:
    m, n = report.shape
    table = Table(title=f"slactl gradcheck: {label} ({m}x{n}, nnz {report.nnz:,}, {report.dtype} on {report.device})",
                  title_justify="left")
    # The figures never wrap (they are what a reader looks for); only the note column folds.
    for col, just in (("operation", "left"), ("w.r.t.", "left"), ("rel. error", "right"),
                      ("fwd", "right"), ("bwd", "right"), ("FD", "right"), ("pass", "center")):
        table.add_column(col, justify=just, no_wrap=True)
    table.add_column("note", justify="left", overflow="fold", min_width=12)
    for r in report.rows:
        err = "-" if r.relative_error is None else f"{r.relative_error:.2e}"
        ok = "[dim]skipped[/]" if r.skipped else "[green]yes[/]" if r.passed else "[red]NO[/]"
        table.add_row(r.operation, r.wrt, err, str(r.forward_solves), str(r.backward_solves),
                      str(r.fd_evaluations), ok, r.note)
    console.print(table)
    console.print(f"central differences, step {report.eps:.2e} (relative), {report.directions} random directions "
                  f"per input; pass: relative error <= {report.rtol:g}; fwd/bwd: linear solves in one forward/backward; FD: "
                  f"function evaluations of the finite differences", style="dim")
