"""`slactl eigsh`: a few eigenpairs of a symmetric sparse matrix, with their residuals."""

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


class Which(str, Enum):
    SA = "SA"
    LA = "LA"
    LM = "LM"


@app.command()
def eigsh(
    matrix: Path = typer.Argument(..., help="Symmetric matrix file (.mtx, .mtx.gz, .zarr, .npz), or a partition store "
                                         "(distributed: slactl run --procs P -- eigsh STORE)."),
    k: int = typer.Option(6, "-k", "--k", help="Number of eigenpairs."),
    which: Which = typer.Option(Which.SA, help="SA smallest, LA largest algebraic, LM largest magnitude."),
    sigma: Optional[float] = typer.Option(None, help="Shift-invert: the eigenvalues nearest SIGMA."),
    method: str = typer.Option("auto", help="auto, lobpcg, arpack, dense."),
    preconditioner: str = typer.Option("auto", help="LOBPCG preconditioner: auto, none, jacobi, amg."),
    tol: Optional[float] = typer.Option(None, help="Relative tolerance on eigen-residuals (1e-8 in float64)."),
    maxiter: Optional[int] = typer.Option(None, help="Iteration limit."),
    device: Device = typer.Option(Device.auto, help="Where to compute."),
    dtype: Dtype = typer.Option(Dtype.float64, help="Floating-point type."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Eigenvalues of a symmetric matrix and their residuals ||A v - lambda v|| (exit 0 converged,
    2 bad input or usage, 3 not converged, 5 not symmetric)."""
    import warnings

    import torch

    _check_options(method, tol, maxiter)
    if matrix.is_dir():
        from slactl.io.partition_store import is_partition_store

        if is_partition_store(matrix):  # distributed LOBPCG: one rank per part, under `slactl run`
            return _eigsh_partitioned(matrix, k=k, which=which, sigma=sigma, method=method, preconditioner=preconditioner,
                                      tol=tol, maxiter=maxiter, dtype=getattr(torch, dtype.value), json_output=json_output)

    import slactl
    from slactl.engine.eigen.result import DegenerateEigenvaluesWarning
    from slactl.errors import ConvergenceError, NotImplementedFeatureError, UsageError

    dev = _device(device)
    A = slactl.read_matrix(matrix)
    if A.dtype.is_complex:  # casting to --dtype would drop the imaginary part: a wrong answer
        raise NotImplementedFeatureError(
            f"{matrix}: complex matrices are not supported by eigsh yet; for a hermitian H = X + iY, the real "
            "symmetric matrix [[X, -Y], [Y, X]] has the same eigenvalues (each twice)")
    A = A.to(device=dev, dtype=getattr(torch, dtype.value))
    _check_sizes(A.shape[0], k)
    failed = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateEigenvaluesWarning)
        try:
            result = slactl.eigsh(A, k=k, which=which.value, sigma=sigma, method=method,
                                  preconditioner=preconditioner, tol=tol, maxiter=maxiter, return_result=True)
        except ConvergenceError as exc:
            if exc.result is None:
                raise
            failed, result = exc, exc.result
        except UsageError as exc:  # the engine words its advice for Python callers
            raise type(exc)(_cli_words(str(exc))) from None
    notes = [str(w.message) for w in caught if issubclass(w.category, DegenerateEigenvaluesWarning)]
    summary = {"matrix": str(matrix), "n": A.shape[0], "nnz": A.nnz, "k": k, "device": dev, "dtype": dtype.value,
               **result.summary(), "warnings": notes}
    if json_output:
        echo_json(summary)
    else:
        _print(summary)
    if failed is not None:
        if not json_output:
            Console(stderr=True).print(f"[red]not converged:[/] {failed}")
        raise typer.Exit(3)


def _check_options(method: str, tol: Optional[float], maxiter: Optional[int]) -> None:
    """Option values the engine would reject with Python wording (or a traceback), checked first."""
    # the engine's own list: a method it gains is accepted here at once
    from slactl.engine.eigen.eigsh import METHODS
    from slactl.errors import UsageError

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if maxiter is not None and maxiter < 1:
        raise UsageError(f"--maxiter must be at least 1, got {maxiter}")
    if tol is not None and not tol > 0:
        raise UsageError(f"--tol must be positive, got {tol}")


def _check_sizes(n: int, k: int) -> None:
    """-k against n, worded with the CLI's option (the engine's own checks of what each method
    needs are translated by :func:`_cli_words`)."""
    from slactl.errors import UsageError

    if not 1 <= k <= n:
        raise UsageError(f"-k must lie in [1, n = {n}], got {k}")


def _cli_words(message: str) -> str:
    """Python keyword advice as CLI options: method='dense' -> --method dense, k -> -k."""
    import re

    message = re.sub(r"\b(method|which|preconditioner)='([^']*)'(?: or '([^']*)')?",
                     lambda m: f"--{m.group(1)} {m.group(2)}" + (f" or --{m.group(1)} {m.group(3)}" if m.group(3) else ""),
                     message)
    message = re.sub(r"\bsigma\b(?!=)", "--sigma", message)
    message = re.sub(r"\bmaxiter\b", "--maxiter", message)
    return message


def _eigsh_partitioned(store: Path, *, k: int, which: Which, sigma, method: str, preconditioner: str, tol, maxiter,
                       dtype, json_output: bool) -> None:
    """`slactl eigsh STORE`: distributed LOBPCG (SA or LA); rank 0 prints."""
    import torch.distributed as dist

    from slactl.dist.store_ops import eigsh_store
    from slactl.errors import ConvergenceError, NotImplementedFeatureError

    if sigma is not None or method not in ("auto", "lobpcg"):
        raise NotImplementedFeatureError("a partition store is solved by distributed LOBPCG (--which SA or LA); "
                                         "shift-invert (--sigma) and --method arpack/dense need the whole matrix")
    failed = None
    try:
        try:
            summary = eigsh_store(store, k=k, which=which.value, preconditioner=preconditioner, tol=tol,
                                  maxiter=maxiter, dtype=dtype)
        except ConvergenceError as exc:
            failed, summary = exc, getattr(exc, "summary", None)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if summary is not None:  # rank 0
        if json_output:
            echo_json(summary)
        else:
            _print(summary)
    if failed is not None:
        if summary is not None and not json_output:
            Console(stderr=True).print(f"[red]not converged:[/] {failed}")
        raise typer.Exit(3)


def _print(s: dict) -> None:
    console = Console()
    ranks = f", {s['parts']} ranks" if "parts" in s else ""
    title = (f"slactl eigsh: {s['matrix']} (n = {s['n']:,}, nnz = {s['nnz']:,}, {s['dtype']} on {s['device']}{ranks}) "
             f"{s['method']}, which {s['which']}" + ("" if s["sigma"] is None else f", sigma {s['sigma']:g}"))
    table = Table(title=title, title_justify="left")
    for col in ("#", "eigenvalue", "residual ||A v - lambda v||"):
        table.add_column(col, justify="right")
    for i, (lam, res) in enumerate(zip(s["eigenvalues"], s["residual_norms"])):
        table.add_row(str(i), f"{lam:.12g}", f"{res:.3e}")
    console.print(table)
    iters = "" if s["iterations"] < 0 else f"{s['iterations']} iterations, "
    console.print(f"{iters}preconditioner {s['preconditioner']}, converged: "
                  f"{'yes' if s['converged'] else '[red]no[/]'}, time {s['timings'].get('solve', 0.0):.3f} s")
    for note in s["warnings"]:
        console.print(f"[yellow]warning:[/] {note}")
