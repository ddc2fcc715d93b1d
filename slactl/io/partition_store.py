"""Partition stores: one Binsparse CSR group per rank in local numbering, plus its halo plan.

Layout of ``NAME.zarr``::

    zarr.json                 root group; attrs["slactl_partition"] = manifest (written LAST)
    rank_00000/
        zarr.json             attrs["slactl_rank"]: rank, sizes, checksums of the plan arrays
        matrix/               Binsparse v0.1 CSR (a matrix store, see zarr_store): the owned rows,
                              n_owned x (n_owned + n_halo), columns in LOCAL numbering: owned
                              columns first (in the order of ``owned``), then halo columns
        owned                 int64 [n_owned]   global ids of the owned rows (ascending)
        halo                  int64 [n_halo]    global ids of the halo columns, grouped by owner
                                                rank (ascending), ascending within a group
        send_ranks            int64 [s]         neighbours this rank sends to (ascending)
        send_offsets          int64 [s + 1]     slices of send_index, one per neighbour
        send_index            int64 [..]        LOCAL owned indices to send, in the order the
                                                receiver stores them in its halo
        recv_ranks            int64 [t]         neighbours this rank receives from (ascending)
        recv_offsets          int64 [t + 1]     slices of the halo, one per neighbour
    rank_00001/ ...

This is PETSc's ``PetscSF`` written down: rank ``r``'s ``send_index`` segment for neighbour ``q``
lists exactly the entries that fill ``q``'s halo segment for ``r``, in the same order.

The whole store is written into a hidden sibling and renamed into place, and the manifest (parts,
method, shape, source checksum, slactl version) is the last thing written, so an interrupted write
never validates. Each rank's block is built from CSR row slices of the source (never densified).
:func:`read_rank` opens only the root's attributes and that rank's group: a rank never reads
another rank's data, and nobody materializes the global matrix to solve.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from slactl.errors import FormatError, PartitionError
from slactl.io.atomic import atomic_output
from slactl.io.matrix_data import MatrixData
from slactl.io.zarr_store import _open_group, _reader, _write_array, read_zarr, write_zarr

MANIFEST_KEY = "slactl_partition"
RANK_KEY = "slactl_rank"
FORMAT_VERSION = 1
PLAN_ARRAYS = ("owned", "halo", "send_ranks", "send_offsets", "send_index", "recv_ranks", "recv_offsets")


def rank_group_name(rank: int) -> str:
    return f"rank_{rank:05d}"


@dataclass
class RankBlock:
    """One rank's share of a partitioned matrix, as plain arrays (see the module docstring)."""

    rank: int
    parts: int
    shape: tuple[int, int]
    csr: sp.csr_array
    owned: np.ndarray
    halo: np.ndarray
    send_ranks: np.ndarray
    send_offsets: np.ndarray
    send_index: np.ndarray
    recv_ranks: np.ndarray
    recv_offsets: np.ndarray
    field: str = "real"
    symmetry: str = "general"

    @property
    def n_owned(self) -> int:
        return int(self.owned.size)

    @property
    def n_halo(self) -> int:
        return int(self.halo.size)

    def plan_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name), dtype=np.int64) for name in PLAN_ARRAYS}


