"""Matrix Market (``.mtx``, ``.mtx.gz``) reader and writer.

Reading: the header is parsed line by line (:mod:`~slactl.io.mtx_header`), the body in blocks of
lines (:mod:`~slactl.io.mtx_body`: SciPy's fast parser behind a vectorized strictness check, or
NumPy's strict parser), and the CSR is built in two passes (:mod:`~slactl.io.csr_build`).
Symmetric, skew-symmetric and hermitian files are expanded; duplicated entries are summed (a
pattern keeps 1); NaN/Inf are refused unless allowed. Every failure is a FormatError naming the
file and, where known, the line.

Writing: SciPy's fast Matrix Market writer (``fast_matrix_market``: shortest round-trip decimal
for every double, so text round trips are exact) formats blocks of rows; symmetric matrices are
written as their lower triangle. Outputs appear atomically.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp

from slactl.errors import FormatError, UsageError
from slactl.io.atomic import atomic_output
from slactl.io.csr_build import DiskSink, MemorySink, build_csr, pair_in_both_triangles
from slactl.io.matrix_data import MatrixData, has_symmetry, value_dtype
from slactl.io.mtx_body import DEFAULT_BLOCK_BYTES, BodyReader, entry_lines
from slactl.io.mtx_header import MtxHeader, read_header

Progress = Callable[[str, int, int], None]
_WRITE_BLOCK_ENTRIES = 1 << 22


def is_gzip(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".gz")


@contextmanager
def _open_read(path: Path) -> Iterator[tuple[Any, Any]]:
    """(text stream, raw file) for ``path``; raw.tell() measures progress through the file."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise FormatError("no such file; check the path", path) from None
    except IsADirectoryError:
        raise FormatError("is a directory, not a Matrix Market file", path) from None
    except PermissionError:
        raise FormatError("permission denied", path) from None
    try:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip(path) else raw
        try:
            yield stream, raw
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise FormatError(f"cannot decompress ({exc}); the .gz file is damaged or truncated", path) from None
    finally:
        raw.close()


def read_header_only(path: str | os.PathLike) -> MtxHeader:
    """The header of a Matrix Market file (cheap: the body is not read)."""
    path = Path(path)
    with _open_read(path) as (stream, _):
        return read_header(stream, path)


