"""Pick the format from the path; read, write and convert between Matrix Market, Zarr and npz.

=================  ==========================================
suffix             format
=================  ==========================================
``.mtx``           Matrix Market (text)
``.mtx.gz``        Matrix Market, gzip-compressed
``.zarr``          Zarr v3 group, Binsparse CSR (directory)
``.npz``           NumPy archive, SciPy ``save_npz`` layout
=================  ==========================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from slactl.errors import UsageError
from slactl.io.atomic import check_writable
from slactl.io.matrix_data import MatrixData
from slactl.io.mtx import read_mtx, write_mtx
from slactl.io.npz import read_npz, write_npz
from slactl.io.zarr_store import read_zarr, write_zarr

Progress = Callable[[str, int, int], None]
SUFFIXES = {".mtx": "mtx", ".mtx.gz": "mtx", ".zarr": "zarr", ".npz": "npz"}


def format_of(path: str | os.PathLike) -> str:
    """``"mtx"``, ``"zarr"`` or ``"npz"`` from the file name; UsageError for anything else."""
    name = str(path).rstrip("/\\").lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    raise UsageError(
        f"{path}: cannot tell the format from the name; use one of {', '.join(SUFFIXES)}"
    )


def read(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> MatrixData:
    """Read any supported format into :class:`MatrixData` (canonical CSR plus metadata).

    Raises
    ------
    FormatError
        The file is missing, malformed, foreign or damaged; the message says where.
    """
    kind = format_of(path)
    if kind == "mtx":
        return read_mtx(path, allow_nonfinite=allow_nonfinite)
    if kind == "zarr":
        return read_zarr(path, allow_nonfinite=allow_nonfinite)
    return read_npz(path, allow_nonfinite=allow_nonfinite)


def write(data: MatrixData, path: str | os.PathLike, *, force: bool = False, progress: Progress | None = None) -> Path:
    """Write ``data`` in the format the path names; atomic, and refuses to overwrite unless ``force``."""
    kind = format_of(path)
    if kind == "mtx":
        return write_mtx(data, path, force=force, progress=progress)
    if kind == "zarr":
        return write_zarr(data, path, force=force, progress=progress)
    return write_npz(data, path, force=force)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    force: bool = False,
    allow_nonfinite: bool = False,
    progress: Progress | None = None,
) -> MatrixData:
    """Convert between formats with bounded memory.

    A Matrix Market source is parsed in blocks and its entries spilled to a temporary directory
    beside ``dst``, so peak memory stays near the size of one CSR copy of the matrix (the
    result), not of the text or of a COO copy. Other sources are read whole (they are binary
    CSR already: the read *is* the result).

    Parameters
    ----------
    src, dst : path-like
        Formats from the suffixes (``.mtx``, ``.mtx.gz``, ``.zarr``, ``.npz``).
    force : bool
        Replace ``dst`` if it exists.
    progress : callable, optional
        ``progress(stage, done, total)``; stages ``"parse"``, ``"sort"``, ``"write"``.

    Returns
    -------
    MatrixData
        The converted matrix (as written).
    """
    src, dst = Path(src), Path(dst)
    src_kind, dst_kind = format_of(src), format_of(dst)
    check_writable(dst, force)  # fail before a long parse, not after
    if src.resolve() == dst.resolve():
        raise UsageError(f"{src}: source and destination are the same path")
    if src_kind == "mtx":
        data = read_mtx(src, allow_nonfinite=allow_nonfinite, spill_dir=dst.parent, progress=progress)
    elif src_kind == "zarr":
        data = read_zarr(src, allow_nonfinite=allow_nonfinite)
    else:
        data = read_npz(src, allow_nonfinite=allow_nonfinite)
    if data.source is None:
        data.source = src.name
    write(data, dst, force=force, progress=progress)
    return data


__all__ = ["SUFFIXES", "format_of", "read", "write", "convert"]
