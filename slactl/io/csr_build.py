"""Build a canonical CSR from COO blocks in two passes, with memory close to the result's size.

While the text is parsed, the blocks are kept either in memory (:class:`MemorySink`) or in raw
binary files on disk (:class:`DiskSink`, for conversions of matrices too large to hold twice).
Once the whole body has been read and checked, pass 1 counts the entries of every row and pass 2
scatters each block straight into its final CSR position (a counting sort, one block at a time);
SciPy then sorts the columns within each row and sums duplicates in place. Symmetric files are
expanded here, block by block, so the mirrored half is never held twice. Nothing of size "rows"
is allocated before the body has been validated: a corrupted size line cannot claim memory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import scipy.sparse as sp

from slactl.errors import OutputError
from slactl.io.matrix_data import canonical_csr, index_dtype
from slactl.io.mtx_body import CooBlock

# Spilled entries are read back in pieces of 1/32 of the total, within these bounds: small enough
# that the scatter's temporaries stay a fraction of the matrix, large enough to amortize numpy calls.
_READBACK_MIN, _READBACK_MAX = 1 << 16, 1 << 21


def mirror(block: CooBlock, symmetry: str) -> CooBlock:
    """The entries a symmetric file leaves implicit: (j, i) for every stored (i, j) with i != j."""
    off = block.rows != block.cols
    vals = None
    if block.values is not None:
        vals = block.values[off]
        if symmetry == "skew-symmetric":
            vals = -vals
        elif symmetry == "hermitian":
            vals = np.conj(vals)
    return CooBlock(block.cols[off], block.rows[off], vals)


class MemorySink:
    """Keeps COO blocks in memory, with the most compact index dtype."""

    def __init__(self, nrows: int, ncols: int, symmetry: str):
        self.nrows, self.symmetry = nrows, symmetry
        self._idx = index_dtype(nrows, ncols, 0)
        self._blocks: list[CooBlock] = []

    def add(self, block: CooBlock) -> None:
        self._store(CooBlock(block.rows.astype(self._idx), block.cols.astype(self._idx), block.values))

    def _store(self, block: CooBlock) -> None:
        self._blocks.append(block)

    def blocks(self, consume: bool = False, values: bool = True) -> Iterator[CooBlock]:
        """The stored blocks; with ``consume`` each is released once the caller moves on.
        ``values=False`` lets a sink skip reading values it would only throw away."""
        if not consume:
            yield from self._blocks
            return
        while self._blocks:
            yield self._blocks.pop(0)

    def close(self) -> None:
        self._blocks.clear()


class DiskSink(MemorySink):
    """Spills COO blocks to raw binary files in a private temporary directory.

    The directory is created beside the output (same file system, and the user chose that disk
    for a large file) and removed by :meth:`close`.
    """

    def __init__(self, nrows: int, ncols: int, symmetry: str, directory: str | os.PathLike):
        super().__init__(nrows, ncols, symmetry)
        self._where = Path(directory)
        self._dir = None
        self._files = {}
        try:
            self._dir = tempfile.TemporaryDirectory(prefix=".slactl-spill-", dir=directory)
            base = Path(self._dir.name)
            self._files = {name: open(base / name, "w+b") for name in ("rows", "cols", "values")}
        except OSError as exc:
            self.close()
            raise self._cannot_spill(exc) from exc
        self._value_dtype: np.dtype | None = None
        self._n = 0

    def _cannot_spill(self, exc: OSError) -> OutputError:
        # the user knows the output's directory, not the hidden spill files in it
        return OutputError(
            f"{self._where}: cannot write the temporary files of a large conversion there "
            f"({exc.strerror or exc}); free space or write the output to another directory"
        )

    def _store(self, block: CooBlock) -> None:
        try:
            block.rows.tofile(self._files["rows"])
            block.cols.tofile(self._files["cols"])
            if block.values is not None:
                self._value_dtype = block.values.dtype
                block.values.tofile(self._files["values"])
        except OSError as exc:
            raise self._cannot_spill(exc) from exc
        self._n += len(block.rows)

    def blocks(self, consume: bool = False, values: bool = True) -> Iterator[CooBlock]:
        for f in self._files.values():
            f.flush()
        step = min(max(self._n // 32, _READBACK_MIN), _READBACK_MAX)
        for start in range(0, self._n, step):
            count = min(step, self._n - start)
            rows = self._read("rows", self._idx, start, count)
            cols = self._read("cols", self._idx, start, count)
            vals = None
            if values and self._value_dtype is not None:
                vals = self._read("values", self._value_dtype, start, count)
            yield CooBlock(rows, cols, vals)

    def _read(self, name: str, dtype: np.dtype, start: int, count: int) -> np.ndarray:
        f = self._files[name]
        f.seek(start * np.dtype(dtype).itemsize)
        return np.fromfile(f, dtype=dtype, count=count)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        if self._dir is not None:
            self._dir.cleanup()


def pair_in_both_triangles(sink: MemorySink) -> tuple[int, int, int, int] | None:
    """An off-diagonal pair a symmetric kind of file lists from both triangles, (i, j) and (j, i),
    as (ordinal of the earlier entry, ordinal of the later one, row, column of the later one),
    0-based, or None. Each side implies the other, so such a file states the pair twice, perhaps
    with values that contradict each other; summing them would silently double it.

    Run only for files with entries in both triangles (rare). The test folds each off-diagonal
    entry to one int64 key per side (8 bytes per entry, the keys of each side sorted once); only
    when a key is on both sides are those entries' positions found, for the error to name the pair
    the file contradicts itself on first: the smallest, over the pairs, of the later of their first
    listings on each side."""
    n = sink.nrows
    sides: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for block in sink.blocks(values=False):
        key, upper = _pair_keys(block, n)
        sides[0].append(key[~upper])
        sides[1].append(key[upper])
    if not sides[0]:
        return None
    # np.sort and searchsorted, not np.unique / intersect1d / isin: NumPy 2.4's unique of 10M int64
    # keys takes ~13 s here against 0.7 s for the sort
    lower_keys, upper_keys = (np.sort(np.concatenate(parts)) for parts in sides)
    at = np.minimum(np.searchsorted(upper_keys, lower_keys), max(upper_keys.size - 1, 0))
    clash = lower_keys[upper_keys[at] == lower_keys] if upper_keys.size else lower_keys[:0]
    del lower_keys, upper_keys, at
    if clash.size == 0:
        return None
    return _first_contradiction(sink, n, clash[np.r_[True, clash[1:] != clash[:-1]]])  # sorted, unique


def _pair_keys(block: CooBlock, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per entry of ``block``: the key ``high * n + low`` of its pair (-1 on the diagonal) and
    whether it lies above the diagonal."""
    rows, cols = block.rows.astype(np.int64), block.cols.astype(np.int64)
    key = np.maximum(rows, cols) * n + np.minimum(rows, cols)
    key[rows == cols] = -1
    return key, rows < cols


