"""Matrix Market body: blocks of lines parsed strictly, checked against the header, turned into COO.

Each block of whole lines takes one of two paths:

* fast (:mod:`slactl.io.mtx_fast`): a vectorized proof that the block is well formed, then SciPy's
  multithreaded ``fast_matrix_market`` for the numbers. SciPy alone is not enough: it reads the
  longest valid prefix of a number ("0x10" as 0, "1.0D+02" as 1.0, "1.5" in an integer file as 1)
  and ignores extra columns, which would turn a damaged file into a wrong matrix;
* strict (here): NumPy's ``loadtxt`` C parser with one typed column per number, which refuses all
  of those; when it refuses a block, a pure-Python scan of that block finds the first bad line so
  the error can name it. Blocks with blank lines, carriage returns, "nan"/"inf" or a leading '+'
  come this way, as do all ``array`` files.

Either way the entries are then checked here (index range, NaN/Inf, diagonal rules of
skew-symmetric and hermitian files, the declared entry count), block by block, so that memory
stays bounded by the block size. Symmetric kinds of files may list either triangle (the spec says
the lower one; SciPy and other tools also write and read the upper one): the reader notes which
triangles hold entries, and a file that uses both is checked once read (:mod:`slactl.io.mtx`)
for a pair listed from both sides.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from slactl.errors import FormatError
from slactl.io.mtx_header import MtxHeader

DEFAULT_BLOCK_BYTES = 32 << 20
MAX_BODY_LINE = 1 << 20
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)


@dataclass
class CooBlock:
    """Entries from one block of lines: 0-based ``rows``, ``cols`` and ``values`` (None for pattern)."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray | None


def _columns(header: MtxHeader) -> list[tuple[str, str, str]]:
    """(record name, kind, what a user calls it) for each number on a body line."""
    cols = [("i", "int", "row index"), ("j", "int", "column index")] if header.format == "coordinate" else []
    if header.field == "complex":
        cols += [("re", "float", "real part"), ("im", "float", "imaginary part")]
    elif header.field == "integer":
        cols += [("v", "int", "value")]
    elif header.field == "real":
        cols += [("v", "float", "value")]
    return cols


def _line_blocks(stream: BinaryIO, block_bytes: int, path: Any) -> Iterator[bytes]:
    """Yield chunks of whole lines (each ends with a newline, except possibly the last)."""
    carry = b""
    while True:
        buf = stream.read(block_bytes)
        if not buf:
            if carry:
                yield carry
            return
        buf = carry + buf
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > MAX_BODY_LINE:
                raise FormatError(f"a body line is longer than {MAX_BODY_LINE} bytes; the file is damaged", path)
            carry = buf
            continue
        carry = buf[cut + 1 :]
        yield buf[: cut + 1]


def _line_of_entry(block: bytes, first_line: int, k: int) -> int:
    """File line of the ``k``-th (0-based) non-blank line of ``block`` (error path only)."""
    seen = -1
    for offset, raw in enumerate(block.split(b"\n")):
        if raw.strip():
            seen += 1
            if seen == k:
                return first_line + offset
    return first_line + block.count(b"\n")


_ENTRY_LINE = re.compile(rb"^[^\S\n]*\S", re.MULTILINE)  # a line with something on it


def entry_lines(stream: BinaryIO, ordinals: list[int], first_line: int, block_bytes: int, path: Any) -> list[int]:
    """File lines of the body entries with these 0-based ordinals, ``stream`` positioned at the
    first body line (file line ``first_line``). Error path only: it reads the body again."""
    want = sorted(set(ordinals))
    found: dict[int, int] = {}
    seen, line = 0, first_line
    for block in _line_blocks(stream, block_bytes, path):
        entries = len(_ENTRY_LINE.findall(block))
        while want and want[0] < seen + entries:
            k = want.pop(0)
            found[k] = _line_of_entry(block, line, k - seen)
        if not want:
            break
        seen += entries
        line += block.count(b"\n")
    return [found.get(k, line) for k in ordinals]


def _column_start(j: np.ndarray, height: int) -> np.ndarray:
    """Index of the first stored value of column j of a lower triangle whose column 0 has
    ``height`` values (column j has height - j): j height - j (j - 1) / 2."""
    return j * height - j * (j - 1) // 2


