"""`slactl partition`: split a matrix among ranks and write a partition store."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from slactl.cli.main import app
from slactl.cli.output import echo_json


class Method(str, Enum):
    metis = "metis"
    rcb = "rcb"
    contiguous = "contiguous"


def _read_coords(path: Path):
    import numpy as np

    from slactl.errors import FormatError

    if not path.exists():
        raise FormatError("no such coordinates file; check the path", path)
    try:
        return np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise FormatError(f"cannot read coordinates ({exc}); give one row of numbers per unknown (.npy or text)", path) from None


def _check_not_input(matrix: Path, out: Path) -> None:
    """Refuse an OUT that is the input (under any spelling: ./A.mtx, a symlink, a hard link) or a
    directory holding it: --force would replace the matrix being partitioned."""
    import os

    from slactl.errors import UsageError

    src, dst = matrix.resolve(), out.resolve()
    same = src == dst
    if not same and matrix.exists() and out.exists():
        try:
            same = os.path.samefile(matrix, out)
        except OSError:
            same = False
    if same:
        raise UsageError(f"{matrix}: source and destination are the same path; give --out a new path for the partition store")
    if dst in src.parents:
        raise UsageError(f"{matrix}: --out {out} is a directory that holds the input matrix; give --out a new path")


@app.command()
def partition(
    matrix: Path = typer.Argument(..., help="Matrix file (.mtx, .mtx.gz, .zarr, .npz)."),
    parts: int = typer.Option(..., "--parts", help="Number of ranks (row blocks); run the store on as many ranks."),
    method: Method = typer.Option(Method.metis, "--method", help="metis (graph), rcb (needs --coords) or contiguous."),
    coords: Optional[Path] = typer.Option(None, "--coords", help="Coordinates of the unknowns, one row each (.npy or text)."),
    out: Path = typer.Option(..., "--out", help="The partition store to write (a .zarr directory)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    seed: int = typer.Option(0, help="Seed of METIS (the partition is the same for the same seed)."),
    json_output: bool = typer.Option(False, "--json", help="Print the partition quality as one JSON object."),
) -> None:
    """Partition MATRIX into PARTS row blocks, write one group per rank to OUT, report the quality (exit 7: bad partition)."""
    from slactl.dist.partition import partition as make_partition
    from slactl.dist.partition import partition_quality
    from slactl.io import read
    from slactl.io.atomic import check_writable
    from slactl.io.partition_store import write_partition_store

    _check_not_input(matrix, out)
    check_writable(out, force)  # fail before the expensive part
    data = read(matrix)
    coordinates = _read_coords(coords) if coords is not None else None
    part = make_partition(data.csr, parts, method.value, coordinates=coordinates, seed=seed)
    quality = partition_quality(data.csr, part, method.value)
    write_partition_store(data, part, out, method=method.value, force=force)
    report = {"matrix": str(matrix), "out": str(out), "n": data.shape[0], "nnz": data.nnz, **quality.to_dict()}
    if json_output:
        echo_json(report)
        return
    _print_quality(report)


def _print_quality(r: dict) -> None:
    console = Console()
    console.print(f"[bold]slactl partition[/]: {r['matrix']} (n = {r['n']:,}, nnz = {r['nnz']:,}) into {r['parts']} "
                  f"parts by {r['method']} -> {r['out']}")
    console.print(f"edge cut {r['edge_cut']:,}; load imbalance {r['imbalance']:.3f} (rows), {r['nnz_imbalance']:.3f} "
                  f"(nonzeros); {r['volume']:,} values moved per halo exchange")
    table = Table(show_header=True, header_style="bold")
    for col in ("rank", "rows", "nonzeros", "halo (recv)", "send", "neighbours"):
        table.add_column(col, justify="right")
    for k in range(r["parts"]):
        table.add_row(str(k), f"{r['rows'][k]:,}", f"{r['rank_nnz'][k]:,}", f"{r['halo'][k]:,}", f"{r['send'][k]:,}",
                      str(r["neighbours"][k]))
    console.print(table)
