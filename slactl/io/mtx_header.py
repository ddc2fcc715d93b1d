"""Matrix Market header: the banner line, comments and the size line, parsed strictly.

The header is read line by line in Python (it is a few lines), so every error names its line.
The body is left to :mod:`slactl.io.mtx_body`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from slactl.errors import FormatError

# A header line longer than this is not a Matrix Market header: refuse instead of reading a
# whole binary file into one "line".
MAX_HEADER_LINE = 1 << 16
_FORMATS = ("coordinate", "array")
_FIELD_ALIASES = {
    "real": "real",
    "double": "real",
    "integer": "integer",
    "unsigned-integer": "integer",
    "complex": "complex",
    "pattern": "pattern",
}
_SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")
# Rows beyond this many per entry make the CSR row pointers absurdly larger than the data; a
# corrupted size line is far likelier than such a matrix, and allocating them could exhaust memory.
_MAX_ROWS_PER_ENTRY = 1000
_MAX_POINTER_BYTES_WITHOUT_ENTRIES = 1 << 30


@dataclass(frozen=True)
class MtxHeader:
    """What the header of a Matrix Market file declares.

    ``entries`` is the number of data lines the body must hold (for ``array`` files: the number of
    stored values, which symmetry reduces). ``size_line`` is the 1-based line of the size line, so
    body line ``k`` (0-based) is file line ``size_line + 1 + k`` plus any blank lines.
    """

    format: str
    field: str
    symmetry: str
    nrows: int
    ncols: int
    entries: int
    size_line: int
    comments: tuple[str, ...] = ()

    @property
    def value_columns(self) -> int:
        return {"pattern": 0, "complex": 2}.get(self.field, 1)

    @property
    def columns(self) -> int:
        """Numbers per body line."""
        return self.value_columns + (2 if self.format == "coordinate" else 0)


def _read_line(stream: BinaryIO, path: Any, lineno: int) -> bytes:
    line = stream.readline(MAX_HEADER_LINE + 1)
    if len(line) > MAX_HEADER_LINE:
        raise FormatError(f"line is longer than {MAX_HEADER_LINE} bytes; this is not a Matrix Market header", path, lineno)
    return line


def _decode(raw: bytes, path: Any, lineno: int) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("header contains non-ASCII bytes; is this a Matrix Market file?", path, lineno) from None


def _parse_banner(text: str, path: Any) -> tuple[str, str, str]:
    tokens = text.split()
    if not tokens or tokens[0].lower() != "%%matrixmarket":
        shown = text.strip()[:40]
        raise FormatError(
            f"expected the banner '%%MatrixMarket matrix coordinate real general', found {shown!r}; "
            "is this a Matrix Market file?",
            path,
            1,
        )
    if len(tokens) != 5:
        raise FormatError(
            f"banner has {len(tokens) - 1} words after %%MatrixMarket, expected 4 "
            "(object format field symmetry, e.g. 'matrix coordinate real general')",
            path,
            1,
        )
    obj, fmt, fld, sym = (t.lower() for t in tokens[1:])
    if obj != "matrix":
        raise FormatError(f"object {obj!r} is not supported; slactl reads 'matrix' files only", path, 1)
    if fmt not in _FORMATS:
        raise FormatError(f"format {fmt!r} is not one of {', '.join(_FORMATS)}", path, 1)
    if fld not in _FIELD_ALIASES:
        raise FormatError(f"field {fld!r} is not one of real, integer, complex, pattern", path, 1)
    if sym not in _SYMMETRIES:
        raise FormatError(f"symmetry {sym!r} is not one of {', '.join(_SYMMETRIES)}", path, 1)
    fld = _FIELD_ALIASES[fld]
    if fld == "pattern" and fmt == "array":
        raise FormatError("an 'array' file cannot have field 'pattern'", path, 1)
    if fld == "pattern" and sym in ("skew-symmetric", "hermitian"):
        raise FormatError(f"a 'pattern' matrix cannot be {sym}", path, 1)
    if sym == "hermitian" and fld != "complex":
        raise FormatError(f"a 'hermitian' matrix must have field 'complex', not {fld!r}", path, 1)
    return fmt, fld, sym


def _parse_size(text: str, fmt: str, path: Any, lineno: int) -> tuple[int, ...]:
    tokens = text.split()
    want = 3 if fmt == "coordinate" else 2
    what = "rows columns entries" if fmt == "coordinate" else "rows columns"
    if len(tokens) != want:
        raise FormatError(f"size line must hold {want} integers ({what}), found {len(tokens)} words", path, lineno)
    values = []
    for tok in tokens:
        if not tok.isdigit() or not tok.isascii():
            raise FormatError(f"size line: {tok[:40]!r} is not a non-negative integer", path, lineno)
        values.append(int(tok))
    if max(values[:2]) >= 2**62:
        raise FormatError("size line declares more than 2**62 rows or columns", path, lineno)
    return tuple(values)


def _stored_values(fmt: str, sym: str, m: int, n: int, entries: int | None) -> int:
    if fmt == "coordinate":
        return entries
    if sym == "general":
        return m * n
    return m * (m + 1) // 2 if sym != "skew-symmetric" else m * (m - 1) // 2


def _check_sizes(fmt: str, sym: str, m: int, n: int, stored: int, path: Any, lineno: int) -> None:
    if sym != "general" and m != n:
        raise FormatError(f"a {sym} matrix must be square, but the size line says {m} x {n}", path, lineno)
    if fmt == "coordinate" and 8 * (m + 1) > _MAX_POINTER_BYTES_WITHOUT_ENTRIES and m > _MAX_ROWS_PER_ENTRY * max(stored, 1):
        raise FormatError(
            f"size line declares {m} rows for only {stored} entries; the row pointers alone would need "
            f"{8 * (m + 1) / 2**30:.0f} GiB. Check the size line (rows columns entries)",
            path,
            lineno,
        )


def read_header(stream: BinaryIO, path: Any) -> MtxHeader:
    """Read the banner, comments and size line from a binary stream positioned at the start.

    The stream is left at the first body line. Raises :class:`FormatError` naming the line.
    """
    raw = _read_line(stream, path, 1)
    if not raw:
        raise FormatError("file is empty; a Matrix Market file starts with '%%MatrixMarket'", path, 1)
    fmt, fld, sym = _parse_banner(_decode(raw, path, 1), path)
    lineno, comments = 1, []
    while True:
        lineno += 1
        raw = _read_line(stream, path, lineno)
        if not raw:
            raise FormatError("file ends before the size line (rows columns entries)", path, lineno)
        text = _decode(raw, path, lineno)
        if text.startswith("%"):
            comments.append(text[1:].strip())
        elif text.strip():
            break
    sizes = _parse_size(text, fmt, path, lineno)
    m, n = sizes[0], sizes[1]
    stored = _stored_values(fmt, sym, m, n, sizes[2] if fmt == "coordinate" else None)
    _check_sizes(fmt, sym, m, n, stored, path, lineno)
    return MtxHeader(fmt, fld, sym, m, n, stored, lineno, tuple(comments))
