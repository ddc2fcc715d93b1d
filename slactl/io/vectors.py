"""Dense vectors and blocks of vectors on disk: right-hand sides and solutions (.npy, .mtx, .zarr, .txt)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from slactl.errors import FormatError, UsageError
from slactl.io.atomic import atomic_output, check_writable

VECTOR_SUFFIXES = (".npy", ".mtx", ".txt", ".zarr")


def _suffix(path: Path) -> str:
    s = path.suffix.lower()
    if s not in VECTOR_SUFFIXES:
        raise UsageError(f"{path}: a vector file must end in one of {', '.join(VECTOR_SUFFIXES)}")
    return s


def read_vector(path: str | os.PathLike) -> np.ndarray:
    """A vector ``[n]`` or block ``[n, k]`` from .npy, .mtx (array or coordinate), .txt or a zarr array."""
    path = Path(path)
    s = _suffix(path)
    if not path.exists():
        raise FormatError("no such file; check the path", path)
    try:
        if s == ".npy":
            data = np.load(path, allow_pickle=False)
        elif s == ".txt":
            data = np.loadtxt(path, ndmin=1)
        elif s == ".mtx":
            import scipy.io
            import scipy.sparse as sp

            data = scipy.io.mmread(str(path))
            data = data.toarray() if sp.issparse(data) else np.asarray(data)
        else:
            from slactl.io.zarr_store import import_zarr

            zarr = import_zarr()

            data = np.asarray(zarr.open_array(str(path), mode="r")[...])
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file to the user
        raise FormatError(f"cannot read a vector from it ({type(exc).__name__}: {exc})", path) from None
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if data.ndim not in (1, 2) or not np.issubdtype(data.dtype, np.number):
        raise FormatError(f"expected a numeric [n] or [n, k] array, got shape {data.shape} of {data.dtype}", path)
    if not np.isfinite(data).all():
        bad = int(np.flatnonzero(~np.isfinite(data).reshape(data.shape[0], -1).all(axis=1))[0])
        raise FormatError(f"row {bad + 1} holds a NaN or an infinity; a right-hand side must be finite", path)
    return data


def check_vector_output(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse a bad output path for :func:`write_vector` before any work is done."""
    path = Path(path)
    _suffix(path)
    check_writable(path, force)
    return path


def write_vector(x: np.ndarray, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write ``x`` atomically (temporary sibling, then rename); refuse to overwrite unless ``force``,
    and never replace a directory that is not a Zarr store."""
    path = check_vector_output(path, force=force)
    s = _suffix(path)
    with atomic_output(path, force=force) as tmp:
        if s == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, x)
        elif s == ".txt":
            np.savetxt(tmp, x)
        elif s == ".mtx":
            import scipy.io

            with open(tmp, "wb") as f:
                scipy.io.mmwrite(f, x.reshape(x.shape[0], -1))
        else:
            from slactl.io.zarr_store import import_zarr

            import_zarr().save_array(str(tmp), x)
    return path
