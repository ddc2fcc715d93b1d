"""`SparseMatrix`: a CSR matrix whose values carry gradients on their own pattern.

The pattern (:class:`~slactl.engine.pattern.Pattern`) is fixed and shared; ``values`` is an
ordinary tensor of shape ``[nnz]`` or ``[B, nnz]`` (a batch of matrices with one pattern) that may
require grad. Every operation returns a new matrix; gradients of a sparse input live on its
pattern and are never densified.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from slactl.engine.pattern import Pattern
from slactl.errors import DeviceError, DtypeError, ShapeError, UsageError


def _as_index(t: Any, name: str, device: torch.device | None) -> torch.Tensor:
    t = torch.as_tensor(t, device=device)
    if t.numel() == 0 and t.dim() == 1:
        return t.to(torch.int64)  # an empty list or array carries no dtype to check
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise UsageError(f"{name} must hold integer indices, got {t.dtype}")
    if t.dim() != 1:
        raise ShapeError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def resolved(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, with a lazy conjugate or negative bit (``torch.conj(t)``, the ``.imag`` of
    such a view) materialized: what NumPy, CuPy and DLPack consumers need, since they read the raw
    memory (NumPy refuses such a view; CuPy would silently read it unconjugated). A no-op for an
    ordinary tensor."""
    return t.detach().resolve_conj().resolve_neg()


def host_numpy(t: torch.Tensor) -> np.ndarray:
    """``t`` as a NumPy array on the host, detached, lazy views materialized (:func:`resolved`)."""
    return resolved(t.cpu()).numpy()


# dtypes NumPy and SciPy's sparse routines compute in (no bfloat16; float16 only partly)
_HOST_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _norm(t: torch.Tensor, frobenius: bool) -> torch.Tensor:
    """The entrywise max of ``|t|``, or its Frobenius (2-) norm; half precision summed in float32."""
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return torch.linalg.vector_norm(t.reshape(-1), ord=2 if frobenius else float("inf"))