def _members(key: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(key, sorted_set)``, faster: the keys are sorted first, since a binary search of
    keys in increasing order walks the sorted set once (random keys: ~1 us each in cache misses)."""
    order = np.argsort(key)
    at = np.minimum(np.searchsorted(sorted_set, key[order]), sorted_set.size - 1)
    hit = np.empty(key.shape[0], dtype=bool)
    hit[order] = sorted_set[at] == key[order]
    return hit


def _first_contradiction(sink: MemorySink, n: int, clash: np.ndarray) -> tuple[int, int, int, int]:
    """:func:`pair_in_both_triangles`'s answer from the entries whose pair key is in ``clash``
    (sorted, unique): each clashing pair's first listing on each side, then the pair whose later
    first listing comes first."""
    keys: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    ordinals: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    start = 0
    for block in sink.blocks(values=False):
        key, up = _pair_keys(block, n)
        hit = _members(key, clash)
        for side, mask in enumerate((hit & ~up, hit & up)):
            where = np.flatnonzero(mask)
            keys[side].append(key[where])
            ordinals[side].append(where + start)
        start += block.rows.shape[0]
    first = []
    for side in (0, 1):  # every clashing key is on both sides: each side's firsts line up with clash
        key, ordinal = np.concatenate(keys[side]), np.concatenate(ordinals[side])
        order = np.argsort(key, kind="stable")  # ordinals ascend within a key
        key, ordinal = key[order], ordinal[order]
        first.append(ordinal[np.r_[True, key[1:] != key[:-1]]])
    later = np.maximum(first[0], first[1])
    m = int(np.argmin(later))
    second_upper = bool(first[1][m] > first[0][m])
    high, low = divmod(int(clash[m]), n)
    row, col = (low, high) if second_upper else (high, low)
    return int(min(first[0][m], first[1][m])), int(later[m]), row, col


def _scatter(block: CooBlock, next_free: np.ndarray, indices: np.ndarray, data: np.ndarray | None) -> None:
    """Put a block's entries at their rows' next free CSR slots (stable counting sort)."""
    b = block.rows.shape[0]
    if b == 0:
        return
    order = np.argsort(block.rows, kind="stable")
    rows = block.rows[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    run_len = np.diff(np.r_[starts, b])
    rank = np.arange(b, dtype=np.int64) - np.repeat(starts, run_len)
    pos = next_free[rows] + rank
    indices[pos] = block.cols[order]
    if data is not None:
        data[pos] = block.values[order]
    next_free[rows[starts]] += run_len


def build_csr(
    sink: MemorySink,
    shape: tuple[int, int],
    field: str,
    value_dtype: np.dtype,
    progress: Callable[[int], None] | None = None,
) -> sp.csr_array:
    """Count entries per row, then scatter the sink's blocks (and mirrors) into one canonical CSR."""
    m, n = shape
    counts = np.zeros(m, dtype=np.int64)
    for block in sink.blocks(values=False):
        np.add.at(counts, block.rows, 1)  # O(block), whatever the number of rows
        if sink.symmetry != "general":
            np.add.at(counts, block.cols[block.rows != block.cols], 1)
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    del counts
    nnz = int(indptr[-1])
    idx = index_dtype(m, n, nnz)
    indices = np.empty(nnz, dtype=idx)
    pattern = field == "pattern"
    data = np.ones(nnz, dtype=value_dtype) if pattern else np.empty(nnz, dtype=value_dtype)
    next_free = indptr[:-1].copy()
    done = 0
    for block in sink.blocks(consume=True):
        _scatter(block, next_free, indices, None if pattern else data)
        if sink.symmetry != "general":
            _scatter(mirror(block, sink.symmetry), next_free, indices, None if pattern else data)
        done += len(block.rows)
        if progress is not None:
            progress(done)
    sink.close()
    del next_free
    return canonical_csr(data, indices, indptr.astype(idx, copy=False), shape, field)
