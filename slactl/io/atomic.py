"""Atomic outputs: write under a temporary sibling name, rename into place only when complete.

A reader therefore sees either the old output, the new one, or nothing: never half a file. A
killed writer leaves only a hidden ``.NAME.partial-XXXX`` sibling, which no reader accepts.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from slactl.errors import FormatError, StoreExistsError, UsageError


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


def _install(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to ``path``, replacing what is there."""
    if not (path.exists() or path.is_symlink()):
        os.rename(tmp, path)
        return
    if tmp.is_file() and not path.is_dir():
        os.replace(tmp, path)  # atomic for files
        return
    # Directories cannot be swapped atomically with the standard library: park the old one under
    # a hidden name first, so a crash in between leaves the old data recoverable, never a mix.
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(path, old)
    os.rename(tmp, path)
    _remove(old)


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
    except BaseException:
        _remove(tmp)
        raise
