"""Binsparse v0.1 descriptors and buffers: encode a CSR, decode CSR/CSC/COO from any container.

The descriptor is what the reference ``binsparse`` package (0.1.x) reads and writes::

    {"version": "0.1.0", "format": "CSR", "shape": [m, n], "number_of_stored_values": nnz,
     "data_types": {"pointers_to_1": "int64", "indices_1": "int32", "values": "float64"}}

Value types follow the spec: plain NumPy names, ``complex[float64]`` (real and imaginary parts
interleaved in a float buffer of length 2 nnz), ``iso[T]`` (one value for every entry: how a pattern
matrix is stored) and ``bint8`` (booleans as uint8). Containers (Zarr groups, npz archives) only
supply named arrays; everything else lives here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from slactl.errors import FormatError
from slactl.io.matrix_data import (
    SYMMETRIES,
    MatrixData,
    canonical_csr,
    check_declared_symmetry,
    check_finite,
    coo_to_csr,
    csc_to_csr,
    validate_csr_arrays,
)

VERSION = "0.1.0"
_SCALARS = {
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64",
}
_BUFFERS = {
    "CSR": ("pointers_to_1", "indices_1", "values"),
    "CSC": ("pointers_to_1", "indices_1", "values"),
    "COO": ("indices_0", "indices_1", "values"),
    "COOR": ("indices_0", "indices_1", "values"),
    "COOC": ("indices_0", "indices_1", "values"),
}


@dataclass(frozen=True)
class Descriptor:
    """A validated Binsparse descriptor of a matrix."""

    format: str
    shape: tuple[int, int]
    nnz: int
    data_types: dict

    @property
    def buffers(self) -> tuple[str, ...]:
        return _BUFFERS[self.format]


def encode_csr(data: MatrixData) -> tuple[dict, dict[str, np.ndarray]]:
    """The descriptor and named buffers of ``data`` as a Binsparse CSR matrix."""
    csr = data.csr
    buffers = {"pointers_to_1": np.ascontiguousarray(csr.indptr), "indices_1": np.ascontiguousarray(csr.indices)}
    types = {name: str(arr.dtype) for name, arr in buffers.items()}
    vals = np.ascontiguousarray(csr.data)
    if data.field == "pattern":
        buffers["values"], types["values"] = np.ones(1, dtype=np.uint8), "iso[bint8]"
    elif vals.dtype.kind == "c":
        real = np.float32 if vals.dtype == np.complex64 else np.float64
        buffers["values"] = vals.astype(np.complex128 if real == np.float64 else np.complex64, copy=False).view(real)
        types["values"] = f"complex[{np.dtype(real).name}]"
    else:
        buffers["values"], types["values"] = vals, str(vals.dtype)
    if types["values"] not in _SCALARS and data.field not in ("pattern", "complex"):
        raise FormatError(f"values of dtype {vals.dtype} have no Binsparse type; use float64, int64 or complex128")
    descriptor = {
        "version": VERSION,
        "format": "CSR",
        "shape": [int(csr.shape[0]), int(csr.shape[1])],
        "number_of_stored_values": int(csr.nnz),
        "data_types": types,
    }
    return descriptor, buffers


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def parse_descriptor(desc: Any, path: Any) -> Descriptor:
    """Validate a descriptor (the object under the ``binsparse`` key); FormatError says what is wrong."""
    if not isinstance(desc, dict):
        raise FormatError("the 'binsparse' descriptor is not a JSON object", path)
    version = desc.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"0\.1(\.\d+)?", version):
        raise FormatError(f"Binsparse version {version!r} is not supported; slactl reads version 0.1", path)
    fmt = desc.get("format")
    if fmt not in _BUFFERS:
        raise FormatError(f"Binsparse format {fmt!r} is not supported; slactl reads CSR, CSC and COO matrices", path)
    shape = desc.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_is_count(s) for s in shape)):
        raise FormatError(f"descriptor shape {shape!r} is not two non-negative integers", path)
    nnz = desc.get("number_of_stored_values")
    if not _is_count(nnz):
        raise FormatError(f"number_of_stored_values {nnz!r} is not a non-negative integer", path)
    types = desc.get("data_types")
    if not isinstance(types, dict) or any(not isinstance(types.get(b), str) for b in _BUFFERS[fmt]):
        raise FormatError(f"data_types must name the type of {', '.join(_BUFFERS[fmt])}", path)
    if desc.get("fill") is True:
        raise FormatError("stores with an explicit fill value are not supported", path)
    return Descriptor(fmt, (shape[0], shape[1]), nnz, types)


def _decode_index(raw: np.ndarray, declared: str, name: str, path: Any) -> np.ndarray:
    if declared not in _SCALARS or not declared.startswith(("int", "uint")):
        raise FormatError(f"array {name!r} has data type {declared!r}; indices must be integers", path)
    if raw.ndim != 1 or raw.dtype != np.dtype(declared):
        raise FormatError(f"array {name!r} holds {raw.dtype} {raw.shape} but the descriptor says 1-D {declared}", path)
    return raw


def decode_values(raw: np.ndarray, declared: str, nnz: int, path: Any) -> tuple[np.ndarray, str]:
    """(values of length ``nnz``, Matrix Market field) from a stored buffer and its declared type."""
    iso = re.fullmatch(r"iso\[(.+)\]", declared)
    if iso:
        vals, field = decode_values(raw, iso.group(1), 1, path)
        return np.full(nnz, vals[0], dtype=vals.dtype), field
    cplx = re.fullmatch(r"complex\[(float32|float64)\]", declared)
    if cplx:
        if raw.ndim != 1 or raw.dtype != np.dtype(cplx.group(1)) or raw.shape[0] != 2 * nnz:
            raise FormatError(f"array 'values' holds {raw.dtype} {raw.shape}; expected {2 * nnz} {cplx.group(1)}", path)
        return np.ascontiguousarray(raw).view(np.complex128 if cplx.group(1) == "float64" else np.complex64), "complex"
    if declared == "bint8":
        if raw.ndim != 1 or raw.dtype.kind not in "ub" or raw.shape[0] != nnz:
            raise FormatError(f"array 'values' holds {raw.dtype} {raw.shape}; expected {nnz} bint8", path)
        vals = raw.astype(np.float64)
        return vals, "pattern" if bool((vals == 1).all()) else "real"
    if declared not in _SCALARS:
        raise FormatError(f"values have data type {declared!r}, which slactl cannot read", path)
    if raw.ndim != 1 or raw.dtype != np.dtype(declared) or raw.shape[0] != nnz:
        raise FormatError(f"array 'values' holds {raw.dtype} {raw.shape}; expected {nnz} {declared}", path)
    if raw.dtype.kind in "iu":
        if raw.dtype == np.uint64 and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
            raise FormatError("unsigned values exceed the int64 range slactl uses for integer matrices", path)
        return raw.astype(np.int64, copy=False), "integer"
    return raw, "real"


def _with_path(fn: Callable[..., Any], path: Any, *args: Any) -> Any:
    """``fn(*args)``, its FormatError naming ``path`` (canonical_csr does not know the file)."""
    try:
        return fn(*args)
    except FormatError as exc:
        if exc.path is not None:
            raise
        raise FormatError(str(exc), path) from None


def matrix_from_buffers(
    desc: Descriptor,
    read: Callable[[str], np.ndarray],
    path: Any,
    *,
    meta: dict | None = None,
    allow_nonfinite: bool = False,
) -> MatrixData:
    """Build :class:`MatrixData` from a descriptor and a function that returns each named buffer."""
    meta = meta if isinstance(meta, dict) else {}
    m, n = desc.shape
    values, field = decode_values(read("values"), desc.data_types["values"], desc.nnz, path)
    check_finite(values, allow_nonfinite, "array 'values'", path)
    if desc.format in ("CSR", "CSC"):
        ptr = _decode_index(read("pointers_to_1"), desc.data_types["pointers_to_1"], "pointers_to_1", path)
        idx = _decode_index(read("indices_1"), desc.data_types["indices_1"], "indices_1", path)
        major = (m, n) if desc.format == "CSR" else (n, m)
        validate_csr_arrays(ptr, idx, major, f"{desc.format} arrays", path)
        if idx.shape[0] != desc.nnz:
            raise FormatError(f"indices_1 has {idx.shape[0]} entries but the descriptor says {desc.nnz}", path)
        convert = canonical_csr if desc.format == "CSR" else csc_to_csr
        csr = _with_path(convert, path, values, idx, ptr, (m, n), field)
    else:
        rows = _decode_index(read("indices_0"), desc.data_types["indices_0"], "indices_0", path)
        cols = _decode_index(read("indices_1"), desc.data_types["indices_1"], "indices_1", path)
        if rows.shape[0] != desc.nnz or cols.shape[0] != desc.nnz:
            raise FormatError(f"COO index arrays must have {desc.nnz} entries", path)
        for arr, size, what in ((rows, m, "row"), (cols, n, "column")):
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= size):
                raise FormatError(f"COO {what} indices must lie in [0, {size})", path)
        if desc.format == "COOC":
            rows, cols = cols, rows  # COOC stores the transpose's coordinates
        csr = _with_path(coo_to_csr, path, values, rows, cols, (m, n), field)
    if meta.get("field") == "pattern" and field == "real" and bool((csr.data == 1).all()):
        field = "pattern"
    symmetry = meta.get("symmetry", "general")
    if symmetry not in SYMMETRIES:
        raise FormatError(f"slactl metadata declares symmetry {symmetry!r}, not one of {', '.join(SYMMETRIES)}", path)
    source = meta.get("source")
    data = MatrixData(csr, field, symmetry, source=source if isinstance(source, str) else None)
    check_declared_symmetry(data, path)  # writers exploit it: a false claim would change the matrix
    return data
