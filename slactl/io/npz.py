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
import scipy.sparse as sp

from slactl.errors import FormatError
from slactl.io.atomic import atomic_output
from slactl.io.descriptor import matrix_from_buffers, parse_descriptor
from slactl.io.matrix_data import SYMMETRIES, MatrixData, canonical_csr, check_finite, field_of, validate_csr_arrays

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


def _read_scipy(archive: Any, path: Path, meta: dict, allow_nonfinite: bool) -> MatrixData:
    fmt = _member(archive, "format", path).item()
    fmt = fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else str(fmt)
    shape = tuple(int(s) for s in np.asarray(_member(archive, "shape", path)).reshape(-1))
    if len(shape) != 2 or min(shape) < 0:
        raise FormatError(f"shape {shape} is not two non-negative integers", path)
    values = _member(archive, "data", path)
    if values.ndim != 1:
        raise FormatError("array 'data' is not 1-D", path)
    check_finite(values, allow_nonfinite, "array 'data'", path)
    if fmt in ("csr", "csc"):
        indptr, indices = _member(archive, "indptr", path), _member(archive, "indices", path)
        major = shape if fmt == "csr" else shape[::-1]
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" or indices.shape != values.shape:
            raise FormatError("'indices' and 'indptr' must be integer arrays and match 'data' in length", path)
        validate_csr_arrays(indptr, indices, major, f"{fmt} arrays", path)
        mat = sp.csr_array((values, indices, indptr), shape=shape) if fmt == "csr" else sp.csc_array(
            (values, indices, indptr), shape=shape
        ).tocsr()
    elif fmt == "coo":
        row, col = _member(archive, "row", path), _member(archive, "col", path)
        for arr, size in ((row, shape[0]), (col, shape[1])):
            if arr.shape != values.shape or arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() >= size)):
                raise FormatError("COO 'row'/'col' arrays do not fit 'data' and the shape", path)
        mat = sp.coo_array((values, (row, col)), shape=shape).tocsr()
    else:
        raise FormatError(f"sparse format {fmt!r} is not supported; save the matrix as csr, csc or coo", path)
    field = field_of(mat.data) if mat.data.dtype.kind != "b" else "pattern"
    if meta.get("field") == "pattern" and bool((mat.data == 1).all()):
        field = "pattern"
    data = mat.data.astype(np.float64) if mat.data.dtype.kind == "b" else mat.data
    csr = canonical_csr(data, mat.indices, mat.indptr, shape, field)
    symmetry = meta.get("symmetry", "general")
    if symmetry not in SYMMETRIES:
        raise FormatError(f"slactl metadata declares symmetry {symmetry!r}", path)
    source = meta.get("source") if isinstance(meta.get("source"), str) else path.name
    return MatrixData(csr, field, symmetry, source=source)


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
