"""`slactl solve` and `slactl backends`."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from slactl.cli.main import app
from slactl.cli.output import echo_json

DEFAULT_PROBLEM = ("poisson2d", 256)  # the embedded default: 65,536 unknowns, 2D Poisson


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Dtype(str, Enum):
    float64 = "float64"
    float32 = "float32"


def _device(choice: Device) -> str:
    import torch

    from slactl.errors import BackendUnavailableError

    if choice is Device.auto:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice is Device.cuda and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return choice.value


def with_precision(dtype, like):
    """``dtype``'s precision, complex when ``like`` is: --dtype sets the precision, and a complex
    matrix or right-hand side is never made real (that would drop its imaginary part)."""
    import torch

    if not like.is_complex:
        return dtype
    return torch.complex64 if dtype in (torch.float32, torch.complex64) else torch.complex128


def _load(matrix: Optional[Path], dtype, device: str):
    """The matrix (or the embedded default) as a SparseMatrix, and a label for it."""
    import slactl
    from slactl.io.gallery import generate

    if matrix is None:
        name, size = DEFAULT_PROBLEM
        problem = generate(name, size)
        label = f"{name} --size {size} (embedded default)"
        return slactl.SparseMatrix.from_scipy(problem.matrix, dtype=dtype, device=device), label
    A = slactl.read_matrix(matrix)
    return A.to(device=device, dtype=with_precision(dtype, A.dtype)), str(matrix)


def _rhs(spec: str, A, seed: int):
    import numpy as np
    import torch

    from slactl.errors import ShapeError
    from slactl.io.vectors import read_vector

    n = A.shape[0]
    if spec == "ones":
        return torch.ones(n, dtype=A.dtype, device=A.device)
    if spec == "random":
        g = torch.Generator(device="cpu").manual_seed(seed)
        return torch.randn(n, dtype=A.dtype, generator=g).to(A.device)
    data = read_vector(spec)
    if data.shape[0] != n:
        raise ShapeError(f"{spec}: the right-hand side has {data.shape[0]} rows but the matrix has {n}")
    b = torch.from_numpy(np.ascontiguousarray(data))
    return b.to(device=A.device, dtype=with_precision(A.dtype, b.dtype))


@app.command()
def solve(
    matrix: Optional[Path] = typer.Argument(None, help="Matrix file (.mtx, .mtx.gz, .zarr, .npz). Omitted: the embedded 2D Poisson default."),
    rhs: str = typer.Option("ones", "--rhs", help="ones, random, or a file (.npy, .mtx, .txt, .zarr)."),
    method: str = typer.Option("auto", help="auto, direct, cg, bicgstab, gmres, minres."),
    backend: str = typer.Option("auto", help="auto, superlu, cudss, cupyx, torch (see `slactl backends`)."),
    preconditioner: str = typer.Option("auto", help="auto, none, jacobi, ilu0, ic0, amg, sa-amg; for a partition store also dist-amg "
                                        "(AMG with global coarse levels, auto for CG); other names are block Jacobi there."),
    rtol: float = typer.Option(1e-8, help="Relative tolerance: ||b - A x|| <= max(rtol ||b||, atol)."),
    atol: float = typer.Option(0.0, help="Absolute tolerance."),
    maxiter: Optional[int] = typer.Option(None, help="Iteration limit of iterative methods."),
    device: Device = typer.Option(Device.auto, help="Where to solve (auto: cuda when torch sees a GPU, else cpu)."),
    dtype: Dtype = typer.Option(Dtype.float64, help="Floating-point type."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write x to this file (.npy, .mtx, .txt, .zarr)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    explain: bool = typer.Option(False, "--explain", help="Say which backend was chosen and why."),
    seed: int = typer.Option(0, help="Seed of --rhs random."),
) -> None:
    """Solve A x = b and report the true relative residual (exit 0 solved, 2 bad input or usage, 3 not converged, 4 backend unavailable)."""
    import torch

    import slactl
    from slactl.errors import ConvergenceError

    if matrix is not None and matrix.is_dir():
        from slactl.io.partition_store import is_partition_store

        if is_partition_store(matrix):  # distributed: one rank per part, under `slactl run`
            from slactl.cli.run import solve_partitioned

            return solve_partitioned(matrix, rhs=rhs, method=method, preconditioner=preconditioner, rtol=rtol,
                                     atol=atol, maxiter=maxiter, dtype=dtype.value, out=out, force=force,
                                     json_output=json_output, seed=seed)
    if out is not None:  # refused now, not after the solve
        from slactl.io.vectors import check_vector_output

        check_vector_output(out, force=force)
    console = Console(stderr=json_output)
    dev = _device(device)
    torch_dtype = getattr(torch, dtype.value)
    t0 = time.perf_counter()
    A, label = _load(matrix, torch_dtype, dev)
    b = _rhs(rhs, A, seed)
    if b.dtype != A.dtype:  # a complex right-hand side makes the system complex
        A = A.to(dtype=b.dtype)
    load_seconds = time.perf_counter() - t0

    progress = None if json_output else Progress(
        TextColumn("[bold]solving"), BarColumn(), TextColumn("iteration {task.fields[it]}"),
        TextColumn("residual {task.fields[res]}"), TimeElapsedColumn(), console=console, transient=True)
    bnorm = float(torch.linalg.vector_norm(b)) or 1.0
    goal = max(rtol * bnorm, atol)
    task = None

    def callback(iteration: int, residual: float) -> None:
        if progress is not None and task is not None:
            import math

            done = 0.0 if residual <= 0 else min(1.0, max(0.0, math.log(bnorm / residual) / max(math.log(bnorm / goal), 1e-12)))
            progress.update(task, completed=done, it=iteration, res=f"{residual / bnorm:.2e}")

    failed = None
    try:
        if progress is not None:
            progress.start()
            task = progress.add_task("solve", total=1.0, it=0, res="-")
        result = slactl.solve(A, b, method=method, backend=backend, preconditioner=preconditioner, rtol=rtol,
                              atol=atol, maxiter=maxiter, explain=explain, return_result=True, callback=callback)
    except ConvergenceError as exc:
        failed, result = exc, exc.result
    finally:
        if progress is not None:
            progress.stop()

    x = result.x.detach()
    relres = float(torch.linalg.vector_norm(b - A @ x) / bnorm)  # recomputed, whatever the solver said
    summary = {"matrix": label, "n": A.shape[0], "nnz": A.nnz, "device": dev, "dtype": str(A.dtype).removeprefix("torch."),
               **result.summary(), "relres": relres, "load_seconds": load_seconds, "reasons": result.reasons}
    if out is not None and failed is None:
        from slactl.io.vectors import write_vector

        write_vector(x.cpu().numpy(), out, force=force)
        summary["out"] = str(out)
    if json_output:
        echo_json(summary)
    else:
        _print_summary(console, summary, x)
    if failed is not None:
        if not json_output:
            console.print(f"[red]not converged:[/] {failed}")
        raise typer.Exit(3)


def _describe(x) -> str:
    if x.is_complex():
        return f"max |x_i| {float(x.abs().max()):.6g}, ||x|| = {float(x.norm()):.6g} (complex)"
    return f"min {float(x.min()):.6g}, max {float(x.max()):.6g}, ||x|| = {float(x.norm()):.6g}"


def _print_summary(console: Console, s: dict, x) -> None:
    table = Table(title=f"slactl solve: {s['matrix']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("size", f"n = {s['n']:,}, nnz = {s['nnz']:,} ({s['dtype']} on {s['device']})"),
        ("solver", f"{s['method']} on {s['backend']}, preconditioner {s['preconditioner']}"),
        ("iterations", str(s["iterations"])),
        ("relative residual", f"{s['relres']:.3e}  (||b - A x|| / ||b||, recomputed)"),
        ("converged", "yes" if s["converged"] else "[red]no[/]"),
        ("time", f"load {s['load_seconds']:.3f} s, setup {s['setup_seconds']:.3f} s, solve {s['solve_seconds']:.3f} s"),
        ("solution", _describe(x)),
    ]
    if "out" in s:
        rows.append(("written to", s["out"]))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if s.get("reasons"):
        console.print("why: " + "; ".join(s["reasons"]), style="dim")


@app.command()
def backends(json_output: bool = typer.Option(False, "--json", help="Print one JSON list (an object per backend) instead of the table.")) -> None:
    """List every solver backend, what it can do, and whether it is available here (and why not)."""
    from slactl.engine.linear import backend_table

    rows = backend_table()
    if json_output:
        echo_json(rows)
        return
    table = Table(title="slactl backends", show_lines=True)
    for col in ("backend", "what it does", "available here"):
        table.add_column(col, overflow="fold")
    for r in rows:
        avail = "[green]yes[/]" if r["available"] else f"[red]no[/]: {r['reason']}"
        what = (f"{r['description']}\n[dim]{r['kind']} on {r['devices']}; methods {r['methods']}; "
                f"dtypes {r['dtypes']}; batches by {r['batched']}; adjoint by {r['transpose']}[/]")
        table.add_row(r["name"], what, avail)
    Console().print(table)
