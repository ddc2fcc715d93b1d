"""Atomic outputs: write under a temporary sibling name, rename into place only when complete.

A reader therefore sees either the old output, the new one, or nothing: never half a file. A
killed writer leaves only a hidden ``.NAME.partial-XXXX`` sibling, which no reader accepts.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from slactl.errors import FormatError, OutputError, SlactlError, StoreExistsError, UsageError

# errors of the file system the output goes to, whatever file they name
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}
_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded: free space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EFBIG: "the file is larger than this file system allows: write elsewhere",
    errno.EACCES: "no permission to write there: pick a directory you can write to",
    errno.EPERM: "no permission to write there: pick a directory you can write to",
}


def _is_zarr_dir(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def check_writable(path: Path, force: bool) -> None:
    """Refuse an existing output unless ``force``; never replace a directory that is not a store."""
    if not path.parent.is_dir():
        raise UsageError(f"{path}: directory {path.parent} does not exist; create it first")
    if not (path.exists() or path.is_symlink()):
        return
    if not force:
        raise StoreExistsError(f"{path} already exists; pass force=True (--force) to replace it")
    if path.is_dir() and not _is_zarr_dir(path):
        raise UsageError(f"{path} is a directory but not a Zarr store; refusing to replace it, even with force")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM until the block ends: a Ctrl-C then lands after the old output is
    replaced, never between the two renames of a directory swap.

    Python-level handlers, not a signal mask: in a process with other threads (torch's, zarr's) the
    kernel hands a signal to any thread that does not mask it, and Python then raises in the main
    thread all the same. Only the main thread can install handlers; elsewhere nothing is held.

    Whatever must happen before a held signal takes effect belongs inside the block: SIGTERM's
    default action ends the process the moment it is re-delivered, with no ``finally`` run."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: installed from C, cannot be put back
            previous[signum] = signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield received  # the signals held so far (the block may finish its work before they land)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _redeliver(list(dict.fromkeys(received)))  # each distinct signal once, in arrival order


def _redeliver(signums: list[int]) -> None:
    """Raise each of ``signums`` to the handler the caller had, even when an earlier one raises
    (SIGINT's KeyboardInterrupt must not swallow a SIGTERM that came with it)."""
    if not signums:
        return
    try:
        signal.raise_signal(signums[0])
    finally:
        _redeliver(signums[1:])


def _install(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to ``path``, replacing what is there."""
    if not (path.exists() or path.is_symlink()):
        os.rename(tmp, path)
        return
    if tmp.is_file() and not path.is_dir():
        os.replace(tmp, path)  # atomic for files
        return
    # Directories cannot be swapped atomically with the standard library: park the old one under
    # a hidden name first, and put it back if the second rename fails, so that the user's data is
    # never left under the hidden name. Signals wait until both renames are done and the parked
    # copy is renamed to a .partial- name (the debris a killed writer may leave, which no reader
    # takes): a SIGTERM re-delivered earlier would end the process with it under the .old- name.
    # The removal runs after the signals are released (a large old store takes seconds to delete,
    # and a Ctrl-C then must not wait for it), unless a signal arrived during the swap: then it
    # runs first, since the re-delivered signal would leave the debris behind.
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    with _signals_deferred() as held:
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        debris = partial_name(path)
        os.rename(old, debris)
        if held:  # a signal waits: it lands after the clean-up, so that it leaves nothing behind
            _remove(debris)
    _remove(debris)  # (a Ctrl-C now may leave the .partial- debris, never the user's data)


def _output_error(exc: OSError, path: Path, tmp: Path) -> OutputError | None:
    """An :class:`OutputError` naming ``path`` when ``exc`` came from writing it, else None."""
    named = [Path(f) for f in (exc.filename, exc.filename2) if f]
    ours = any(f == path or f == tmp or tmp in f.parents or f.name.startswith(f".{path.name}.") for f in named)
    if not (ours or exc.errno in _OUTPUT_ERRNOS):
        return None
    reason = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno)
    return OutputError(f"{path}: cannot write it ({reason})" + (f"; {hint}" if hint else ""))


def partial_name(path: Path) -> Path:
    """The hidden sibling a write goes to before it is complete."""
    return path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it to ``path``.

    Raises :class:`StoreExistsError` if ``path`` exists and ``force`` is false. On any exception
    (KeyboardInterrupt included) the temporary output is removed and ``path`` is untouched.

    Examples
    --------
    >>> with atomic_output("out.npz") as tmp:   # doctest: +SKIP
    ...     write_to(tmp)
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise UsageError(f"{path!s} is not a file name")
    check_writable(path, force)
    tmp = partial_name(path)
    try:
        yield tmp
        if not (tmp.exists()):
            raise FormatError("the writer produced no output", path)
        check_writable(path, force)  # someone may have created it meanwhile
        _install(tmp, path)
    except OSError as exc:
        _remove(tmp)
        # slactl's own OSError subclasses (StoreExistsError...) pass through as they are
        mapped = None if isinstance(exc, SlactlError) else _output_error(exc, path, tmp)
        if mapped is None:
            raise
        raise mapped from exc
    except BaseException:
        _remove(tmp)
        raise
