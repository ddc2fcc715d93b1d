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

    Run only for files with entries in both triangles (rare): it holds the coordinates of every
    off-diagonal entry once more, sorted. Named is the pair the file contradicts itself on first:
    the smallest, over the pairs, of the later of their first listings on each side."""
    high, low, upper, ordinal = [], [], [], []
    start = 0
    for block in sink.blocks(values=False):
        off = np.flatnonzero(block.rows != block.cols)
        rows, cols = block.rows[off], block.cols[off]
        high.append(np.maximum(rows, cols))
        low.append(np.minimum(rows, cols))
        upper.append(rows < cols)
        ordinal.append(off + start)
        start += block.rows.shape[0]
    if not high:
        return None
    high, low, upper, ordinal = (np.concatenate(parts) for parts in (high, low, upper, ordinal))
    # by pair, then side, the lower side's listings last-first and the upper side's first-first:
    # where a pair changes side between neighbours, the two are its first listing on each side
    order = np.lexsort((np.where(upper, ordinal, -ordinal), upper, low, high))
    high, low, upper, ordinal = high[order], low[order], upper[order], ordinal[order]
    both = np.flatnonzero((high[1:] == high[:-1]) & (low[1:] == low[:-1]) & (upper[1:] != upper[:-1]))
    if both.size == 0:
        return None
    later = np.maximum(ordinal[both], ordinal[both + 1])
    k = int(both[np.argmin(later)])
    first, second = sorted((int(ordinal[k]), int(ordinal[k + 1])))
    second_upper = bool(upper[k] if ordinal[k] == second else upper[k + 1])
    row, col = (int(low[k]), int(high[k])) if second_upper else (int(high[k]), int(low[k]))
    return first, second, row, col


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
