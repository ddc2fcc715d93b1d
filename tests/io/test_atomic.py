"""`slactl.io.atomic`: an output is the old one, the new one or nothing, whatever fails when; a
failure of the output's file system is one error naming the output, not its temporary file."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from slactl.errors import OutputError
from slactl.io import atomic
from slactl.io.atomic import atomic_output


def _store(path, text):
    path.mkdir()
    (path / "zarr.json").write_text("{}")
    (path / "data").write_text(text)


def test_a_failed_swap_puts_the_old_store_back(tmp_path, monkeypatch):
    """The old store is parked under a hidden name before the new one moves in; if that second
    rename fails, the old store is back under its own name and nothing else is left."""
    path = tmp_path / "a.zarr"
    _store(path, "old")
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(errno.EIO, "injected", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError):
        with atomic_output(path, force=True) as tmp:
            _store(tmp, "new")
    assert len(calls) == 3  # park the old, the failed move, the old put back
    assert (path / "data").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_ctrl_c_during_a_swap_lands_after_it(tmp_path, monkeypatch):
    """A SIGINT arriving between the two renames is held until both are done: the new store is in
    place, the old one gone, and only then does KeyboardInterrupt reach the caller."""
    path = tmp_path / "a.zarr"
    _store(path, "old")
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append(dst)
        real_rename(src, dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # between parking the old store and the new move

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(path, force=True) as tmp:
            _store(tmp, "new")
    assert len(calls) == 3  # park the old store, move the new one, rename the old one to debris
    assert (path / "data").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


@pytest.mark.parametrize("code,hint", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                       (errno.EACCES, "no permission")])
def test_file_system_errors_name_the_output_and_leave_nothing(tmp_path, code, hint):
    path = tmp_path / "x.npy"
    with pytest.raises(OutputError) as info:
        with atomic_output(path) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(code, os.strerror(code), str(tmp))
    message = str(info.value)
    assert message.startswith(f"{path}: cannot write it") and hint in message
    assert ".partial-" not in message
    assert list(tmp_path.iterdir()) == []


def test_an_input_error_inside_the_block_is_not_called_an_output_error(tmp_path):
    """An OSError about another file (an input that vanished) passes through as it is."""
    with pytest.raises(FileNotFoundError):
        with atomic_output(tmp_path / "x.npy"):
            open(tmp_path / "missing-input.mtx")  # noqa: SIM115
    assert list(tmp_path.iterdir()) == []


_SIGTERM_DURING_SWAP = """
import os, signal, sys
from pathlib import Path
from slactl.io.atomic import atomic_output

real_rename = os.rename

def rename(src, dst):
    real_rename(src, dst)
    if ".old-" in str(dst):  # the old store is parked: the swap is half done
        os.kill(os.getpid(), signal.SIGTERM)

os.rename = rename
with atomic_output(Path(sys.argv[1]), force=True) as tmp:
    tmp.mkdir()
    (tmp / "zarr.json").write_text("{}")
    (tmp / "data").write_text("new")
print("SIGTERM was lost")
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_sigterm_during_a_swap_ends_the_process_after_the_old_store_is_removed(tmp_path):
    """SIGTERM's default action ends the process the moment it is re-delivered, so the parked old
    store must be gone before that: the target is the new store and nothing hidden is left."""
    import subprocess
    import sys

    path = tmp_path / "a.zarr"
    _store(path, "old")
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_DURING_SWAP, str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGTERM, proc.stdout + proc.stderr
    assert "SIGTERM was lost" not in proc.stdout
    assert (path / "data").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_every_distinct_signal_held_during_a_swap_is_delivered(tmp_path, monkeypatch):
    """SIGINT and SIGTERM both arrive (SIGINT twice) while the signals are held: each reaches the
    handler the caller had, once, and the KeyboardInterrupt of the first does not swallow the second."""
    path = tmp_path / "a.zarr"
    _store(path, "old")
    real_rename = os.rename
    seen = []

    def rename(src, dst):
        real_rename(src, dst)
        if ".old-" in str(dst):
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(atomic.os, "rename", rename)
    before = signal.signal(signal.SIGTERM, lambda number, frame: seen.append(number))
    try:
        with pytest.raises(KeyboardInterrupt), atomic_output(path, force=True) as tmp:  # SIGINT: the default
            _store(tmp, "new")
    finally:
        signal.signal(signal.SIGTERM, before)
    assert seen == [signal.SIGTERM]
    assert (path / "data").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_ctrl_c_while_the_old_store_is_deleted_is_not_held(tmp_path, monkeypatch):
    """Deleting a large old store takes seconds: a Ctrl-C then lands at once (the new store is in
    place; the old one may stay behind as hidden .partial- debris, which no reader takes)."""
    import time

    path = tmp_path / "a.zarr"
    _store(path, "old")
    real_remove = atomic._remove
    calls = []

    def slow_remove(p):
        calls.append(p)
        if len(calls) == 1:  # the old store's removal: a Ctrl-C arrives during it
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
            calls.append("finished")
        real_remove(p)

    monkeypatch.setattr(atomic, "_remove", slow_remove)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(path, force=True) as tmp:
            _store(tmp, "new")
    assert time.monotonic() - t0 < 4 and "finished" not in calls
    assert (path / "data").read_text() == "new"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-1] == "a.zarr" and all(n.startswith(".a.zarr.partial-") for n in names[:-1])
