"""``.npz`` matrices: SciPy's ``save_npz`` layout plus slactl metadata; Binsparse npz is read too.

slactl writes the keys ``scipy.sparse.load_npz`` expects (``format``, ``shape``, ``data``,
``indices``, ``indptr``) and one more, ``slactl``: a JSON string with the field, symmetry and
source (a plain unicode array, so no pickle is ever needed). The archive is not compressed: npz
is the fast-load format; Zarr is the compressed one.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from slactl.errors import FormatError
from slactl.io.atomic import atomic_output
from slactl.io.descriptor import matrix_from_buffers, parse_descriptor
from slactl.io.matrix_data import (SYMMETRIES, MatrixData, canonical_csr, check_declared_symmetry, check_finite, coo_to_csr,
                                  csc_to_csr, field_of, validate_csr_arrays)

_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError)


def write_npz(data: MatrixData, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write ``data`` so that both slactl and ``scipy.sparse.load_npz`` read it back exactly."""
    path = Path(path)
    csr = data.csr
    meta = {"field": data.field, "symmetry": data.symmetry, "source": data.source}
    arrays = {
        "format": np.array(b"csr"),
        "shape": np.array(csr.shape, dtype=np.int64),
        "data": csr.data,
        "indices": csr.indices,
        "indptr": csr.indptr,
        "slactl": np.array(json.dumps(meta)),
    }
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, **arrays)
    return path


def _member(archive: Any, name: str, path: Path) -> np.ndarray:
    try:
        return archive[name]
    except MemoryError:
        raise
    except KeyError:
        raise FormatError(f"archive has no {name!r} array; not a sparse matrix archive", path) from None
    except _ARCHIVE_ERRORS as exc:
        raise FormatError(f"array {name!r} cannot be read ({type(exc).__name__}: {exc}); the archive is damaged", path) from None


def _meta(archive: Any, path: Path) -> dict:
    if "slactl" not in archive.files:
        return {}
    try:
        meta = json.loads(str(_member(archive, "slactl", path)))
    except json.JSONDecodeError:
        raise FormatError("the 'slactl' metadata is not valid JSON", path) from None
    if not isinstance(meta, dict):
        raise FormatError("the 'slactl' metadata is not a JSON object", path)
    return meta


def _format_name(archive: Any, path: Path) -> str:
    raw = np.asarray(_member(archive, "format", path))
    if raw.size != 1 or raw.dtype.kind not in "SU":
        raise FormatError(f"the 'format' entry must be one string ('csr', 'csc' or 'coo'), found {raw.size} "
                          f"element(s) of dtype {raw.dtype}; the archive was not written by scipy.sparse.save_npz", path)
    fmt = raw.reshape(-1)[0]
    return fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else str(fmt)


def _values(archive: Any, path: Path) -> np.ndarray:
    """The 'data' array, in a dtype scipy.sparse (and slactl) can hold: float16 is widened (exactly)."""
    values = _member(archive, "data", path)
    if values.ndim != 1:
        raise FormatError("array 'data' is not 1-D", path)
    kind = values.dtype.kind
    if kind == "f" and values.dtype.itemsize < 4:
        return values.astype(np.float32)  # float16: every value is exact in float32
    if kind not in "biufc" or (kind == "f" and values.dtype.itemsize > 8) or (kind == "c" and values.dtype.itemsize > 16):
        raise FormatError(f"array 'data' holds values of dtype {values.dtype}; a matrix needs float, integer, "
                          "complex or bool values (float32/float64, int, complex64/complex128)", path)
    return values


def _field(values: np.ndarray, meta: dict) -> str:
    """The Matrix Market field of stored values: booleans, or ones the metadata calls a pattern."""
    if values.dtype.kind == "b":
        return "pattern"
    if meta.get("field") == "pattern" and bool((values == 1).all()):
        return "pattern"
    return field_of(values)


def _read_scipy(archive: Any, path: Path, meta: dict, allow_nonfinite: bool) -> MatrixData:
    fmt = _format_name(archive, path)
    shape = tuple(int(s) for s in np.asarray(_member(archive, "shape", path)).reshape(-1))
    if len(shape) != 2 or min(shape) < 0:
        raise FormatError(f"shape {shape} is not two non-negative integers", path)
    values = _values(archive, path)
    check_finite(values, allow_nonfinite, "array 'data'", path)
    field = _field(values, meta)
    values = values.astype(np.float64) if values.dtype.kind == "b" else values
    if fmt in ("csr", "csc"):
        indptr, indices = _member(archive, "indptr", path), _member(archive, "indices", path)
        major = shape if fmt == "csr" else shape[::-1]
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" or indices.shape != values.shape:
            raise FormatError("'indices' and 'indptr' must be integer arrays and match 'data' in length", path)
        validate_csr_arrays(indptr, indices, major, f"{fmt} arrays", path)
        args = (values, indices, indptr)
        convert = canonical_csr if fmt == "csr" else csc_to_csr
    elif fmt == "coo":
        row, col = _member(archive, "row", path), _member(archive, "col", path)
        for arr, size in ((row, shape[0]), (col, shape[1])):
            if arr.shape != values.shape or arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() >= size)):
                raise FormatError("COO 'row'/'col' arrays do not fit 'data' and the shape", path)
        args, convert = (values, row, col), coo_to_csr
    else:
        raise FormatError(f"sparse format {fmt!r} is not supported; save the matrix as csr, csc or coo", path)
    try:
        csr = convert(*args, shape, field)
    except FormatError as exc:  # duplicates whose integer sum overflows: name the file
        raise FormatError(str(exc), path) from None
    symmetry = meta.get("symmetry", "general")
    if symmetry not in SYMMETRIES:
        raise FormatError(f"slactl metadata declares symmetry {symmetry!r}", path)
    source = meta.get("source") if isinstance(meta.get("source"), str) else path.name
    out = MatrixData(csr, field, symmetry, source=source)
    check_declared_symmetry(out, path)
    return out


def read_npz(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> MatrixData:
    """Read a SciPy-style (``save_npz``) or Binsparse npz archive into canonical CSR."""
    path = Path(path)
    if not path.is_file():
        raise FormatError("no such file; check the path" if not path.exists() else "is not a file", path)
    try:
        archive = np.load(path, allow_pickle=False)
    except MemoryError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise FormatError(f"not a readable npz archive ({type(exc).__name__}: {exc})", path) from None
    if not hasattr(archive, "files"):
        raise FormatError("holds a single array, not a sparse matrix archive", path)
    with archive:
        meta = _meta(archive, path)
        if "binsparse" in archive.files:
            try:
                header = json.loads(str(_member(archive, "binsparse", path)))
            except json.JSONDecodeError:
                raise FormatError("the 'binsparse' entry is not valid JSON", path) from None
            desc = parse_descriptor(header.get("binsparse") if isinstance(header, dict) else None, path)
            data = matrix_from_buffers(desc, lambda name: _member(archive, name, path), path, meta=meta,
                                       allow_nonfinite=allow_nonfinite)
            data.source = data.source or path.name
            return data
        return _read_scipy(archive, path, meta, allow_nonfinite)