def _triangle_column(k: np.ndarray, height: int) -> np.ndarray:
    """Column of the k-th value of a column-major lower triangle (closed form, no O(n) table)."""
    b = 2.0 * height + 1.0
    j = np.floor((b - np.sqrt(np.maximum(b * b - 8.0 * k, 0.0))) / 2).astype(np.int64)
    j = np.maximum(j, 0)
    for _ in range(2):  # repair the float rounding of the square root
        j = np.where(_column_start(j, height) > k, j - 1, j)
        j = np.where(_column_start(j + 1, height) <= k, j + 1, j)
    return j


class BodyReader:
    """Iterate over the body of a Matrix Market file as :class:`CooBlock` pieces.

    Parameters
    ----------
    stream : binary file
        Positioned at the first body line (after :func:`~slactl.io.mtx_header.read_header`).
    header : MtxHeader
        What the header declared; the body is checked against it.
    path : path-like
        Named in every error.
    allow_nonfinite : bool
        Accept NaN and Inf values (refused by default).
    block_bytes : int
        How much text to parse at a time; memory use is a small multiple of this.
    progress : callable, optional
        Called after each block with no arguments (the caller knows how to measure progress).
    """

    def __init__(
        self,
        stream: BinaryIO,
        header: MtxHeader,
        path: Any,
        *,
        allow_nonfinite: bool = False,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        progress: Callable[[], None] | None = None,
    ):
        self.stream, self.header, self.path = stream, header, path
        self.allow_nonfinite = allow_nonfinite
        self.block_bytes = max(int(block_bytes), 1)
        self.progress = progress
        self.columns = _columns(header)
        kinds = {"int": np.int64, "float": np.float64}
        self.dtype = np.dtype([(name, kinds[kind]) for name, kind, _ in self.columns])
        self.count = 0
        # which triangles of a symmetric kind of file hold off-diagonal entries (see _note_triangles)
        self.lower = self.upper = False

    @property
    def both_triangles(self) -> bool:
        """Whether entries were listed on both sides of the diagonal: then a pair may be listed
        twice, (i, j) and (j, i), which :func:`slactl.io.csr_build.pair_in_both_triangles` finds."""
        return self.lower and self.upper

    # ----------------------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[CooBlock]:
        from slactl.io.mtx_fast import parse_fast

        line = self.header.size_line + 1
        for block in _line_blocks(self.stream, self.block_bytes, self.path):
            newlines = block.count(b"\n")
            coo = parse_fast(block, self.header, newlines)
            if coo is None:  # not provably clean: the strict parser decides, and names the line
                coo = self._columns_of(self._parse(block, line))
            n = coo.rows.shape[0]
            if self.count + n > self.header.entries:
                extra = _line_of_entry(block, line, self.header.entries - self.count)
                raise FormatError(
                    f"more data lines than the {self.header.entries} entries declared on line "
                    f"{self.header.size_line}; fix the size line or remove the extra lines",
                    self.path,
                    extra,
                )
            if n:
                yield self._checked(coo, block, line)
            self.count += n
            line += newlines
            if self.progress is not None:
                self.progress()
        if self.count < self.header.entries:
            raise FormatError(
                f"file ends after {self.count} of the {self.header.entries} entries declared on line "
                f"{self.header.size_line}; the file is truncated or the size line is wrong",
                self.path,
                line,
            )

    def _parse(self, block: bytes, first_line: int) -> np.ndarray:
        if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
            # NumPy would take a lone carriage return for a line break; our line numbers would not.
            offset = next(k for k, raw in enumerate(block.split(b"\n")) if b"\r" in raw.rstrip(b"\r"))
            raise FormatError(
                "carriage return inside a line; use \\n or \\r\\n line endings", self.path, first_line + offset
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data" for a blank block
                return np.loadtxt(io.BytesIO(block), dtype=self.dtype, comments=None, ndmin=1)
        except (ValueError, OverflowError) as exc:  # UnicodeDecodeError is a ValueError
            raise self._locate(block, first_line, str(exc)) from None

    def _locate(self, block: bytes, first_line: int, detail: str) -> FormatError:
        """Find the first line of ``block`` that the strict grammar refuses (error path only)."""
        want = len(self.columns)
        layout = ", ".join(what for _, _, what in self.columns) or "nothing"
        for offset, raw in enumerate(block.split(b"\n")):
            tokens = raw.decode("latin-1").split()
            if not tokens:
                continue
            line = first_line + offset
            if tokens[0].startswith("%"):
                return FormatError("comment lines are allowed only before the size line", self.path, line)
            if len(tokens) != want:
                return FormatError(f"expected {want} numbers ({layout}), found {len(tokens)}", self.path, line)
            for tok, (_, kind, what) in zip(tokens, self.columns):
                if kind == "int" and not (_INT.fullmatch(tok) and -(2**63) <= int(tok) < 2**63):
                    return FormatError(f"{what} {tok[:40]!r} is not a 64-bit integer", self.path, line)
                if kind == "float" and not _FLOAT.fullmatch(tok):
                    return FormatError(f"{what} {tok[:40]!r} is not a number", self.path, line)
        last = first_line + block.count(b"\n")
        detail = detail.splitlines()[0][:200] if detail else "unknown error"
        return FormatError(f"lines {first_line}-{last} could not be parsed ({detail})", self.path)

    # ----------------------------------------------------------------------------- checks
    def _fail(self, message: str, block: bytes, first_line: int, k: int) -> FormatError:
        return FormatError(message, self.path, _line_of_entry(block, first_line, k))

    def _columns_of(self, rec: np.ndarray) -> CooBlock:
        """Parsed records -> (0-based rows, cols, values); array files keep value order in rows."""
        field = self.header.field
        vals = None if field == "pattern" else rec["re"] + 1j * rec["im"] if field == "complex" else rec["v"]
        if self.header.format == "array":
            return CooBlock(np.empty(len(rec), np.int64), np.empty(len(rec), np.int64), vals)
        return CooBlock(rec["i"] - 1, rec["j"] - 1, vals)

    def _check_values(self, vals: np.ndarray | None, block: bytes, first_line: int) -> None:
        if vals is None or self.allow_nonfinite or self.header.field == "integer":
            return
        with np.errstate(all="ignore"):
            if np.isfinite(vals.sum()):  # cheap: NaN or Inf anywhere makes the sum non-finite
                return
        bad = ~np.isfinite(vals)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise self._fail(
                f"value {vals[k]} is not finite; pass allow_nonfinite=True (--allow-nonfinite) to accept NaN/Inf",
                block, first_line, k,
            )

    def _check_diagonal(self, rows, cols, vals, block: bytes, first_line: int) -> None:
        sym = self.header.symmetry
        if vals is None or sym not in ("skew-symmetric", "hermitian"):
            return
        diag = rows == cols
        bad = diag & (vals != 0) if sym == "skew-symmetric" else diag & (np.imag(vals) != 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            what = "a skew-symmetric matrix has a zero diagonal" if sym == "skew-symmetric" else (
                "a hermitian matrix has a real diagonal"
            )
            raise self._fail(f"diagonal entry {vals[k]} is not allowed: {what}", block, first_line, k)

    def _checked(self, coo: CooBlock, block: bytes, first_line: int) -> CooBlock:
        """Validate one block's entries against the header; array files get their coordinates."""
        self._check_values(coo.values, block, first_line)
        if self.header.format == "array":
            return self._array_to_coo(coo.values, block, first_line)
        m, n = self.header.nrows, self.header.ncols
        rows, cols = coo.rows, coo.cols
        bad = (rows < 0) | (rows >= m) | (cols < 0) | (cols >= n)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise self._fail(
                f"entry ({rows[k] + 1}, {cols[k] + 1}) lies outside the {m} x {n} matrix declared on line "
                f"{self.header.size_line} (indices are 1-based)",
                block, first_line, k,
            )
        self._note_triangles(rows, cols)
        self._check_diagonal(rows, cols, coo.values, block, first_line)
        return coo

    def _note_triangles(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Note which triangles a symmetric kind of file lists entries in: one comparison per
        block, since a file keeps to one triangle and the side already seen is not tested again.
        Either triangle is valid (the mirror is implied both ways); only a pair listed from both
        sides is an error, which only a file using both triangles can contain."""
        if self.header.symmetry == "general" or self.both_triangles:
            return
        if not self.upper:
            self.upper = bool((rows < cols).any())
        if not self.lower:
            self.lower = bool((rows > cols).any())

    def _array_to_coo(self, vals: np.ndarray, block: bytes, first_line: int) -> CooBlock:
        """Dense column-major values -> coordinates of the nonzeros (zeros are not stored)."""
        k = np.arange(self.count, self.count + len(vals), dtype=np.int64)
        m, sym = self.header.nrows, self.header.symmetry
        if sym == "general":
            rows, cols = k % m, k // m
        else:
            skew = sym == "skew-symmetric"
            cols = _triangle_column(k, m - skew)
            rows = cols + skew + (k - _column_start(cols, m - skew))
        self._check_diagonal(rows, cols, vals, block, first_line)
        keep = vals != 0
        return CooBlock(rows[keep], cols[keep], vals[keep])
