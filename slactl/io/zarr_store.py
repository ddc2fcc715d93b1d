"""Zarr v3 matrix stores that are valid Binsparse v0.1 CSR matrices.

Layout of ``NAME.zarr``::

    zarr.json            group; attributes {"binsparse": descriptor, "slactl": metadata}
                         (the descriptor also nests itself under "binsparse": see below)
    pointers_to_1/       row pointers  (m + 1)
    indices_1/           column indices (nnz)
    values/              values (nnz; 2 nnz interleaved for complex; 1 for a pattern: iso)

Arrays are chunked, zstd-compressed and sharded (many chunks per file). The metadata beside the
descriptor records the field, the declared symmetry, the source and a CRC-32 of every array.

Descriptor placement: the Binsparse spec puts the descriptor keys directly under
``attrs["binsparse"]``; the reference ``binsparse`` package (0.1.x) reads and writes them one level
deeper, ``attrs["binsparse"]["binsparse"]``. slactl writes the descriptor in both places (same
object, so they cannot disagree) and reads either.

Completion: the group attributes (descriptor and metadata) are written *last*, into a hidden
temporary directory that is renamed to ``NAME.zarr`` only after they are written. A store whose
write was interrupted therefore either does not exist under its name or has no descriptor, and is
refused; a lost or altered chunk (Zarr would read it as zeros) fails its checksum.

Only public Zarr APIs are used (``zarr.open_group``, ``Group.create_array``, array slicing,
``Group.update_attributes``), imported lazily so that ``import slactl`` stays fast.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from slactl.errors import FormatError
from slactl.io.atomic import atomic_output
from slactl.io.descriptor import encode_csr, matrix_from_buffers, parse_descriptor
from slactl.io.matrix_data import MatrixData

CHUNK_ELEMENTS = 1 << 17
SHARD_CHUNKS = 16
ZSTD_LEVEL = 3
STORE_VERSION = 1
Progress = Callable[[str, int, int], None]


def import_zarr():
    """The zarr module, or one clear error: the stores need it, the rest of slactl does not."""
    try:
        import zarr
    except ImportError as exc:
        from slactl.errors import BackendUnavailableError

        raise BackendUnavailableError(f"reading or writing a Zarr store needs zarr, which is not installed ({exc}): "
                                      "pip install zarr") from exc
    return zarr


def _crc(piece: np.ndarray, crc: int) -> int:
    little = piece.astype(piece.dtype.newbyteorder("<"), copy=False)
    return zlib.crc32(np.ascontiguousarray(little).view(np.uint8), crc)


def _create(group: Any, name: str, arr: np.ndarray, chunk: int, shard_chunks: int) -> Any:
    from zarr.codecs import ZstdCodec

    chunk = max(1, min(chunk, arr.shape[0]))
    shards = None
    if arr.shape[0] > chunk and shard_chunks > 1:
        shards = (chunk * shard_chunks,)
    return group.create_array(
        name,
        shape=arr.shape,
        dtype=arr.dtype,
        chunks=(chunk,),
        shards=shards,
        compressors=ZstdCodec(level=ZSTD_LEVEL),
        fill_value=0,
        # Every chunk is written, even all-zero ones, so a missing chunk file means damage.
        config={"write_empty_chunks": True},
    )


def _write_array(group: Any, name: str, arr: np.ndarray, chunk: int, shard_chunks: int, tick: Callable[[int], None]) -> int:
    """Create ``name`` and fill it one shard at a time (whole shards: no read-modify-write)."""
    z = _create(group, name, arr, chunk, shard_chunks)
    step = max(1, min(chunk, arr.shape[0]) * max(shard_chunks, 1))
    crc = 0
    for start in range(0, arr.shape[0], step):
        piece = arr[start : start + step]
        z[start : start + piece.shape[0]] = piece
        crc = _crc(piece, crc)
        tick(piece.shape[0])
    return crc


def write_zarr(
    data: MatrixData,
    path: str | os.PathLike,
    *,
    force: bool = False,
    chunk_elements: int = CHUNK_ELEMENTS,
    shard_chunks: int = SHARD_CHUNKS,
    progress: Progress | None = None,
) -> Path:
    """Write ``data`` as a Zarr v3 / Binsparse CSR store, atomically.

    Parameters
    ----------
    data : MatrixData
        Matrix and metadata (field, symmetry, source are kept in ``attrs["slactl"]``).
    path : path-like
        The store directory, conventionally ``NAME.zarr``.
    force : bool
        Replace an existing store; otherwise :class:`~slactl.errors.StoreExistsError`.
    chunk_elements, shard_chunks : int
        Elements per compressed chunk and chunks per shard file.
    progress : callable, optional
        ``progress("write", done, total)`` in array elements.

    Examples
    --------
    >>> write_zarr(read_mtx("a.mtx"), "a.zarr")          # doctest: +SKIP
    >>> import binsparse; binsparse.load_binsparse("a.zarr")  # doctest: +SKIP
    CSRMatrix(shape=(...), ...)
    """
    zarr = import_zarr()

    from slactl import __version__

    path = Path(path)
    descriptor, buffers = encode_csr(data)
    total = sum(b.shape[0] for b in buffers.values())
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress("write", done[0], total)

    meta = {
        "store_version": STORE_VERSION,
        "writer": f"slactl {__version__}",
        "field": data.field,
        "symmetry": data.symmetry,
        "source": data.source,
        "checksums": {},
    }
    with atomic_output(path, force=force) as tmp:
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        for name, arr in buffers.items():
            meta["checksums"][name] = _write_array(group, name, arr, chunk_elements, shard_chunks, tick)
        # Written last: the completion marker. Without it the store is refused.
        group.update_attributes({"binsparse": {**descriptor, "binsparse": descriptor}, "slactl": meta})
    return path


def _open_group(path: Path) -> Any:
    zarr = import_zarr()

    if not path.exists():
        raise FormatError("no such store; check the path", path)
    if not path.is_dir():
        raise FormatError("is a file, but a Zarr store is a directory", path)
    try:
        return zarr.open_group(str(path), mode="r")
    except MemoryError:
        raise
    except Exception as exc:  # zarr's exception types differ between versions; all mean "not a group"
        raise FormatError(f"not a readable Zarr group ({type(exc).__name__}: {_short(exc)})", path) from None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] or type(exc).__name__


def _reader(group: Any, path: Path, checksums: dict) -> Callable[[str], np.ndarray]:
    def read(name: str) -> np.ndarray:
        try:
            arr = np.asarray(group[name][...])
        except MemoryError:
            raise
        except KeyError:
            raise FormatError(f"array {name!r} is missing; the store is damaged or not a CSR matrix", path) from None
        except Exception as exc:  # a damaged chunk surfaces as a codec or JSON error, version-dependent
            raise FormatError(f"array {name!r} cannot be read ({type(exc).__name__}: {_short(exc)}); the store is damaged", path) from None
        expected = checksums.get(name)
        if isinstance(expected, int) and _crc(arr.reshape(-1), 0) != expected:
            raise FormatError(
                f"array {name!r} does not match the checksum recorded when it was written (a chunk was lost "
                "or altered); re-create the store from its source",
                path,
            )
        return arr

    return read


def _descriptor(group: Any, path: Path) -> tuple[Any, dict]:
    try:
        attrs = dict(group.attrs)
    except Exception as exc:  # noqa: BLE001 - damaged zarr.json
        raise FormatError(f"group attributes cannot be read ({_short(exc)})", path) from None
    if "binsparse" not in attrs:
        raise FormatError(
            "no Binsparse descriptor (attrs['binsparse']): not a matrix store, or its write never finished",
            path,
        )
    meta = attrs.get("slactl")
    desc = attrs["binsparse"]
    if isinstance(desc, dict) and "format" not in desc and isinstance(desc.get("binsparse"), dict):
        desc = desc["binsparse"]  # the reference package's nesting
    return parse_descriptor(desc, path), meta if isinstance(meta, dict) else {}


def read_zarr_descriptor(path: str | os.PathLike) -> tuple[Any, dict]:
    """(validated descriptor, slactl metadata or {}) without reading the arrays."""
    path = Path(path)
    return _descriptor(_open_group(path), path)


def read_zarr(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> MatrixData:
    """Read a Binsparse matrix (CSR, CSC or COO) from a Zarr group into canonical CSR.

    Stores written by slactl are verified against their recorded checksums. Raises
    :class:`FormatError` for a foreign, incomplete or damaged store.
    """
    path = Path(path)
    group = _open_group(path)
    desc, meta = _descriptor(group, path)
    checksums = meta.get("checksums") if isinstance(meta.get("checksums"), dict) else {}
    data = matrix_from_buffers(desc, _reader(group, path, checksums), path, meta=meta, allow_nonfinite=allow_nonfinite)
    if data.source is None:
        data.source = path.name
    return data
