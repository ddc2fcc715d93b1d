"""Fast path for coordinate Matrix Market blocks: a vectorized strictness check, then SciPy.

SciPy's ``fast_matrix_market`` parses several times faster than NumPy's ``loadtxt`` (and uses
every core), but it reads the longest valid *prefix* of a number and skips the rest of the line:
"1.2.3" reads as 1.2, "0x10" as 0, "5.0" in an integer file as 5, a fourth column is ignored. So a
block goes to it only after this module has proved, with a few passes of NumPy over the bytes,
that every line is exactly ``columns`` tokens and every token is a complete number:

* bytes: digits, space, tab, newline, '-', and for real/complex fields also '.', 'e', 'E', '+'
  (no carriage returns, letters, blank lines: those blocks take the strict slow path);
* tokens: exactly ``columns`` per line, each line starting with a token (no leading blanks);
* index tokens: digits only (SciPy itself refuses integers beyond int64);
* value tokens: ``-?(D+.?D*|.D+)([eE][+-]?D+)?`` checked at the few non-digit bytes only
  (signs only at the start or right after the exponent mark, a digit beside every '.', a digit
  or "digit." before the exponent mark and a digit after it, and within a token the order
  sign, '.', exponent mark, exponent sign, each at most once).

Anything that fails the check, or that SciPy then refuses, returns None and the caller parses the
block with the strict slow path, which also finds the line to blame.
"""

from __future__ import annotations

import io

import numpy as np

from slactl.io.mtx_body import CooBlock
from slactl.io.mtx_header import MtxHeader

# Byte classes of the few bytes that need a closer look (signs, dots, exponent marks and their
# neighbours); the bulk of a block is handled by comparisons on the raw bytes.
_BAD, _SEP, _NEWLINE, _DIGIT, _MINUS, _PLUS, _DOT, _EXP = range(8)
_CLASS = np.full(256, _BAD, dtype=np.uint8)
_CLASS[np.frombuffer(b"0123456789", np.uint8)] = _DIGIT
_CLASS[[ord(" "), ord("\t")]] = _SEP
_CLASS[ord("\n")] = _NEWLINE
_CLASS[ord("-")] = _MINUS
_CLASS[ord("+")] = _PLUS
_CLASS[ord(".")] = _DOT
_CLASS[[ord("e"), ord("E")]] = _EXP
_INTEGER_BYTES = b"0123456789 \t\n-"
_ALPHABET = {"real": _INTEGER_BYTES + b"+.eE", "complex": _INTEGER_BYTES + b"+.eE", "integer": _INTEGER_BYTES,
             "pattern": _INTEGER_BYTES}
_NL, _SPACE, _ZERO, _NINE = ord("\n"), ord(" "), ord("0"), ord("9")


def _token_starts(raw: np.ndarray, columns: int, lines: int) -> np.ndarray | None:
    """Start of every token, if each of the ``lines`` lines holds exactly ``columns`` tokens.

    ``raw`` is padded with a newline at both ends. A token right after a newline opens a line;
    with exactly columns * lines tokens, the openers must be tokens 0, columns, 2 columns, ...
    (a line with leading blanks, or a blank line, fails this and takes the slow path).
    """
    word = raw > _SPACE  # separators (space, tab, newline) are the only bytes <= ' ' left
    starts = np.flatnonzero(word[1:] > word[:-1]) + 1
    if starts.shape[0] != columns * lines:
        return None
    opens_line = (raw[starts - 1] == _NL).reshape(lines, columns)
    if not (opens_line[:, 0].all() and not opens_line[:, 1:].any()):
        return None
    return starts


def _grammar_ok(raw: np.ndarray, starts: np.ndarray, columns: int, field: str) -> bool:
    """Check every token at its non-digit bytes only (there are few): see the module docstring."""
    odd = np.flatnonzero((raw > _NINE) | ((raw < _ZERO) & (raw > _SPACE)))  # signs, dots, exponents
    if odd.size == 0:
        return True
    tok = np.searchsorted(starts, odd, side="right") - 1
    first_value_col = columns - {"complex": 2, "pattern": 0}.get(field, 1)
    if ((tok % columns) < first_value_col).any():
        return False  # indices are plain digits
    # The padding keeps odd - 2 .. odd + 1 inside the array.
    kind, prev, nxt = _CLASS[raw[odd]], _CLASS[raw[odd - 1]], _CLASS[raw[odd + 1]]
    signs, dots, exps = (kind == _MINUS) | (kind == _PLUS), kind == _DOT, kind == _EXP
    # A sign opens the token (minus only: SciPy refuses a leading '+') followed by a digit or a
    # dot, or opens the exponent followed by a digit.
    opens = (prev <= _NEWLINE) & (kind == _MINUS) & ((nxt == _DIGIT) | (nxt == _DOT))
    in_exp = (prev == _EXP) & (nxt == _DIGIT)
    ok = ~signs | opens | in_exp
    # A dot has a digit on at least one side; an exponent mark follows a digit or "digit." and
    # is followed by a digit or a sign.
    ok &= ~dots | (prev == _DIGIT) | (nxt == _DIGIT)
    digit_dot = (prev == _DOT) & (_CLASS[raw[odd - 2]] == _DIGIT)
    ok &= ~exps | (((prev == _DIGIT) | digit_dot) & ((nxt == _DIGIT) | (nxt == _MINUS) | (nxt == _PLUS)))
    if not ok.all():
        return False
    # Within a token the odd bytes come in the order sign, dot, exponent mark, exponent sign,
    # each at most once: their ranks strictly increase.
    rank = np.where(signs, np.where(in_exp, 3, 0), np.where(dots, 1, 2)).astype(np.int8)
    same = tok[1:] == tok[:-1]
    return not (same & (rank[1:] <= rank[:-1])).any()


def parse_fast(block: bytes, header: MtxHeader, lines: int | None = None) -> CooBlock | None:
    """COO entries of a block of coordinate lines, or None when the strict slow path must decide.

    ``lines`` is ``block.count(b"\\n")`` if the caller already knows it.
    """
    import scipy.io

    field = header.field
    if header.format != "coordinate" or not block or block.translate(None, _ALPHABET[field]):
        return None  # a byte outside the fast alphabet (carriage returns and letters included)
    if not block.endswith(b"\n"):
        block += b"\n"  # the file's last line
        lines = None
    lines = block.count(b"\n") if lines is None else lines
    raw = np.frombuffer(b"\n" + block + b"\n", dtype=np.uint8)
    starts = _token_starts(raw, header.columns, lines)
    if starts is None or not _grammar_ok(raw, starts, header.columns, field):
        return None
    head = f"%%MatrixMarket matrix coordinate {field} general\n{header.nrows} {header.ncols} {lines}\n".encode()
    try:
        coo = scipy.io.mmread(io.BytesIO(head + block), spmatrix=False)
    except (ValueError, OverflowError):
        return None  # e.g. an index out of range: the slow path names the line
    values = None if field == "pattern" else coo.data
    return CooBlock(coo.row.astype(np.int64, copy=False), coo.col.astype(np.int64, copy=False), values)
