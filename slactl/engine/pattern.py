"""The sparsity pattern of a CSR matrix, and the symbolic work that depends only on it.

A :class:`Pattern` is immutable. Everything that depends only on the pattern (row indices of each
nonzero, the transpose permutation, the union with another pattern, the symbolic product with
another pattern, a block-diagonal copy for batched values) is computed once and cached on it, so a
training loop that changes values but not the pattern pays the symbolic cost once (the numeric /
symbolic split of every serious sparse library).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import warnings

import numpy as np
import torch

from slactl.errors import UsageError

# torch marks its CSR support "beta" on every construction; slactl owns the invariants it skips.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

_INT32_MAX = 2**31 - 1
# Symbolic results keyed by another pattern are kept in a small LRU so that a loop building a new
# pattern every step cannot grow memory without bound.
_PAIR_CACHE_SIZE = 8


def index_dtype_for(*sizes: int) -> torch.dtype:
    """int32 when every index and offset fits (the fast path of cuSPARSE and MKL), else int64."""
    return torch.int32 if max(sizes, default=0) <= _INT32_MAX else torch.int64


class Pattern:
    """CSR structure: ``crow`` (m + 1 offsets), ``col`` (nnz column indices, sorted within each row,
    no duplicates) and ``shape`` (m, n). Construct through :meth:`from_coo` or trusted CSR arrays."""

    __slots__ = ("crow", "col", "shape", "_row", "_cache", "_pair_cache", "__weakref__")

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, shape: tuple[int, int]):
        self.crow = crow
        self.col = col
        self.shape = (int(shape[0]), int(shape[1]))
        self._row: torch.Tensor | None = None
        self._cache: dict[Any, Any] = {}
        self._pair_cache: OrderedDict[Any, Any] = OrderedDict()

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_coo(
        cls, row: torch.Tensor, col: torch.Tensor, shape: tuple[int, int]
    ) -> tuple["Pattern", torch.Tensor]:
        """Sort and deduplicate COO coordinates.

        Returns the pattern and ``inverse``: COO entry ``k`` lands on CSR position ``inverse[k]``,
        so CSR values are ``zeros(nnz).index_add(0, inverse, coo_values)`` (duplicates summed).
        """
        m, n = int(shape[0]), int(shape[1])
        keys = row.to(torch.int64) * n + col.to(torch.int64)
        uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        idx = index_dtype_for(m, n, uniq.numel())
        urow = torch.div(uniq, n, rounding_mode="floor") if n > 0 else uniq
        ucol = uniq - urow * n
        counts = torch.bincount(urow, minlength=m) if m > 0 else urow.new_zeros(0)
        crow = torch.zeros(m + 1, dtype=torch.int64, device=row.device)
        crow[1:] = torch.cumsum(counts, 0)
        pat = cls(crow.to(idx), ucol.to(idx), (m, n))
        pat._row = urow.to(idx)
        return pat, inverse

    # ---------------------------------------------------------------------------------- basics
    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.col.device

    @property
    def index_dtype(self) -> torch.dtype:
        return self.col.dtype

    @property
    def row(self) -> torch.Tensor:
        """Row index of every stored entry (COO rows), computed once."""
        if self._row is None:
            m = self.shape[0]
            counts = self.crow[1:] - self.crow[:-1]
            if self.device.type == "cpu":  # numpy's repeat is several times faster than torch's here
                crow = self.crow.numpy()
                self._row = torch.from_numpy(np.repeat(np.arange(m, dtype=crow.dtype), np.diff(crow)))
            else:
                self._row = torch.repeat_interleave(
                    torch.arange(m, device=self.device, dtype=self.index_dtype), counts.to(torch.int64), output_size=self.nnz
                )
        return self._row

    def keys(self) -> torch.Tensor:
        """Row-major linear index ``row * n + col`` of every entry (int64, sorted ascending)."""
        return self.row.to(torch.int64) * self.shape[1] + self.col.to(torch.int64)

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """Memoize ``build()`` on this pattern under ``key``."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def cached_pair(self, op: str, other: "Pattern", build: Callable[[], Any]) -> Any:
        """Memoize a symbolic result that depends on this pattern and ``other``.

        The entry keeps ``other`` alive, so its ``id`` cannot be reused while the entry exists. With
        ``other`` this pattern itself (``A @ A``) the entry goes with the single-pattern results, so
        that no reference cycle holds it (and its O(nnz) arrays) until the garbage collector runs.
        """
        if other is self:
            return self.cached((op, "self"), build)
        key = (op, id(other))
        hit = self._pair_cache.get(key)
        if hit is not None and hit[0] is other:
            self._pair_cache.move_to_end(key)
            return hit[1]
        value = build()
        self._pair_cache[key] = (other, value)
        if len(self._pair_cache) > _PAIR_CACHE_SIZE:
            self._pair_cache.popitem(last=False)
        return value

    def same_as(self, other: "Pattern") -> bool:
        """True when both patterns have the same shape and stored coordinates."""
        if other is self:
            return True
        if self.shape != other.shape or self.nnz != other.nnz or self.device != other.device:
            return False
        return self.cached_pair(
            "same",
            other,
            lambda: bool(torch.equal(self.crow.to(torch.int64), other.crow.to(torch.int64)))
            and bool(torch.equal(self.col.to(torch.int64), other.col.to(torch.int64))),
        )

    def to(self, device: torch.device | str) -> "Pattern":
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            # "cuda" means the current CUDA device; compared as such, it is not a move
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self

        def build() -> Pattern:
            pat = Pattern(self.crow.to(device), self.col.to(device), self.shape)
            if self._row is not None:
                pat._row = self._row.to(device)
            return pat

        return self.cached(("to", str(device)), build)

    # --------------------------------------------------------------------------- symbolic ops
    def transpose(self) -> tuple["Pattern", torch.Tensor]:
        """Pattern of the transpose and ``perm`` with ``values_T = values[..., perm]``."""

        def build() -> tuple[Pattern, torch.Tensor]:
            m, n = self.shape
            if self.device.type == "cpu":
                # SciPy's CSR -> CSC conversion is an O(nnz) counting sort; carrying the entry
                # numbers as data yields the permutation.
                import scipy.sparse as sp

                nd = self.col.numpy().dtype
                csc = sp.csr_array((np.arange(self.nnz, dtype=nd), self.col.numpy(), self.crow.numpy()), shape=(m, n)).tocsc()
                crow = torch.from_numpy(csc.indptr.astype(nd, copy=False))
                perm = torch.from_numpy(csc.data.astype(nd, copy=False))
                t = Pattern(crow, torch.from_numpy(csc.indices.astype(nd, copy=False)), (n, m))
            else:
                keys = self.col.to(torch.int64) * m + self.row.to(torch.int64)
                perm = torch.argsort(keys, stable=True)
                counts = torch.bincount(self.col.to(torch.int64), minlength=n)
                crow = torch.zeros(n + 1, dtype=torch.int64, device=self.device)
                crow[1:] = torch.cumsum(counts, 0)
                t = Pattern(crow.to(self.index_dtype), self.row[perm], (n, m))
            t._row = self.col[perm]
            perm = perm.to(self.index_dtype)
            # The transpose of the transpose is this pattern, with the inverse permutation.
            inv = torch.empty_like(perm)
            inv[perm.to(torch.int64)] = torch.arange(perm.numel(), device=self.device, dtype=perm.dtype)
            t._cache["transpose"] = (self, inv)
            return t, perm

        return self.cached("transpose", build)

    def union(self, other: "Pattern") -> tuple["Pattern", torch.Tensor, torch.Tensor]:
        """Union pattern and the positions of this pattern's and ``other``'s entries in it."""

        def build() -> tuple[Pattern, torch.Tensor, torch.Tensor]:
            rows = torch.cat([self.row, other.row])
            cols = torch.cat([self.col, other.col])
            pat, inverse = Pattern.from_coo(rows, cols, self.shape)
            idx = inverse.to(pat.index_dtype)
            return pat, idx[: self.nnz], idx[self.nnz :]

        return self.cached_pair("union", other, build)

    def diagonal_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, positions)``: the rows whose diagonal entry is stored, and where it is stored."""

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            pos = torch.nonzero(self.row == self.col).flatten()
            return self.row[pos].to(torch.int64), pos

        return self.cached("diagonal", build)

    def block_diagonal(self, copies: int) -> "Pattern":
        """Pattern of ``diag(A, A, ..., A)`` with ``copies`` blocks: batched values as one matrix."""
        if copies == 1:
            return self

        def build() -> Pattern:
            m, n = self.shape
            nnz = self.nnz
            idx = index_dtype_for((m + 1) * copies, n * copies, nnz * copies)
            dev = self.device
            shift = torch.arange(copies, device=dev, dtype=torch.int64)
            crow = (self.crow[:-1].to(torch.int64)[None, :] + shift[:, None] * nnz).reshape(-1)
            crow = torch.cat([crow, torch.tensor([copies * nnz], device=dev)])
            col = (self.col.to(torch.int64)[None, :] + shift[:, None] * n).reshape(-1)
            return Pattern(crow.to(idx), col.to(idx), (m * copies, n * copies))

        return self.cached(("block_diagonal", copies), build)

    def torch_csr(self, values: torch.Tensor) -> torch.Tensor:
        """A ``torch.sparse_csr_tensor`` over ``values`` (shares memory; no invariant checks)."""
        if values.dim() != 1:
            raise UsageError("torch_csr takes unbatched values; use block_diagonal for batches")
        return torch.sparse_csr_tensor(
            self.crow, self.col, values, self.shape, check_invariants=False
        )

    def __repr__(self) -> str:
        return f"Pattern(shape={self.shape}, nnz={self.nnz}, index={self.index_dtype}, device={self.device})"
