"""`slactl info`, `slactl convert`, `slactl gallery`: the commands about matrix files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from slactl.cli.main import app, err_console
from slactl.cli.output import echo_json
from slactl.errors import UsageError

_STAGES = {"parse": "reading", "sort": "sorting", "write": "writing"}


def _solver_choice(A: Any) -> Optional[str]:
    """The solver ``slactl solve`` would pick for ``A`` on this machine's default device."""
    import torch

    from slactl.engine.linear import analyze, select

    if A.shape[0] != A.shape[1]:
        return None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choice = select(A.shape[0], device, A.dtype, analyze(A))
    pre = "" if choice.method == "direct" else f" + {choice.preconditioner}"
    return f"{choice.method}{pre} on {choice.backend} ({device.type})"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _info_table(report: dict) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    m, n = report["shape"]
    table.add_row("file", f"{report['path']} ({report['format']})")
    table.add_row("shape", f"{m} x {n}")
    table.add_row("nonzeros", f"{report['nnz']} ({report['density']:.3g} dense, {report['nnz'] / max(m, 1):.1f} per row)")
    table.add_row("values", f"{report['field']} ({report['dtype']})")
    sym_key = next(k for k in report if k.startswith("numerically_"))
    kind = sym_key.split("_", 1)[1]
    table.add_row("symmetry", f"declared {report['declared_symmetry']}; {'' if report[sym_key] else 'not '}{kind}")
    if report["zero_diagonal_entries"] is not None:
        table.add_row("zero diagonal", str(report["zero_diagonal_entries"]))
    table.add_row(
        "diag. dominance",
        f"{report['diagonal_dominance']} ({100 * report['diagonally_dominant_rows']:.1f}% of rows)",
    )
    table.add_row("SPD", f"{report['spd']['verdict']}: {report['spd']['reason']}")
    mem = report["memory_bytes"]
    table.add_row(
        "memory",
        f"CSR float64 {_human_bytes(mem['csr_float64'])}, float32 {_human_bytes(mem['csr_float32'])}; "
        f"dense float64 {_human_bytes(mem['dense_float64'])}",
    )
    if report.get("solver"):
        table.add_row("solver", str(report["solver"]))
    return table


@app.command()
def info(
    path: Path = typer.Argument(..., help="Matrix file: .mtx, .mtx.gz, .zarr or .npz."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="Accept NaN/Inf values."),
) -> None:
    """Shape, nonzeros, symmetry, diagonal dominance, SPD evidence and memory of a matrix file."""
    from slactl.engine.files import matrix_properties, to_sparse_matrix
    from slactl.io import format_of, read

    data = read(path, allow_nonfinite=allow_nonfinite)
    report = {"path": str(path), "format": format_of(path)}
    report.update(matrix_properties(data))
    report["solver"] = _solver_choice(to_sparse_matrix(data))
    if as_json:
        echo_json(report)
    else:
        Console(highlight=False, soft_wrap=True).print(_info_table(report))


class _Bar:
    """A rich progress bar fed by the io layer's ``progress(stage, done, total)`` callbacks."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(_STAGES.get(stage, stage), total=max(total, 1))
        self.progress.update(self.tasks[stage], completed=done, total=max(total, 1))

    def __enter__(self) -> "_Bar":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Input matrix: .mtx, .mtx.gz, .zarr or .npz."),
    dst: Path = typer.Argument(..., help="Output matrix; the format follows the suffix."),
    force: bool = typer.Option(False, "--force", help="Replace DST if it exists."),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="Accept NaN/Inf values."),
) -> None:
    """Convert a matrix between Matrix Market, Zarr (Binsparse) and npz, with bounded memory."""
    from slactl.io import convert as _convert

    with _Bar() as bar:
        data = _convert(src, dst, force=force, allow_nonfinite=allow_nonfinite, progress=bar)
    m, n = data.shape
    typer.echo(f"wrote {dst}: {m} x {n}, {data.nnz} nonzeros ({data.field}, {data.symmetry})")


def _parse_params(items: List[str]) -> dict:
    """``KEY=VALUE`` strings to keyword arguments (int, then float, else the string)."""
    params: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--param expects KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                params[key] = cast(raw)
                break
            except ValueError:
                continue
        else:
            params[key] = raw
    return params


def _gallery_list() -> None:
    from slactl.io.gallery import GALLERY, names

    table = Table("name", "problem", "size means", "default size", box=None, pad_edge=False)
    for name in names():
        e = GALLERY[name]
        table.add_row(name, e.summary, e.size_meaning, str(e.default_size))
    Console(highlight=False, soft_wrap=True).print(table)


@app.command()
def gallery(
    name: Optional[str] = typer.Argument(None, help="Problem name (see --list)."),
    size: Optional[int] = typer.Option(None, "--size", help="Problem size (meaning per problem; see --list)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file: .mtx, .mtx.gz, .zarr or .npz."),
    param: List[str] = typer.Option([], "--param", help="Problem parameter KEY=VALUE (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    list_: bool = typer.Option(False, "--list", help="List the problems and exit."),
) -> None:
    """Generate a test problem from the gallery and write it to a file."""
    if list_:
        _gallery_list()
        return
    if name is None or out is None:
        raise UsageError("give a problem NAME and --out PATH (or --list to see the problems)")
    from slactl.io import write
    from slactl.io.gallery import generate

    problem = generate(name, size, **_parse_params(param))
    with _Bar() as bar:
        write(problem.to_matrix_data(), out, force=force, progress=bar)
    a = problem.matrix
    typer.echo(f"wrote {out}: {name} size {problem.size}, {a.shape[0]} x {a.shape[1]}, {a.nnz} nonzeros")
