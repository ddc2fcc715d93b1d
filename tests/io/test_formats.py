"""Format dispatch and conversions: exact between every pair, bounded memory, never half-written."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from io_helpers import assert_same_csr, make_matrix

from slactl.errors import FormatError, StoreExistsError, UsageError
from slactl.io import MatrixData, convert, format_of, read, read_zarr, write
from slactl.io.gallery import generate

SUFFIXES = [".mtx", ".mtx.gz", ".zarr", ".npz"]


@pytest.mark.parametrize(
    "name, kind",
    [("a.mtx", "mtx"), ("A.MTX.GZ", "mtx"), ("x/a.zarr/", "zarr"), ("a.npz", "npz"), ("a.mtx.zarr", "zarr")],
)
def test_format_of(name, kind):
    assert format_of(name) == kind


@pytest.mark.parametrize("name", ["a.txt", "a.gz", "a", "a.mtx.bz2"])
def test_unknown_suffix_is_a_usage_error(name):
    with pytest.raises(UsageError, match=".mtx, .mtx.gz, .zarr, .npz"):
        format_of(name)


@pytest.mark.parametrize("src, dst", list(itertools.permutations(SUFFIXES, 2)))
def test_convert_between_every_pair_is_exact(tmp_path, combo, src, dst):
    field, symmetry = combo
    a = make_matrix(field, symmetry, n=17, seed=2)
    write(MatrixData(a, field, symmetry), tmp_path / f"in{src}")
    out = convert(tmp_path / f"in{src}", tmp_path / f"out{dst}")
    got = read(tmp_path / f"out{dst}")
    assert (got.field, got.symmetry) == (field, symmetry) == (out.field, out.symmetry)
    assert_same_csr(got.csr, a)


def test_convert_reads_what_scipy_wrote(tmp_path):
    a = make_matrix("real", "general", n=30, seed=8)
    scipy.io.mmwrite(tmp_path / "s.mtx", a)
    convert(tmp_path / "s.mtx", tmp_path / "s.zarr")
    assert_same_csr(read(tmp_path / "s.zarr").csr, a)


def test_convert_refuses_existing_output_before_reading(tmp_path):
    (tmp_path / "in.mtx").write_text("not even a matrix")
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "zarr.json").write_text("{}")
    with pytest.raises(StoreExistsError):
        convert(tmp_path / "in.mtx", tmp_path / "out.zarr")


def test_convert_to_itself_and_missing_directory(tmp_path):
    write(MatrixData(sp.csr_array(np.eye(2)), "real"), tmp_path / "a.npz")
    with pytest.raises(UsageError, match="same path"):
        convert(tmp_path / "a.npz", tmp_path / "a.npz", force=True)
    with pytest.raises(UsageError, match="does not exist"):
        convert(tmp_path / "a.npz", tmp_path / "nowhere" / "b.zarr")


def test_convert_failure_leaves_no_output_and_no_spill(tmp_path):
    (tmp_path / "bad.mtx").write_text("%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n2 2 x\n")
    with pytest.raises(FormatError, match=":4:"):
        convert(tmp_path / "bad.mtx", tmp_path / "bad.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mtx"]


def test_progress_reports_every_stage(tmp_path):
    write(generate("poisson2d", 20).to_matrix_data(), tmp_path / "p.mtx")
    seen = {}
    convert(tmp_path / "p.mtx", tmp_path / "p.zarr", progress=lambda s, d, t: seen.setdefault(s, []).append((d, t)))
    assert set(seen) == {"parse", "sort", "write"}
    for stage, calls in seen.items():
        done, total = calls[-1]
        assert done == total > 0, stage


# --------------------------------------------------------------------- subprocess tests
_RSS_SCRIPT = """
import sys
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
from slactl.io import convert
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS to the current RSS
before = status("VmRSS:")
convert(sys.argv[1], sys.argv[2])
print(status("VmHWM:") - before)
"""


def _can_reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_peak_rss(), reason="needs Linux /proc/self/clear_refs")
def test_mtx_to_zarr_peak_memory_is_below_twice_the_matrix(tmp_path):
    problem = generate("rgg_laplacian", 300_000)  # ~2.7M nonzeros, 45 MB as CSR
    data = problem.to_matrix_data()
    data.symmetry = "general"  # every entry in the text: the larger file
    write(data, tmp_path / "g.mtx")
    a = problem.matrix
    csr_bytes = a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / "g.mtx"), str(tmp_path / "g.zarr")],
        capture_output=True, text=True, check=True, timeout=300,
    )
    grown = int(out.stdout.split()[-1])
    assert grown <= 2.0 * csr_bytes, f"peak grew {grown / 1e6:.0f} MB for a {csr_bytes / 1e6:.0f} MB matrix"
    assert_same_csr(read(tmp_path / "g.zarr").csr, a)


_KILL_SCRIPT = """
import sys, time
from slactl.io import convert
def progress(stage, done, total):
    if stage == "write":
        print("WRITING", flush=True)
        time.sleep(30)  # the test kills us here, mid-write
convert(sys.argv[1], sys.argv[2], progress=progress)
"""


def test_conversion_killed_mid_write_leaves_nothing_readable(tmp_path):
    write(generate("poisson2d", 200).to_matrix_data(), tmp_path / "p.mtx")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "p.mtx"), str(tmp_path / "p.zarr")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        partial = [p for p in tmp_path.iterdir() if p.name.startswith(".p.zarr.partial-")]
        assert len(partial) == 1 and (partial[0] / "pointers_to_1").exists()  # mid-write indeed
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(FormatError, match="no such store"):
        read(tmp_path / "p.zarr")
    # The leftover hidden directory is not a matrix either.
    with pytest.raises(FormatError, match="write never finished"):
        read_zarr(partial[0])
    # A later conversion is not disturbed by the debris.
    convert(tmp_path / "p.mtx", tmp_path / "p.zarr")
    assert read(tmp_path / "p.zarr").shape == (40000, 40000)


def test_conversion_killed_while_parsing(tmp_path):
    write(generate("poisson2d", 300).to_matrix_data(), tmp_path / "p.mtx")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT.replace('"write"', '"parse"'), str(tmp_path / "p.mtx"),
         str(tmp_path / "p.zarr")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "WRITING"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (tmp_path / "p.zarr").exists()
    with pytest.raises(FormatError):
        read(tmp_path / "p.zarr")