class SparseMatrix:
    """A sparse matrix in CSR form with differentiable values.

    Parameters
    ----------
    values : Tensor, shape ``[nnz]`` or ``[B, nnz]``
        Entry values in COO order (one per ``row``/``col`` pair); a leading dimension makes a batch
        of matrices that share the pattern. Duplicated coordinates are summed; gradients flow back
        to ``values`` in the order given.
    row, col : Tensor or array of int
        COO coordinates.
    shape : (int, int), optional
        Matrix shape; inferred from the largest indices when omitted.

    Examples
    --------
    >>> import torch, slactl
    >>> v = torch.tensor([4.0, -1.0, -1.0, 4.0], dtype=torch.float64, requires_grad=True)
    >>> A = slactl.SparseMatrix(v, [0, 0, 1, 1], [0, 1, 0, 1], (2, 2))
    >>> (A @ torch.ones(2, dtype=torch.float64)).sum().backward()
    >>> v.grad
    tensor([1., 1., 1., 1.], dtype=torch.float64)
    """

    __slots__ = ("pattern", "values", "_csr")

    def __init__(self, values: Any, row: Any, col: Any, shape: tuple[int, int] | None = None):
        values = torch.as_tensor(values)
        if not (values.dtype.is_floating_point or values.dtype.is_complex):
            values = values.to(torch.get_default_dtype())
        row = _as_index(row, "row", values.device)
        col = _as_index(col, "col", values.device)
        if row.numel() != col.numel():
            raise ShapeError(f"row has {row.numel()} entries and col {col.numel()}; they must match")
        if values.dim() not in (1, 2) or values.shape[-1] != row.numel():
            raise ShapeError(
                f"values must have shape [nnz] or [B, nnz] with nnz = {row.numel()} "
                f"(the length of row/col), got {tuple(values.shape)}"
            )
        if shape is None:
            shape = (
                int(row.max()) + 1 if row.numel() else 0,
                int(col.max()) + 1 if col.numel() else 0,
            )
        m, n = int(shape[0]), int(shape[1])
        if m < 0 or n < 0:
            raise ShapeError(f"shape must be non-negative, got {shape}")
        if row.numel():
            if int(row.min()) < 0 or int(row.max()) >= m:
                raise ShapeError(f"row indices must lie in [0, {m}), found {int(row.min())}..{int(row.max())}")
            if int(col.min()) < 0 or int(col.max()) >= n:
                raise ShapeError(f"col indices must lie in [0, {n}), found {int(col.min())}..{int(col.max())}")
        pattern, inverse = Pattern.from_coo(row, col, (m, n))
        csr_values = values.new_zeros(values.shape[:-1] + (pattern.nnz,))
        csr_values = csr_values.index_add(-1, inverse, values)
        self.pattern = pattern
        self.values = csr_values
        self._csr = None

    @classmethod
    def from_pattern(cls, pattern: Pattern, values: torch.Tensor) -> "SparseMatrix":
        """A matrix on an existing pattern (no copy, no sorting). ``values``: ``[nnz]`` or ``[B, nnz]``."""
        if values.dim() not in (1, 2) or values.shape[-1] != pattern.nnz:
            raise ShapeError(
                f"values must have shape [{pattern.nnz}] or [B, {pattern.nnz}] for this pattern, "
                f"got {tuple(values.shape)}"
            )
        if values.device != pattern.device:
            raise DeviceError(
                f"values are on {values.device} but the pattern is on {pattern.device}; move them "
                f"there first: values.to('{pattern.device}')"
            )
        obj = cls.__new__(cls)
        obj.pattern = pattern
        obj.values = values
        obj._csr = None
        return obj

    @classmethod
    def from_csr(
        cls, crow: Any, col: Any, values: Any, shape: tuple[int, int], *, check: bool = True
    ) -> "SparseMatrix":
        """From CSR arrays. With ``check`` (default) the arrays are validated, and rows with unsorted
        or duplicated columns are put in canonical form (duplicates summed)."""
        values = torch.as_tensor(values)
        crow = torch.as_tensor(crow, device=values.device)
        col = torch.as_tensor(col, device=values.device)
        m = int(shape[0])
        if crow.dim() != 1 or crow.numel() != m + 1:
            raise ShapeError(f"crow must have m + 1 = {m + 1} entries, got {tuple(crow.shape)}")
        if check:
            counts = crow[1:] - crow[:-1]
            if crow.numel() and (int(crow[0]) != 0 or bool((counts < 0).any()) or int(crow[-1]) != col.numel()):
                raise ShapeError("crow must start at 0, never decrease, and end at nnz = len(col)")
            row = torch.repeat_interleave(torch.arange(m, device=values.device), counts.to(torch.int64))
            return cls(values, row, col, shape)
        return cls.from_pattern(Pattern(crow, col, shape), values)

    @classmethod
    def from_dense(cls, dense: torch.Tensor, *, keep_zeros: bool = False) -> "SparseMatrix":
        """The nonzeros of a dense ``[m, n]`` (or ``[B, m, n]``, union pattern) tensor.

        Differentiable: the gradient reaches ``dense`` at the stored positions."""
        dense = torch.as_tensor(dense)
        if dense.dim() not in (2, 3):
            raise ShapeError(f"from_dense takes [m, n] or [B, m, n], got {tuple(dense.shape)}")
        with torch.no_grad():
            mask = torch.ones_like(dense, dtype=torch.bool) if keep_zeros else dense != 0
            if dense.dim() == 3:
                mask = mask.any(0)
            row, col = torch.nonzero(mask, as_tuple=True)
        pattern, _ = Pattern.from_coo(row, col, tuple(dense.shape[-2:]))
        # nonzero() returns row-major order, which is already CSR order.
        return cls.from_pattern(pattern, dense[..., row, col])

    @classmethod
    def from_scipy(
        cls, matrix: Any, *, dtype: torch.dtype | None = None, device: Any = None
    ) -> "SparseMatrix":
        """From any ``scipy.sparse`` matrix or array (converted to canonical CSR)."""
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise UsageError(f"from_scipy expects a scipy.sparse matrix, got {type(matrix).__name__}")
        # copy=True: the canonicalization below works in place, and the values must not alias the
        # caller's arrays (a SparseMatrix is immutable)
        csr = sp.csr_array(matrix, copy=True)
        csr.sum_duplicates()
        csr.sort_indices()
        from slactl.engine.pattern import index_dtype_for

        idx = index_dtype_for(csr.shape[0] + 1, csr.shape[1], csr.nnz)
        np_idx = np.int32 if idx == torch.int32 else np.int64
        crow = torch.from_numpy(np.ascontiguousarray(csr.indptr, dtype=np_idx))
        col = torch.from_numpy(np.ascontiguousarray(csr.indices, dtype=np_idx))
        values = torch.from_numpy(np.ascontiguousarray(csr.data))
        if dtype is not None:
            values = values.to(dtype)
        pattern = Pattern(crow, col, csr.shape)
        out = cls.from_pattern(pattern, values)
        return out.to(device) if device is not None else out

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> "SparseMatrix":
        """From a torch sparse tensor (COO, CSR, CSC, BSR) or a dense one. Differentiable for COO/CSR."""
        layout = tensor.layout
        if layout == torch.strided:
            return cls.from_dense(tensor)
        if tensor.dim() != 2:
            raise ShapeError("from_torch takes a 2-D sparse tensor (use values [B, nnz] for batches)")
        if layout in (torch.sparse_bsr, torch.sparse_bsc):
            tensor = tensor.to_sparse_coo()  # torch converts blocked layouts to CSR only through COO
            layout = torch.sparse_coo
        if layout == torch.sparse_coo:
            t = tensor.coalesce()
            idx = t.indices()
            return cls(t.values(), idx[0], idx[1], tuple(t.shape))
        if layout != torch.sparse_csr:
            tensor = tensor.to_sparse_csr()
        return cls.from_csr(
            tensor.crow_indices(), tensor.col_indices(), tensor.values(), tuple(tensor.shape)
        )

    # --------------------------------------------------------------------------- conversions
    def to_dense(self) -> torch.Tensor:
        """Dense ``[m, n]`` (or ``[B, m, n]``) tensor; differentiable."""
        out = self.values.new_zeros(self.values.shape[:-1] + (self.shape[0] * self.shape[1],))
        out = out.index_add(-1, self.pattern.keys(), self.values)
        return out.reshape(self.values.shape[:-1] + self.shape)

    def to_scipy(self) -> Any:
        """``scipy.sparse.csr_array`` (values detached, moved to the CPU). Unbatched only."""
        import scipy.sparse as sp

        if self.is_batched:
            raise UsageError("to_scipy needs an unbatched matrix; index one first: A[i]")
        return sp.csr_array(
            (
                host_numpy(self.values),
                self.pattern.col.cpu().numpy(),
                self.pattern.crow.cpu().numpy(),
            ),
            shape=self.shape,
            copy=True,  # neither the values nor the (shared, cached) pattern may be reachable from it
        )

    def to_torch(self, layout: torch.layout = torch.sparse_csr) -> torch.Tensor:
        """torch sparse tensor over the same values (CSR shares memory; COO copies indices)."""
        if self.is_batched:
            raise UsageError("to_torch needs an unbatched matrix; index one first: A[i]")
        if layout == torch.sparse_csr:
            return self.pattern.torch_csr(self.values)
        if layout == torch.sparse_coo:
            idx = torch.stack([self.pattern.row, self.pattern.col]).to(torch.int64)
            return torch.sparse_coo_tensor(idx, self.values, self.shape, is_coalesced=True)
        raise UsageError(f"layout must be torch.sparse_csr or torch.sparse_coo, got {layout}")

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> "SparseMatrix":
        """Move values and pattern to ``device`` and/or cast values to ``dtype`` (differentiable)."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        pattern = self.pattern if device is None else self.pattern.to(device)
        values = self.values.to(device=pattern.device, dtype=dtype)
        if pattern is self.pattern and values is self.values:
            return self
        return SparseMatrix.from_pattern(pattern, values)

    def cuda(self, device: Any = None) -> "SparseMatrix":
        return self.to(torch.device("cuda") if device is None else torch.device("cuda", device) if isinstance(device, int) else device)

    def cpu(self) -> "SparseMatrix":
        return self.to("cpu")

    def double(self) -> "SparseMatrix":
        return self.to(dtype=torch.float64)

    def float(self) -> "SparseMatrix":
        return self.to(dtype=torch.float32)

    def detach(self) -> "SparseMatrix":
        return SparseMatrix.from_pattern(self.pattern, self.values.detach())

    def requires_grad_(self, flag: bool = True) -> "SparseMatrix":
        self.values.requires_grad_(flag)
        return self

    def with_values(self, values: torch.Tensor) -> "SparseMatrix":
        """The same pattern with new values (``[nnz]`` or ``[B, nnz]``)."""
        return SparseMatrix.from_pattern(self.pattern, values)

    # -------------------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)`` of one matrix (the batch size is :attr:`batch_size`)."""
        return self.pattern.shape

    @property
    def nnz(self) -> int:
        return self.pattern.nnz

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def is_batched(self) -> bool:
        return self.values.dim() == 2

    @property
    def batch_size(self) -> int | None:
        return int(self.values.shape[0]) if self.is_batched else None

    @property
    def requires_grad(self) -> bool:
        return self.values.requires_grad

    @property
    def crow(self) -> torch.Tensor:
        return self.pattern.crow

    @property
    def col(self) -> torch.Tensor:
        return self.pattern.col

    @property
    def row(self) -> torch.Tensor:
        return self.pattern.row

    def __getitem__(self, i: int) -> "SparseMatrix":
        """Matrix ``i`` of a batch (differentiable)."""
        if not self.is_batched:
            raise UsageError("only a batched SparseMatrix can be indexed; A[i] picks matrix i")
        return SparseMatrix.from_pattern(self.pattern, self.values[i])

    def __len__(self) -> int:
        if not self.is_batched:
            raise UsageError("len() is the batch size; this matrix is unbatched")
        return int(self.values.shape[0])

    # ------------------------------------------------------------------------ structure
    def diagonal(self) -> torch.Tensor:
        """Main diagonal, ``[min(m, n)]`` (or ``[B, min(m, n)]``); zero where nothing is stored."""
        rows, pos = self.pattern.diagonal_positions()
        out = self.values.new_zeros(self.values.shape[:-1] + (min(self.shape),))
        return out.index_copy(-1, rows.to(self.device), self.values[..., pos])

    def is_symmetric(self, tol: float = 0.0, *, conj: bool = False) -> bool:
        """``max|A - A^T| <= tol * max|A|`` (every matrix of a batch); with ``conj``,
        ``max|A - A^H| <= tol * max|A|`` (hermitian). ``tol=0`` asks for exact equality."""
        if self.shape[0] != self.shape[1]:
            return False
        with torch.no_grad():
            if "transpose" not in self.pattern._cache:
                mirrored = self._mirror_difference(conj=conj)
                if mirrored is not None:  # structurally symmetric
                    d, scale = mirrored
                    return bool(d <= tol * scale)
            pattern_t, perm = self.pattern.transpose()
            if pattern_t.same_as(self.pattern):
                # Structurally symmetric (the common case): compare values in place, no union.
                mirror = self.values[..., perm]
                d = (self.values - (mirror.conj() if conj else mirror)).abs()
            else:
                d = (self - (self.H if conj else self.T)).values.abs()
            if d.numel() == 0:
                return True
            scale = self.values.abs().amax() if self.nnz else d.new_zeros(())
            return bool(d.amax() <= tol * scale)

    def _mirror_difference(self, chunk: int = 1 << 20, *, conj: bool = False,
                           frobenius: bool = False) -> tuple[float, float] | None:
        """``(||D||, ||A||)`` with ``D = A - A^T`` (``A - A^H`` with ``conj``) over a structurally
        symmetric pattern, else None. The norm is the entrywise max of the magnitudes, or with
        ``frobenius`` the Frobenius norm (over all matrices of a batch together).

        Each entry's mirror is found by binary search in the row-major keys ``i n + j`` (sorted:
        CSR rows in order, columns sorted), in chunks of entries, and nothing is cached: O(nnz)
        int64 keys and O(chunk) temporaries instead of the transposed pattern's sort and
        permutations (~100 bytes per unknown on a 5-point stencil, the peak of an auto-dispatched
        AMG solve at 1M DOF; issue 7). One host synchronization.
        """
        if self.nnz == 0:
            return 0.0, 0.0
        if self.device.type == "cpu":
            return self._mirror_difference_host(conj=conj, frobenius=frobenius)
        return self._mirror_difference_by_search(chunk, conj=conj, frobenius=frobenius)

    def _mirror_difference_by_search(self, chunk: int = 1 << 20, *, conj: bool = False,
                                     frobenius: bool = False) -> tuple[float, float] | None:
        """The device's :meth:`_mirror_difference`: binary search of each mirror's key."""
        n, nnz = self.shape[0], self.nnz
        if nnz == 0:
            return 0.0, 0.0
        p = self.pattern
        rows = torch.repeat_interleave(torch.arange(n, device=p.crow.device), (p.crow[1:] - p.crow[:-1]).to(torch.int64),
                                       output_size=nnz)
        keys = rows.mul_(n).add_(p.col)
        del rows
        found = torch.ones((), dtype=torch.bool, device=keys.device)
        d = _norm(self.values.new_zeros(1), frobenius)
        for s0 in range(0, nnz, chunk):
            k = keys[s0 : s0 + chunk]
            mirror = (k % n) * n + torch.div(k, n, rounding_mode="floor")
            pos = torch.searchsorted(keys, mirror).clamp_(max=nnz - 1)
            found &= (keys[pos] == mirror).all()
            other = self.values[..., pos]
            part = _norm(self.values[..., s0 : s0 + chunk] - (other.conj() if conj else other), frobenius)
            d = _norm(torch.stack([d, part]), frobenius)  # max of maxima, or root of summed squares
            del k, mirror, pos, other
        scale = _norm(self.values, frobenius)
        ok, d_host, scale_host = torch.stack([found.to(d.dtype), d, scale.to(d.dtype)]).tolist()
        return (d_host, scale_host) if ok else None

    def _mirror_difference_host(self, *, conj: bool = False, frobenius: bool = False) -> tuple[float, float] | None:
        """:meth:`_mirror_difference` on the host: SciPy's O(nnz) counting-sort transpose puts
        each entry's mirror at its position (2D Poisson 1M: ~60 ms against 230 ms of binary search)."""
        import scipy.sparse as sp

        p = self.pattern
        crow, col = p.crow.numpy(), p.col.numpy()
        values = self.values.detach()
        # One matrix in a dtype SciPy computes in: transpose the values themselves. A batch, or
        # half precision (no bfloat16 in NumPy): transpose the positions, then gather in torch.
        direct = values.dim() == 1 and values.dtype in _HOST_DTYPES
        data = host_numpy(values) if direct else np.arange(self.nnz, dtype=np.float64)
        mirror = sp.csr_array((data, col, crow), shape=self.shape).T.tocsr()  # columns sorted
        if not (np.array_equal(mirror.indptr, crow) and np.array_equal(mirror.indices, col)):
            return None
        if direct:
            other = torch.from_numpy(mirror.data)
        else:
            other = values[..., torch.from_numpy(mirror.data.astype(np.int64))]  # positions < 2^53: exact
        d = _norm(values - (other.conj() if conj else other), frobenius)
        return float(d), float(_norm(values, frobenius))

    # ----------------------------------------------------------------------- operations
    @property
    def T(self) -> "SparseMatrix":
        from slactl.engine.ops.elementwise import transpose

        return transpose(self)

    def transpose(self) -> "SparseMatrix":
        return self.T

    @property
    def H(self) -> "SparseMatrix":
        """The conjugate transpose ``A^H`` (``A^T`` for a real matrix); differentiable."""
        if not self.dtype.is_complex:
            return self.T
        # conj_physical, not the lazy conj view: torch's sparse kernels would ignore its bit
        return self.T.map(torch.conj_physical)

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, SparseMatrix):
            from slactl.engine.ops.spgemm import spgemm

            return spgemm(self, other)
        from slactl.engine.ops.spmm import matmul

        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Any:
        from slactl.engine.ops.spmm import matmul

        other = torch.as_tensor(other)
        # x @ A = (A^T x^T)^T; a (batch of) row vector(s), [m] or [B, m], needs no transposes
        if other.dim() == (2 if self.is_batched else 1):
            return matmul(self.T, other)
        return matmul(self.T, other.transpose(-1, -2)).transpose(-1, -2)

    def __add__(self, other: Any) -> "SparseMatrix":
        from slactl.engine.ops.elementwise import add

        return add(self, other)

    def __sub__(self, other: Any) -> "SparseMatrix":
        from slactl.engine.ops.elementwise import add

        return add(self, other, beta=-1.0)

    def __neg__(self) -> "SparseMatrix":
        return self.map(torch.neg)

    def __mul__(self, alpha: Any) -> "SparseMatrix":
        from slactl.engine.ops.elementwise import scale

        return scale(self, alpha)

    __rmul__ = __mul__

    def __truediv__(self, alpha: Any) -> "SparseMatrix":
        from slactl.engine.ops.elementwise import scale

        return scale(self, 1.0 / alpha if not torch.is_tensor(alpha) else alpha.reciprocal())

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "SparseMatrix":
        """Apply ``fn`` elementwise to the stored values (``fn(0)`` is not applied to absent entries)."""
        out = fn(self.values)
        if not torch.is_tensor(out) or out.shape != self.values.shape:
            raise ShapeError("map(fn) must return a tensor of the values' shape")
        return SparseMatrix.from_pattern(self.pattern, out)

    def abs(self) -> "SparseMatrix":
        return self.map(torch.abs)

    def sum(self, dim: int | None = None) -> torch.Tensor:
        """Sum of all entries, or row sums (``dim=1``) / column sums (``dim=0``)."""
        from slactl.engine.ops.elementwise import reduce_sum

        return reduce_sum(self, dim)

    def norm(self) -> torch.Tensor:
        """Frobenius norm (of each matrix of a batch)."""
        return torch.linalg.vector_norm(self.values, dim=-1)

    def triangular_solve(self, b: torch.Tensor, *, lower: bool = True, unit_diagonal: bool = False) -> torch.Tensor:
        from slactl.engine.ops.triangular import triangular_solve

        return triangular_solve(self, b, lower=lower, unit_diagonal=unit_diagonal)

    def solve(self, b: torch.Tensor, **options: Any) -> Any:
        """``slactl.solve(self, b, **options)``: differentiable solve (see :func:`slactl.solve`)."""
        from slactl.engine.linear.api import solve

        return solve(self, b, **options)

    def factorize(self, *, backend: str = "auto") -> Any:
        """A reusable direct factorization (see :func:`slactl.factorize`)."""
        from slactl.engine.linear.api import factorize

        return factorize(self, backend=backend)

    def tril(self, k: int = 0) -> "SparseMatrix":
        """Lower triangle (entries with ``col - row <= k``) on a sub-pattern; differentiable."""
        from slactl.engine.ops.elementwise import select_entries

        return select_entries(self, "tril", k)

    def triu(self, k: int = 0) -> "SparseMatrix":
        """Upper triangle (entries with ``col - row >= k``) on a sub-pattern; differentiable."""
        from slactl.engine.ops.elementwise import select_entries

        return select_entries(self, "triu", k)

    # ----------------------------------------------------------------------- checks
    def check_compatible(self, x: torch.Tensor, what: str = "x") -> None:
        """Raise a clear error unless ``x`` has this matrix's dtype and device."""
        if not torch.is_tensor(x):
            raise UsageError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if x.device != self.device:
            raise DeviceError(
                f"A is on {self.device} but {what} is on {x.device}; move one: {what}.to(A.device) or A.to({what}.device)"
            )
        if x.dtype != self.dtype:
            raise DtypeError(
                f"A is {self.dtype} but {what} is {x.dtype}; convert one: {what}.to(A.dtype) or A.to(dtype={what}.dtype)"
            )

    def __repr__(self) -> str:
        batch = f", batch={self.batch_size}" if self.is_batched else ""
        grad = ", requires_grad=True" if self.requires_grad else ""
        m, n = self.shape
        density = self.nnz / (m * n) if m and n else 0.0
        return (
            f"SparseMatrix(shape=({m}, {n}), nnz={self.nnz} ({density:.2%}){batch}, "
            f"dtype={self.dtype}, device={self.device}, index={self.pattern.index_dtype}{grad})"
        )
