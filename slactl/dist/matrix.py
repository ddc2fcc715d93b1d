"""`DistSparseMatrix`: the rows of a sparse matrix spread over ranks, and its `LinearOperator`.

Each rank holds its owned rows as an ordinary :class:`~slactl.engine.matrix.SparseMatrix` in
local numbering (``n_owned x (n_owned + n_halo)``: owned columns first, then ghosts) whose
``values`` may carry gradients, a :class:`~slactl.dist.halo.HaloPlan`, and the global ids of its
owned rows and ghost columns. Vectors are distributed the same way: a rank holds the entries of
its owned rows, ``[n_owned]`` or ``[n_owned, k]``.

``A @ x`` exchanges the halo and multiplies locally; it is differentiable w.r.t. the local values
and ``x`` (the backward of the ghost broadcast is the summed reduction to the owners).
:class:`DistOperator` is the engine's :class:`~slactl.engine.krylov.operator.LinearOperator` with
a halo-exchanging ``matvec`` (the owned columns multiplied while the messages travel) and an
all-reduce ``reduce``: every engine Krylov method runs on it unchanged. Given a
:class:`~slactl.dist.profile.DistProfile` it charges its time to compute, halo and all-reduce.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from slactl.dist.halo import HaloPlan, ghost_broadcast
from slactl.engine.krylov.operator import LinearOperator
from slactl.engine.matrix import SparseMatrix
from slactl.engine.ops.spmm import matmul
from slactl.errors import PartitionError, ShapeError, UsageError
from slactl.io.partition_store import PartitionLayout, RankBlock, read_rank


class DistSparseMatrix:
    """This rank's share of a row-partitioned square sparse matrix.

    Build one with :meth:`from_store` (each rank reads only its group of a partition store) or
    :meth:`scatter` (every rank passes the same global matrix: for tests and small problems).

    Attributes
    ----------
    local : SparseMatrix
        Owned rows, local numbering, ``n_owned x (n_owned + n_halo)``; ``local.values`` may
        require grad.
    owned, halo : Tensor of int64
        Global ids of the owned rows and of the ghost columns.
    plan : HaloPlan
    shape : (int, int)
        The global shape.

    Examples
    --------
    >>> A = DistSparseMatrix.from_store("poisson.parts.zarr")   # doctest: +SKIP
    >>> y = A @ torch.ones(A.n_owned, dtype=A.dtype)              # doctest: +SKIP
    """

    def __init__(self, local: SparseMatrix, owned: torch.Tensor, halo: torch.Tensor, plan: HaloPlan,
                 shape: tuple[int, int], *, rank: int, parts: int, symmetry: str = "general"):
        if local.shape != (plan.n_owned, plan.n_owned + plan.n_halo):
            raise ShapeError(f"local matrix {local.shape} does not fit the plan ({plan.n_owned} owned, {plan.n_halo} ghosts)")
        self.local, self.owned, self.halo, self.plan = local, owned, halo, plan
        self.shape = (int(shape[0]), int(shape[1]))
        self.rank, self.parts, self.symmetry = int(rank), int(parts), symmetry
        self._split: dict[str, Any] = {}

    # ---------------------------------------------------------------------------- construction
    @classmethod
    def from_block(cls, block: RankBlock, *, dtype: torch.dtype = torch.float64, device: Any = None,
                   group: Any = None) -> "DistSparseMatrix":
        """From a :class:`~slactl.io.partition_store.RankBlock` (plain arrays)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        local = SparseMatrix.from_scipy(block.csr, dtype=dtype, device=device)
        plan = HaloPlan.from_block(block, device=device, group=group)
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
        return cls(local, as_t(block.owned), as_t(block.halo), plan, block.shape, rank=block.rank,
                   parts=block.parts, symmetry=block.symmetry)

    @classmethod
    def from_store(cls, path: str | os.PathLike, *, dtype: torch.dtype = torch.float64, device: Any = None) -> "DistSparseMatrix":
        """This rank's block of a partition store (the store must have one part per rank)."""
        _require_group()
        block = read_rank(path, dist.get_rank(), world_size=dist.get_world_size())
        return cls.from_block(block, dtype=dtype, device=device)

    @classmethod
    def scatter(cls, A: Any, part: Any = None, *, method: str = "contiguous", coordinates: Any = None,
                dtype: torch.dtype = torch.float64, device: Any = None) -> "DistSparseMatrix":
        """This rank's block of the global matrix ``A`` (every rank passes the same ``A``).

        ``A`` is a scipy.sparse matrix or an unbatched :class:`SparseMatrix` (values detached);
        ``part`` the owner of every row, else computed by ``method``
        (:func:`slactl.dist.partition.partition`, deterministic).
        """
        from slactl.dist.partition import partition

        _require_group()
        csr = A.detach().to_scipy() if isinstance(A, SparseMatrix) else A
        world = dist.get_world_size()
        if part is None:
            part = partition(csr, world, method, coordinates=coordinates)
        layout = PartitionLayout(csr, np.asarray(part))
        if layout.parts != world:
            raise PartitionError(f"the partition has {layout.parts} parts but {world} ranks are running")
        return cls.from_block(layout.block(dist.get_rank()), dtype=dtype, device=device)

    def with_values(self, values: torch.Tensor) -> "DistSparseMatrix":
        """The same distribution and pattern with new local values (``[local.nnz]``)."""
        return DistSparseMatrix(self.local.with_values(values), self.owned, self.halo, self.plan, self.shape,
                                rank=self.rank, parts=self.parts, symmetry=self.symmetry)

    def detach(self) -> "DistSparseMatrix":
        """The same matrix without gradients; it shares the cached SpMV splits (same values)."""
        out = self.with_values(self.local.values.detach())
        out._split = self._split
        return out

    # ------------------------------------------------------------------------------ properties
    @property
    def values(self) -> torch.Tensor:
        return self.local.values

    @property
    def n_owned(self) -> int:
        return self.plan.n_owned

    @property
    def n_halo(self) -> int:
        return self.plan.n_halo

    @property
    def dtype(self) -> torch.dtype:
        return self.local.dtype

    @property
    def device(self) -> torch.device:
        return self.local.device

    def global_coo(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Global ``(row, col)`` of every local entry (in ``local.values`` order)."""
        cols = torch.cat([self.owned, self.halo])
        return self.owned[self.local.row.to(torch.int64)], cols[self.local.col.to(torch.int64)]

    def owned_block(self) -> SparseMatrix:
        """The diagonal block (owned rows x owned columns) with detached values: what a local
        (block-Jacobi) preconditioner is built from."""
        return column_block(self.local.detach(), 0, self.n_owned)

    # ------------------------------------------------------------------------------- products
    def full(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with its ghosts appended, ``[n_owned + n_halo(, k)]``; differentiable."""
        return torch.cat([x, ghost_broadcast(x, self.plan)])

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return self.matmul(x)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for owned ``x`` ``[n_owned]`` or ``[n_owned, k]``: owned rows of the product.

        Differentiable w.r.t. ``local.values`` and ``x``. Without gradients it overlaps the halo
        exchange with the interior rows (:meth:`apply`)."""
        if x.dim() not in (1, 2) or x.shape[0] != self.n_owned:
            raise ShapeError(f"x must have this rank's {self.n_owned} owned entries, got shape {tuple(x.shape)}")
        if torch.is_grad_enabled() and (x.requires_grad or self.local.values.requires_grad):
            return matmul(self.local, self.full(x))
        return self.apply(x)

    def _csr(self, key: str, rows: Any, cols: tuple[int, int], transpose: bool = False) -> torch.Tensor:
        """A cached torch CSR of the rows ``rows`` (a callable giving an index tensor, or None for
        all) and the columns ``cols[0] <= j < cols[1]`` (renumbered from 0) of the local matrix
        (of its transpose), values detached."""
        if key not in self._split:
            A = self.local.detach()
            if transpose:
                A = A.T
            p = A.pattern
            prow, pcol = p.row.to(torch.int64), p.col.to(torch.int64)
            lo, hi = cols
            keep = (pcol >= lo) & (pcol < hi)
            if rows is None:
                m = p.shape[0]
                local_row = torch.arange(m, device=p.device)
            else:
                rows = rows()
                m = int(rows.numel())
                mask = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
                mask[rows] = True
                keep &= mask[prow]
                local_row = torch.full((p.shape[0],), -1, dtype=torch.int64, device=p.device)
                local_row[rows] = torch.arange(m, device=p.device)
            sel = torch.nonzero(keep).flatten()
            sub = SparseMatrix(A.values[sel], local_row[prow[sel]], pcol[sel] - lo, (m, hi - lo))
            self._split[key] = sub.pattern.torch_csr(sub.values)
        return self._split[key]

    def _boundary(self) -> torch.Tensor:
        """The owned rows that have a ghost column (cached)."""
        if "boundary" not in self._split:
            p = self.local.pattern
            ghost_rows = p.row.to(torch.int64)[p.col.to(torch.int64) >= self.n_owned]
            boundary = torch.zeros(self.n_owned, dtype=torch.bool, device=p.device)
            boundary[ghost_rows] = True
            self._split["boundary"] = torch.nonzero(boundary).flatten()
        return self._split["boundary"]

    def apply(self, x: torch.Tensor, profile: Any = None) -> torch.Tensor:
        """``A @ x`` without gradients: post the halo exchange, multiply by the owned columns (no
        ghost needed) while the messages travel, wait, add the ghost columns' part of the boundary
        rows. ``profile``: a :class:`~slactl.dist.profile.DistProfile` to charge the phases to.

        Per call: one gather of the send values, one batched exchange, one SpMV over all owned
        rows, one small SpMV over the boundary rows and one ``index_add_``; no host
        synchronization, no copy of ``x``."""
        mv = lambda M, v: torch.mv(M, v) if v.dim() == 1 else torch.mm(M, v)  # noqa: E731
        n, h = self.n_owned, self.n_halo
        owned = self._csr("owned_cols", None, (0, n))
        if self.plan.isolated:
            return mv(owned, x)
        if profile is not None:
            profile.count("halo_exchanges")
            profile.switch("halo")
        exchange = self.plan.start(x)
        if profile is not None:
            profile.switch("compute")
        y = mv(owned, x)
        if profile is not None:
            profile.switch("halo")
        ghosts = exchange.wait()
        if profile is not None:
            profile.switch("compute")
        if h == 0:  # this rank only sends (a nonsymmetric pattern)
            return y
        ghost_cols = self._csr("ghost_cols", self._boundary, (n, n + h))
        # boundary rows are distinct: every entry of y gets exactly one addition (deterministic)
        return y.index_add_(0, self._boundary(), mv(ghost_cols, ghosts))

    def apply_transpose(self, x: torch.Tensor, profile: Any = None) -> torch.Tensor:
        """``A^T @ x`` without gradients: the ghost columns' contributions are computed first and
        reduced to their owners while the owned part is multiplied."""
        mv = lambda M, v: torch.mv(M, v) if v.dim() == 1 else torch.mm(M, v)  # noqa: E731
        n, h = self.n_owned, self.n_halo
        t_owned = self._csr("t_owned", lambda: torch.arange(n, device=self.device), (0, n), transpose=True)
        if self.plan.isolated:
            return mv(t_owned, x)
        if h:
            t_halo = self._csr("t_halo", lambda: torch.arange(n, n + h, device=self.device), (0, n), transpose=True)
            ghost_part = mv(t_halo, x)
        else:  # this rank only receives contributions (a nonsymmetric pattern)
            ghost_part = x.new_empty((0,) + tuple(x.shape[1:]))
        if profile is not None:
            profile.count("halo_exchanges")
            profile.switch("halo")
        exchange = self.plan.start_reduce(ghost_part)
        if profile is not None:
            profile.switch("compute")
        y = mv(t_owned, x)
        if profile is not None:
            profile.switch("halo")
        received = exchange.wait()
        if profile is not None:
            profile.switch("compute")
        return y.add_(received)

    # ------------------------------------------------------------------------------- vectors
    def distribute(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's entries of a global vector ``x`` ``[n(, k)]`` (every rank passes the same x)."""
        return x.index_select(0, self.owned.to(x.device))

    def gather(self, x: torch.Tensor, root: int | None = 0) -> torch.Tensor | None:
        """The global vector assembled from every rank's owned ``x``: on ``root`` only (None
        elsewhere), or on every rank with ``root=None``."""
        world = dist.get_world_size()
        counts = torch.tensor([self.n_owned], device=x.device)
        all_counts = [torch.zeros_like(counts) for _ in range(world)]
        dist.all_gather(all_counts, counts)
        width = int(max(int(c) for c in all_counts))
        tail = tuple(x.shape[1:])
        pad = torch.cat([x.detach(), x.new_zeros((width - self.n_owned,) + tail)])
        ids = torch.cat([self.owned.to(x.device), self.owned.new_zeros(width - self.n_owned).to(x.device)])
        if root is None or dist.get_rank() == root:
            xs = [torch.empty_like(pad) for _ in range(world)]
            idxs = [torch.empty_like(ids) for _ in range(world)]
        else:
            xs = idxs = None
        if root is None:
            dist.all_gather(xs, pad)
            dist.all_gather(idxs, ids)
        else:
            dist.gather(pad, xs, dst=root)
            dist.gather(ids, idxs, dst=root)
            if dist.get_rank() != root:
                return None
        out = x.new_empty((self.shape[0],) + tail)
        for c, v, i in zip(all_counts, xs, idxs):
            k = int(c)
            out[i[:k]] = v[:k]
        return out

    def __repr__(self) -> str:
        return (f"DistSparseMatrix(shape={self.shape}, rank={self.rank}/{self.parts}, owned={self.n_owned}, "
                f"halo={self.n_halo}, nnz_local={self.local.nnz}, dtype={self.dtype})")


class DistOperator(LinearOperator):
    """A :class:`DistSparseMatrix` (or its transpose) as the engine's operator.

    ``matvec`` is :meth:`DistSparseMatrix.apply` (halo exchange overlapped with the interior
    rows); ``reduce`` is one ``all_reduce(SUM)``, so ``dot``, ``norm`` and ``dot_many`` (all the
    inner products of a Gram-Schmidt sweep in one message) are global. ``shape`` is the LOCAL
    ``(n_owned, n_owned)``: vectors are this rank's owned entries.
    """

    def __init__(self, A: DistSparseMatrix, *, transpose: bool = False, profile: Any = None):
        super().__init__((A.n_owned, A.n_owned), A.dtype, A.device)
        self.matrix = A.detach()
        self.transposed = transpose
        self.global_shape = A.shape
        self.profile = profile  # a slactl.dist.profile.DistProfile, or None (no timing, no syncs)
        self._alone = dist.get_world_size() == 1  # one rank: a sum over ranks is the local sum

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        p = self.profile
        if p is not None:
            p.count("matvecs")
        return self.matrix.apply_transpose(x, p) if self.transposed else self.matrix.apply(x, p)

    def reduce(self, local: torch.Tensor) -> torch.Tensor:
        out = local.detach().clone()
        if self._alone:
            return out
        buf = torch.view_as_real(out) if out.is_complex() else out
        p = self.profile
        if p is None:
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            return out
        p.count("allreduces")
        p.switch("allreduce")
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        p.switch("compute")
        return out

    def transpose(self) -> "DistOperator":
        return DistOperator(self.matrix, transpose=not self.transposed, profile=self.profile)


def _require_group() -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise UsageError("a DistSparseMatrix needs torch.distributed initialized: run under `slactl run --procs N`, "
                         "slactl.dist.launch(fn, nprocs=N) or call slactl.dist.init_process_group() first")


def column_block(M: SparseMatrix, lo: int, hi: int) -> SparseMatrix:
    """Columns ``lo:hi`` of a CSR matrix (renumbered from 0), every row kept: one pass over the
    entries, no sort (the rows stay sorted)."""
    col = M.col.to(torch.int64)
    keep = (col >= lo) & (col < hi)
    kept = torch.zeros(M.nnz + 1, dtype=torch.int64, device=M.device)
    torch.cumsum(keep, 0, out=kept[1:])
    crow = kept[M.pattern.crow.to(torch.int64)]
    return SparseMatrix.from_csr(crow, col[keep] - lo, M.values[keep], (M.shape[0], hi - lo), check=False)
