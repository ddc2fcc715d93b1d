"""Mangled Matrix Market files: the reader raises FormatError or returns a valid matrix, nothing else.

The CLI turns every refusal into exactly one line on stderr and exit code 2.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slactl.cli.main import main
from slactl.errors import FormatError
from slactl.io import read_mtx

SEEDS = [
    "%%MatrixMarket matrix coordinate real general\n% comment\n4 3 5\n1 1 1.5\n2 3 -2e-3\n4 1 7\n3 2 .5\n1 1 1\n",
    "%%MatrixMarket matrix coordinate real symmetric\n3 3 4\n1 1 4\n2 1 -1\n2 2 4\n3 3 4\n",
    "%%MatrixMarket matrix coordinate integer skew-symmetric\n3 3 2\n2 1 5\n3 1 -6\n",
    "%%MatrixMarket matrix coordinate complex hermitian\n2 2 2\n1 1 2 0\n2 1 1.5 -0.5\n",
    "%%MatrixMarket matrix coordinate pattern general\n3 3 3\n1 2\n2 3\n3 1\n",
    "%%MatrixMarket matrix array real symmetric\n3 3\n1\n2\n3\n4\n5\n6\n",
    "%%MatrixMarket matrix array complex general\n2 1\n1 2\n3 4\n",
]
# Bytes that make interesting damage: digits, signs, exponents, separators, letters, controls.
ALPHABET = list(b"0123456789+-.eEdDxnaif% \t\r\n") + [0, 0xFF, 0xE9]


@st.composite
def mangled(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)).encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate_line", "drop_line", "truncate"]))
        # Three times in four, damage the body: the header has its own tests.
        start = data.find(b"\n") + 1 if draw(st.integers(0, 3)) else 0
        last = max(len(data) - 1, 0)
        i = draw(st.integers(min(start, last), last))
        if op == "delete":
            del data[i : i + draw(st.integers(1, 6))]
        elif op == "insert":
            data[i:i] = bytes(draw(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=6)))
        elif op == "replace" and data:
            data[i] = draw(st.sampled_from(ALPHABET))
        elif op in ("duplicate_line", "drop_line"):
            lines = bytes(data).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines[k:k + 1] = [lines[k]] * (2 if op == "duplicate_line" else 0)
            data = bytearray(b"\n".join(lines))
        elif op == "truncate":
            del data[i:]
    return bytes(data)


def _check(data: bytes, suffix: str = ".mtx") -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            got = read_mtx(path)
        except FormatError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
    # Accepted: it must be a valid, finite, canonical CSR of the declared shape.
    csr = got.csr
    assert isinstance(csr, sp.csr_array) and csr.has_canonical_format
    assert csr.indptr[-1] == csr.nnz and (csr.nnz == 0 or csr.indices.max() < csr.shape[1])
    assert np.isfinite(csr.data).all()


@settings(max_examples=400, deadline=2000, derandomize=True)
@given(mangled())
def test_mangled_text_raises_only_format_error(data):
    _check(data)


@settings(max_examples=100, deadline=2000, derandomize=True)
@given(mangled(), st.integers(0, 200), st.binary(min_size=1, max_size=4))
def test_mangled_gzip_raises_only_format_error(data, where, junk):
    packed = bytearray(gzip.compress(data))
    where = min(where, len(packed) - 1)
    packed[where : where + len(junk)] = junk
    _check(bytes(packed), ".mtx.gz")


@settings(max_examples=60, deadline=4000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mangled())
def test_cli_reports_one_line_and_nonzero_exit(capsys, data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.mtx"
        path.write_bytes(data)
        capsys.readouterr()
        code = main(["info", str(path)])
        err = capsys.readouterr().err
    if code == 0:
        assert err == ""
        return
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("slactl: bad input: "), err
    assert "Traceback" not in err