class PartitionLayout:
    """Who owns what, and every rank's ghosts, computed once from the global pattern and ``part``.

    :meth:`block` then cuts out one rank's :class:`RankBlock` from CSR row slices.
    """

    def __init__(self, csr: Any, part: np.ndarray):
        self.csr = sp.csr_array(csr)
        n = self.csr.shape[0]
        part = np.asarray(part, dtype=np.int64)
        if self.csr.shape[0] != self.csr.shape[1]:
            raise PartitionError(f"a partition store needs a square matrix, got {self.csr.shape}")
        if part.shape != (n,):
            raise PartitionError(f"the partition has {part.size} entries but the matrix has {n} rows")
        if n and (part.min() < 0):
            raise PartitionError("partition ranks must be non-negative")
        self.parts = int(part.max()) + 1 if n else 1
        counts = np.bincount(part, minlength=self.parts)
        if (counts == 0).any():
            raise PartitionError(f"rank {int(np.argmin(counts))} owns no rows; every rank must own at least one")
        self.n, self.part = n, part
        order = np.argsort(part, kind="stable")  # owned rows of each rank, ascending
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.owned_all = order
        self.local_of = np.empty(n, dtype=np.int64)
        self.local_of[order] = np.arange(n) - self.offsets[part[order]]
        row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.csr.indptr))
        cols = self.csr.indices.astype(np.int64)
        recv = part[row_of]
        cross = recv != part[cols]
        # ghost key = receiver * n + global column; sorted = by receiver, then by column
        self.ghosts = np.unique(recv[cross] * n + cols[cross])
        self._ghost_ptr = np.searchsorted(self.ghosts // max(n, 1), np.arange(self.parts + 1))
        # The same ghosts ordered by sender (owner of the column), then receiver, then column.
        g_col = self.ghosts % max(n, 1)
        self._by_sender = self.ghosts[np.lexsort((g_col, self.ghosts // max(n, 1), part[g_col]))]
        self._sender_ptr = np.searchsorted(part[self._by_sender % max(n, 1)], np.arange(self.parts + 1))

    def owned(self, rank: int) -> np.ndarray:
        return self.owned_all[self.offsets[rank] : self.offsets[rank + 1]]

    def block(self, rank: int) -> RankBlock:
        """Rank ``rank``'s block in local numbering and its halo plan."""
        n = max(self.n, 1)
        owned = self.owned(rank)
        mine = self.ghosts[self._ghost_ptr[rank] : self._ghost_ptr[rank + 1]] % n
        # halo grouped by owner (stable keeps columns ascending within a group)
        halo = mine[np.argsort(self.part[mine], kind="stable")]
        halo_owner = self.part[halo]
        recv_ranks, recv_counts = np.unique(halo_owner, return_counts=True)
        sub = self.csr[owned]  # CSR row slice: the owned rows only
        cols = sub.indices.astype(np.int64)
        local = np.where(self.part[cols] == rank, self.local_of[cols], 0)
        ghost = self.part[cols] != rank
        hkey = halo_owner * n + halo  # ascending by construction
        local[ghost] = owned.size + np.searchsorted(hkey, self.part[cols[ghost]] * n + cols[ghost])
        block = sp.csr_array((sub.data, local, sub.indptr), shape=(owned.size, owned.size + halo.size))
        block.sort_indices()
        sends = self._by_sender[self._sender_ptr[rank] : self._sender_ptr[rank + 1]]
        send_to, send_col = sends // n, sends % n
        send_ranks, send_counts = np.unique(send_to, return_counts=True)
        return RankBlock(
            rank=rank, parts=self.parts, shape=(self.n, self.n), csr=block,
            owned=owned.astype(np.int64), halo=halo.astype(np.int64),
            send_ranks=send_ranks.astype(np.int64), send_offsets=_offsets(send_counts),
            send_index=self.local_of[send_col], recv_ranks=recv_ranks.astype(np.int64),
            recv_offsets=_offsets(recv_counts),
        )


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def source_checksum(csr: Any) -> int:
    """CRC-32 of the source matrix's canonical CSR arrays (little-endian bytes)."""
    crc = 0
    for arr in (csr.indptr.astype("<i8"), csr.indices.astype("<i8"), np.ascontiguousarray(csr.data)):
        crc = zlib.crc32(np.ascontiguousarray(arr).view(np.uint8), crc)
    return crc


def write_partition_store(
    data: MatrixData,
    part: np.ndarray,
    path: str | os.PathLike,
    *,
    method: str = "?",
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Write a partition store (one group per rank, manifest last), atomically.

    Parameters
    ----------
    data : MatrixData
        The global matrix (square).
    part : ndarray of int, shape ``[n]``
        Owner rank of every row (``slactl.dist.partition.partition``).
    path : path-like
        The store directory (conventionally ``NAME.zarr``).
    method : str
        Recorded in the manifest.
    force : bool
        Replace an existing store; otherwise :class:`~slactl.errors.StoreExistsError`.
    progress : callable, optional
        ``progress("partition", ranks_done, parts)``.

    Examples
    --------
    >>> write_partition_store(read("a.mtx"), part, "a.parts.zarr")   # doctest: +SKIP
    """
    from slactl.io.zarr_store import import_zarr

    zarr = import_zarr()

    from slactl import __version__

    path = Path(path)
    layout = PartitionLayout(data.csr, part)
    field = "complex" if data.csr.dtype.kind == "c" else "real"
    with atomic_output(path, force=force) as tmp:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        for rank in range(layout.parts):
            _write_rank(tmp, layout.block(rank), field)
            if progress is not None:
                progress("partition", rank + 1, layout.parts)
        manifest = {
            "format": "slactl-partition", "version": FORMAT_VERSION, "parts": layout.parts,
            "method": method, "shape": [layout.n, layout.n], "nnz": int(data.csr.nnz),
            "field": field, "symmetry": data.symmetry, "source": data.source,
            "source_checksum": source_checksum(data.csr), "writer": f"slactl {__version__}",
        }
        # Written last: the completion marker of the whole store.
        root.update_attributes({MANIFEST_KEY: manifest})
    return path


def _write_rank(root: Path, block: RankBlock, field: str) -> None:
    from slactl.io.zarr_store import import_zarr

    zarr = import_zarr()

    gpath = root / rank_group_name(block.rank)
    group = zarr.open_group(str(gpath), mode="w-", zarr_format=3)
    values = block.csr.data if field == "complex" else block.csr.data.astype(np.float64, copy=False)
    local = sp.csr_array((values, block.csr.indices, block.csr.indptr), shape=block.csr.shape)
    write_zarr(MatrixData(local, field, "general", source=f"rank {block.rank} of {block.parts}"), gpath / "matrix")
    checksums = {name: _write_array(group, name, arr, 1 << 17, 1, lambda k: None)
                 for name, arr in block.plan_arrays().items()}
    group.update_attributes({RANK_KEY: {"rank": block.rank, "parts": block.parts, "n_owned": block.n_owned,
                                        "n_halo": block.n_halo, "checksums": checksums}})


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a complete partition store; :class:`FormatError` otherwise."""
    path = Path(path)
    meta = path / "zarr.json"
    if not path.is_dir():
        raise FormatError("no such partition store (a directory); check the path", path)
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError) as exc:
        raise FormatError(f"not a readable Zarr group ({type(exc).__name__})", path) from None
    manifest = attrs.get(MANIFEST_KEY)
    if not isinstance(manifest, dict) or manifest.get("format") != "slactl-partition":
        raise FormatError("not a partition store (no manifest), or its write never finished; "
                          "re-create it with `slactl partition`", path)
    if manifest.get("version") != FORMAT_VERSION:
        raise FormatError(f"partition store version {manifest.get('version')!r} is not supported (this slactl reads {FORMAT_VERSION})", path)
    return manifest


def is_partition_store(path: str | os.PathLike) -> bool:
    """True for a directory whose root attributes hold a partition manifest (cheap: one small file)."""
    try:
        read_manifest(path)
        return True
    except FormatError:
        return False


def read_rank(path: str | os.PathLike, rank: int, *, world_size: int | None = None) -> RankBlock:
    """Rank ``rank``'s block of a partition store, reading nothing of the other ranks.

    Parameters
    ----------
    path : path-like
        The store.
    rank : int
    world_size : int, optional
        The number of ranks running; :class:`PartitionError` if it differs from the store's parts.
    """
    path = Path(path)
    manifest = read_manifest(path)
    parts = int(manifest["parts"])
    if world_size is not None and int(world_size) != parts:
        raise PartitionError(f"{path} is partitioned for {parts} ranks but {world_size} are running; "
                             f"run with --procs {parts}, or re-partition with --parts {world_size}")
    if not 0 <= int(rank) < parts:
        raise PartitionError(f"rank {rank} is out of range for a store of {parts} parts")
    gpath = path / rank_group_name(int(rank))
    group = _open_group(gpath)
    info = dict(group.attrs).get(RANK_KEY)
    if not isinstance(info, dict) or info.get("rank") != int(rank):
        raise FormatError("rank group has no plan attributes; the store is damaged", gpath)
    read = _reader(group, gpath, info.get("checksums") or {})
    arrays = {name: read(name).astype(np.int64, copy=False) for name in PLAN_ARRAYS}
    csr = read_zarr(gpath / "matrix").csr
    n_own, n_halo = arrays["owned"].size, arrays["halo"].size
    if csr.shape != (n_own, n_own + n_halo):
        raise FormatError(f"the local matrix is {csr.shape} but the plan says {n_own} owned and {n_halo} halo", gpath)
    return RankBlock(rank=int(rank), parts=parts, shape=tuple(manifest["shape"]), csr=csr,
                     field=manifest.get("field", "real"), symmetry=manifest.get("symmetry", "general"), **arrays)