def read_mtx(
    path: str | os.PathLike,
    *,
    allow_nonfinite: bool = False,
    spill_dir: str | os.PathLike | None = None,
    block_bytes: int | None = None,
    progress: Progress | None = None,
) -> MatrixData:
    """Read a Matrix Market file into canonical CSR.

    Parameters
    ----------
    path : path-like
        ``.mtx`` or ``.mtx.gz`` (gzip is detected from the name).
    allow_nonfinite : bool
        Accept NaN and Inf values; by default they raise :class:`FormatError`.
    spill_dir : path-like, optional
        Keep the parsed entries on disk in this directory instead of in memory, so that peak memory
        stays near the size of the final CSR (used by conversions of large files).
    block_bytes : int, optional
        Text parsed per block; by default 1/32 of the file, between 1 and 32 MiB, so the
        parser's temporary memory stays a small fraction of the matrix.
    progress : callable, optional
        ``progress(stage, done, total)`` with stage ``"parse"`` (bytes of the file) then ``"sort"``
        (entries placed).

    Returns
    -------
    MatrixData
        Expanded matrix, the file's field and symmetry; ``source`` is the provenance recorded in a
        ``% source: ...`` comment (as slactl writes it), else the file name.

    Raises
    ------
    FormatError
        Anything wrong with the file; the message names the file and, where known, the line.

    Examples
    --------
    >>> data = read_mtx("datasets/poisson2d_32.mtx")   # doctest: +SKIP
    >>> data.shape, data.symmetry
    ((1024, 1024), 'symmetric')
    """
    path = Path(path)
    total = _file_size(path)
    if block_bytes is None:
        block_bytes = min(max(total // 32, 1 << 20), DEFAULT_BLOCK_BYTES)
    with _open_read(path) as (stream, raw):
        header = read_header(stream, path)
        shape = (header.nrows, header.ncols)
        sink = MemorySink(*shape, header.symmetry) if spill_dir is None else DiskSink(*shape, header.symmetry, spill_dir)
        try:
            tick = None if progress is None else (lambda: progress("parse", raw.tell(), total))
            reader = BodyReader(stream, header, path, allow_nonfinite=allow_nonfinite, block_bytes=block_bytes, progress=tick)
            for block in reader:
                sink.add(block)
            if reader.both_triangles:
                _refuse_pairs_listed_twice(sink, header, path, block_bytes)
            place = None if progress is None else (lambda done: progress("sort", done, reader.count))
            try:
                csr = build_csr(sink, shape, header.field, value_dtype(header.field), progress=place)
            except FormatError as exc:
                if exc.path is not None:
                    raise
                raise FormatError(str(exc), path) from None  # e.g. duplicates summing beyond int64
        finally:
            sink.close()
    return MatrixData(csr, header.field, header.symmetry, source=_source(header) or path.name)


def _refuse_pairs_listed_twice(sink: MemorySink, header: MtxHeader, path: Path, block_bytes: int) -> None:
    """FormatError naming the line of an entry whose mirror the file also lists (both triangles)."""
    found = pair_in_both_triangles(sink)
    if found is None:
        return
    first, second, row, col = found
    with _open_read(path) as (stream, _):
        read_header(stream, path)
        first_line, second_line = entry_lines(stream, [first, second], header.size_line + 1, block_bytes, path)
    sym = header.symmetry
    raise FormatError(
        f"entry ({row + 1}, {col + 1}) is the mirror of entry ({col + 1}, {row + 1}) on line {first_line}: a {sym} "
        "file lists each off-diagonal pair once, in either triangle, and the other is implied; remove one of the "
        "two lines, or declare the file general and list both halves",
        path,
        second_line,
    )


def _source(header: MtxHeader) -> str | None:
    """The provenance a slactl writer recorded as a '% source: ...' comment, if any."""
    for text in header.comments:
        if text.startswith("source:"):
            return text[len("source:") :].strip() or None
    return None


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# ------------------------------------------------------------------------------------- writing
def _stored_part(csr: sp.csr_array, symmetry: str) -> sp.csr_array:
    """What a Matrix Market file stores: everything, or the lower triangle for symmetric kinds."""
    if symmetry == "general":
        return csr
    return sp.tril(csr, k=-1 if symmetry == "skew-symmetric" else 0, format="csr")


def _body_bytes(buf: bytes) -> bytes:
    """Strip the header SciPy's writer puts before a block's lines (banner, comments, size)."""
    pos = 0
    while buf.startswith(b"%", pos):
        pos = buf.index(b"\n", pos) + 1
    return buf[buf.index(b"\n", pos) + 1 :]


def _write_body(out: Any, stored: sp.csr_array, field: str, progress: Progress | None) -> None:
    import scipy.io

    m = stored.shape[0]
    nnz = max(stored.nnz, 1)
    rows_per_block = max(1, int(_WRITE_BLOCK_ENTRIES * m // nnz))
    for r0 in range(0, m, rows_per_block):
        r1 = min(m, r0 + rows_per_block)
        lo, hi = int(stored.indptr[r0]), int(stored.indptr[r1])
        if hi == lo:
            continue
        rows = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(stored.indptr[r0 : r1 + 1]))
        vals = stored.data[lo:hi]
        block = sp.coo_array((vals, (rows, stored.indices[lo:hi].astype(np.int64))), shape=stored.shape)
        buf = io.BytesIO()
        scipy.io.mmwrite(buf, block, field=field, symmetry="general")
        out.write(_body_bytes(buf.getvalue()))
        if progress is not None:
            progress("write", r1, m)


def _header_text(data: MatrixData, symmetry: str, stored_nnz: int, comment: str | None) -> bytes:
    m, n = data.shape
    lines = [f"%%MatrixMarket matrix coordinate {data.field} {symmetry}"]
    for text in (comment or "").splitlines():
        lines.append("%" + text)
    if data.source and not comment:
        lines.append(f"% source: {data.source}")
    lines.append(f"{m} {n} {stored_nnz}")
    return ("\n".join(lines) + "\n").encode("ascii", "replace")


def write_mtx(
    data: MatrixData,
    path: str | os.PathLike,
    *,
    force: bool = False,
    symmetry: str | None = None,
    comment: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write ``data`` as a coordinate Matrix Market file (gzip if ``path`` ends in ``.gz``).

    Parameters
    ----------
    symmetry : str, optional
        Symmetry to declare; default ``data.symmetry``. A symmetric kind writes only the lower
        triangle and is checked first: declaring a symmetry the matrix lacks raises UsageError.
    force : bool
        Replace an existing file; otherwise :class:`StoreExistsError`.
    """
    path = Path(path)
    symmetry = data.symmetry if symmetry is None else symmetry
    csr = data.csr
    if symmetry != "general" and not has_symmetry(csr, symmetry):
        raise UsageError(
            f"{path}: the matrix is not exactly {symmetry}, so it cannot be written as a {symmetry} Matrix Market "
            "file (only one triangle is stored); declare it general"
        )
    if data.field == "real" and csr.dtype != np.float64:
        # Widen float32 (and friends) so the shortest decimal of the *double* is written: exact.
        csr = sp.csr_array((csr.data.astype(np.float64), csr.indices, csr.indptr), shape=csr.shape)
    stored = _stored_part(csr, symmetry)
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "wb") as raw:
            out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) if is_gzip(path) else raw
            out.write(_header_text(data, symmetry, stored.nnz, comment))
            _write_body(out, stored, data.field, progress)
            if out is not raw:
                out.close()
    return path
