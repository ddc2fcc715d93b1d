"""The fast path (vectorized check + SciPy's fast_matrix_market) against a plain Python parser.

Soundness: whenever the fast path accepts a block, Python's own parser (the documented grammar,
``int``/``float``) accepts every line and gives the same numbers bit for bit. Usefulness: the fast
path does accept well-formed files.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slactl.io.mtx_body import _FLOAT, _INT
from slactl.io.mtx_fast import parse_fast
from slactl.io.mtx_header import MtxHeader

N = 50
COLUMNS = {"real": 3, "integer": 3, "complex": 4, "pattern": 2}


def _header(field: str, entries: int) -> MtxHeader:
    return MtxHeader("coordinate", field, "general", N, N, entries, 2)


def _reference(block: bytes, field: str):
    """(rows, cols, values) by str.split, the grammar regexes and Python's int/float; None if refused."""
    rows, cols, vals = [], [], []
    for raw in block.decode("latin-1").splitlines():
        tokens = raw.split()
        if len(tokens) != COLUMNS[field]:
            return None
        if not all(_INT.fullmatch(t) for t in tokens[:2]):
            return None
        i, j = int(tokens[0]), int(tokens[1])
        if not (1 <= i <= N and 1 <= j <= N):
            return None
        value_tokens = tokens[2:]
        pattern = _INT if field == "integer" else _FLOAT
        if not all(pattern.fullmatch(t) for t in value_tokens):
            return None
        if field == "integer":
            v = int(value_tokens[0])
            if not -(2**63) <= v < 2**63:
                return None
        elif field == "complex":
            v = complex(float(value_tokens[0]), float(value_tokens[1]))
        elif field == "real":
            v = float(value_tokens[0])
        else:
            v = None
        rows.append(i - 1)
        cols.append(j - 1)
        vals.append(v)
    return rows, cols, vals


def _same(a, b) -> bool:
    if isinstance(a, complex) or isinstance(b, complex):
        return _same(complex(a).real, complex(b).real) and _same(complex(a).imag, complex(b).imag)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b) if isinstance(a, float) else a == b


NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:.17E}"),
    st.integers(-(10**20), 10**20).map(str),
    st.text("0123456789+-.eE", min_size=1, max_size=8),  # mostly junk
)
INDICES = st.one_of(st.integers(1, N).map(str), st.integers(-3, N + 3).map(str), st.text("0123456789+-.e", min_size=1, max_size=3))


@st.composite
def blocks(draw):
    field = draw(st.sampled_from(list(COLUMNS)))
    nvals = COLUMNS[field] - 2
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        tokens = [draw(INDICES), draw(INDICES)] + [draw(NUMBERS) for _ in range(nvals)]
        if draw(st.integers(0, 9)) == 0:
            tokens = tokens[: draw(st.integers(0, len(tokens)))] + [draw(NUMBERS)] * draw(st.integers(0, 2))
        sep = draw(st.sampled_from([" ", "  ", "\t", " \t "]))
        lines.append(draw(st.sampled_from(["", " "])) + sep.join(tokens))
    return field, ("\n".join(lines) + draw(st.sampled_from(["\n", ""]))).encode()


@settings(max_examples=600, deadline=None, derandomize=True)
@given(blocks())
def test_whatever_the_fast_path_accepts_python_reads_identically(case):
    field, block = case
    got = parse_fast(block, _header(field, block.count(b"\n") + 1))
    if got is None:
        return
    ref = _reference(block, field)
    assert ref is not None, block
    rows, cols, vals = ref
    assert got.rows.tolist() == rows and got.cols.tolist() == cols
    if field != "pattern":
        assert all(_same(a, b) for a, b in zip(got.values.tolist(), vals)), (block, got.values, vals)


@pytest.mark.parametrize("field", list(COLUMNS))
def test_fast_path_accepts_well_formed_blocks(field):
    rng = np.random.default_rng(0)
    k = 2000
    i, j = rng.integers(1, N + 1, k).tolist(), rng.integers(1, N + 1, k).tolist()
    x = (rng.standard_normal(k) * 10.0 ** rng.integers(-300, 300, k)).tolist()
    if field == "real":
        lines = [f"{a} {b} {v!r}" for a, b, v in zip(i, j, x)]
        lines += [f"{a} {b} {v:.6e}" for a, b, v in zip(i, j, x)]  # "e+05" exponents
    elif field == "complex":
        lines = [f"{a} {b} {v!r} {-v!r}" for a, b, v in zip(i, j, x)]
    elif field == "integer":
        lines = [f"{a} {b} {int(v * 1e-290) if abs(v) < 1e300 else -7}" for a, b, v in zip(i, j, x)]
    else:
        lines = [f"{a}\t{b}" for a, b in zip(i, j)]
    block = ("\n".join(lines) + "\n").encode()
    got = parse_fast(block, _header(field, len(lines)))
    assert got is not None
    rows, cols, vals = _reference(block, field)
    assert got.rows.tolist() == rows and got.cols.tolist() == cols
    if field != "pattern":
        assert all(_same(a, b) for a, b in zip(got.values.tolist(), vals))


@pytest.mark.parametrize(
    "line",
    [b"1 1 1.2.3", b"1 1 0x10", b"1 1 1e5e5", b"1 1 1-2", b"1 1 5 7", b"1 1", b"1.5 1 1", b"1 1 -", b"1 1 .",
     b"1 1 e5", b"1 1 1e", b"1 1 1e+", b"1 1 +.e5", b"1 1 --1", b"-1 1 1", b"1 1 1\r", b"1 1 nan", b"1 1 +5",
     b"99 1 1", b"1 1 1.5e3.2"],
)
def test_fast_path_declines_what_it_cannot_vouch_for(line):
    assert parse_fast(line + b"\n", _header("real", 1)) is None


def test_integer_fast_path_declines_decimals_and_overflow():
    for line in (b"1 1 5.0", b"1 1 1e3", b"1 1 9223372036854775808", b"1 1 -99999999999999999999"):
        assert parse_fast(line + b"\n", _header("integer", 1)) is None
    got = parse_fast(b"1 1 -123456789012345678\n", _header("integer", 1))
    assert got.values.tolist() == [-123456789012345678]
