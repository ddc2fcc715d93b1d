"""Distributed smoothed-aggregation AMG: one hierarchy over all ranks, no rank holding a global level.

Block Jacobi with a local AMG per rank (:class:`~slactl.dist.solve.BlockJacobi`) loses the
coupling between subdomains: on 2D Poisson its CG iterations grow from 13 (one rank) to 61-94
(2-4 ranks). :class:`DistSmoothedAggregation` keeps it with global coarse spaces, built like the
engine's :class:`~slactl.engine.preconditioners.SmoothedAggregation` (the same device kernels) on
every rank's share of each level:

1. **Aggregation** is local ("decoupled", as in ML/MueLu's uncoupled aggregation): MIS(2) on the
   strength graph of the owned diagonal block, so an aggregate never crosses ranks. A node left
   alone only because its neighbours are remote becomes a one-node aggregate (it stays in the
   coarse space).
2. **Prolongation** ``P = (I - omega D^{-1} A) T`` is smoothed with the global ``A`` (this rank's
   rows): the tentative ``T`` rows of the halo nodes come once from their owners
   (:meth:`~slactl.dist.halo.HaloPlan.broadcast_rows`), so a rank's ``P`` rows reach the
   aggregates of its neighbours next to the interface, as in the single-process hierarchy. ``P x``
   exchanges those coarse ghosts; ``R r = P^T r`` reduces them to their owners (Galerkin exactly).
   Unlike the single-process hierarchy, ``A`` is not filtered of its weak couplings first (its
   ``filter_weak``, which needs the neighbours' largest couplings across the interface): on
   strongly anisotropic problems the coarse operators fill in more here.
3. **Coarse matrix** ``A_c = P^T A P``: each rank forms ``P_r^T (A_r P_ext)`` from its own rows
   (``P_ext``: its ``P`` rows plus those of its halo nodes, again from their owners); the rows of
   other ranks' aggregates are sent to them and summed there
   (:meth:`~slactl.dist.halo.HaloPlan.reduce_rows`). The coarse halo plan is built from what each
   rank needs (:meth:`~slactl.dist.halo.HaloPlan.from_needs`). No global sort: the local column
   numbering puts a rank's own aggregates first, so only the few received rows are re-sorted.
   ``A_c`` is a :class:`~slactl.dist.matrix.DistSparseMatrix` again.
4. Levels are added until the **global** size is at most ``max_coarse`` (or coarsening stalls);
   the coarsest level is gathered on every rank (small) and solved by a dense Cholesky (LU when
   that fails), redundantly: one all-gather per cycle instead of a tree of messages.

The V-cycle and the smoothers are the engine's (:class:`~slactl.engine.preconditioners.amg.AMG`):
Chebyshev (or Jacobi) on ``D^{-1} A``, whose ``lambda_max`` comes from Lanczos with global inner
products (symmetric ``A``) or a Gershgorin bound (otherwise). Each level's smoothing and residual
SpMVs exchange that level's halo; restriction, prolongation and the coarse solve's gather are the
only other communication. For symmetric ``A`` the cycle is symmetric positive definite (CG); the
transpose (adjoint solves of a nonsymmetric ``A``) is the cycle of ``A^T`` with the same ``P``.

Not implemented: CUDA-graph capture of the cycle (NCCL messages inside), aggregates that cross
ranks (so the coarse levels keep the partition's boundaries) and repartitioning of coarse levels
onto fewer ranks.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from slactl.dist.halo import HaloPlan
from slactl.dist.matrix import DistOperator, DistSparseMatrix
from slactl.engine.krylov.operator import MatrixOperator
from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners._aggregation import _sorted, aggregate, sparse_product, strength_graph, tentative_prolongator
from slactl.engine.preconditioners.amg import AMG, Level, _lanczos_max, cycle_options
from slactl.engine.preconditioners.smoothed_aggregation import (
    _DENSE_COARSE_LIMIT,
    _Stopwatch,
    _smoothing_matrix,
    _symmetric_pattern,
    _transpose,
)
from slactl.errors import DtypeError, ShapeError, StructureError, UsageError


class DistLevel(Level):
    """A level whose ``A`` is a :class:`DistSparseMatrix` (SpMV with halo exchange) and whose
    ``P`` is a :class:`Prolongation` (``P x`` and ``R r = P^T r``, each with one exchange of the
    coarse ghosts); ``R`` is the same object (Galerkin)."""

    transposed: bool = False

    def __post_init__(self) -> None:
        self._ops = [DistOperator(self.A, transpose=self.transposed), self.P,
                     None if self.P is None else _Restriction(self.P)]

    def transpose(self) -> "DistLevel":
        level = DistLevel.__new__(DistLevel)
        level.A, level.P, level.R, level.inv_diag, level.lambda_max = self.A, self.P, self.R, self.inv_diag, self.lambda_max
        level.transposed = not self.transposed
        level.__post_init__()
        return level


class DistSmoothedAggregation(AMG):
    """Smoothed-aggregation AMG of a :class:`DistSparseMatrix` with global coarse levels.

    Collective: every rank constructs it with its share of the same matrix. ``apply(r)`` takes and
    returns this rank's owned entries (one V-cycle; every rank must call it together).

    Parameters
    ----------
    A : DistSparseMatrix
        Real, square, nonzero diagonal.
    theta, block_size, smoother, degree, max_levels, seed
        As :class:`~slactl.engine.preconditioners.SmoothedAggregation`.
    max_coarse : int
        The coarsest level has at most this many unknowns over all ranks (it is gathered on every
        rank and factorized densely).
    near_nullspace : Tensor ``[n_owned, k]``, optional
        This rank's rows of the near-nullspace vectors (default: the constant vector).
    symmetry : {"symmetric", "nonsymmetric"}, optional
        Skip the (distributed) symmetry test when known.

    Examples
    --------
    >>> M = DistSmoothedAggregation(A)                          # doctest: +SKIP
    >>> x = slactl.dist.solve(A, b, method="cg", preconditioner=M)   # doctest: +SKIP
    """

    name = "dist-amg"
    fused_cycle = False  # the levels are distributed: the engine's fused level kernels do not apply

    def __init__(self, A: DistSparseMatrix | None = None, *, theta: float = 0.08, near_nullspace: torch.Tensor | None = None,
                 block_size: int = 1, smoother: str = "chebyshev", degree: int = 2, max_levels: int = 12,
                 max_coarse: int = 1000, symmetry: str | None = None, seed: int = 0):
        self.smoother, self.degree = cycle_options(smoother, degree)
        if int(block_size) < 1 or int(max_levels) < 1 or int(max_coarse) < 1:
            raise UsageError("block_size, max_levels and max_coarse must be positive integers")
        if not theta >= 0:
            raise UsageError(f"theta must be >= 0, got {theta}")
        if symmetry not in (None, "symmetric", "hermitian", "nonsymmetric"):
            raise UsageError(f"symmetry must be 'symmetric', 'hermitian', 'nonsymmetric' or None, got {symmetry!r}")
        self.theta, self.seed, self.symmetry, self.block_size = float(theta), int(seed), symmetry, int(block_size)
        self.max_levels, self.max_coarse = int(max_levels), int(max_coarse)
        self.near_nullspace = near_nullspace
        self.levels: list[DistLevel] = []
        self.hierarchy = None
        self.setup_time = 0.0
        self.shape = None
        if A is not None:
            self.setup(A)

    def setup(self, A: DistSparseMatrix) -> "DistSmoothedAggregation":  # type: ignore[override]
        if not isinstance(A, DistSparseMatrix):
            raise UsageError(f"DistSmoothedAggregation is built from a DistSparseMatrix, got {type(A).__name__}")
        if A.dtype.is_complex:
            raise DtypeError("dist-amg takes a real matrix; use block Jacobi with ilu0 for a complex one")
        start = time.perf_counter()
        with torch.no_grad():
            self._setup(A)
        self.shape = (A.n_owned, A.n_owned)
        self.setup_time = time.perf_counter() - start
        return self

    # ----------------------------------------------------------------------------- set-up
    def _setup(self, A: DistSparseMatrix) -> None:
        self.symmetric = self.symmetry in ("symmetric", "hermitian") if self.symmetry else _symmetric(A)
        if A.n_owned % self.block_size:
            raise ShapeError(f"block_size {self.block_size} does not divide this rank's {A.n_owned} rows")
        B = self._nullspace(A)
        levels: list[DistLevel] = []
        Al = A.detach()
        watch = _Stopwatch(A.device)  # SLACTL_AMG_PROFILE=1: seconds and peak memory per stage
        for depth in range(self.max_levels):
            n_global = Al.shape[0]
            inv_diag = _inverse_diagonal(Al)
            watch.lap("diagonal")
            if depth == self.max_levels - 1 or n_global <= self.max_coarse:
                levels.append(DistLevel(Al, None, None, inv_diag, 0.0))
                break
            block = Al.owned_block()
            node = B.shape[1] if depth else self.block_size  # unknowns per aggregated node
            G = strength_graph(block, self.theta, node, self.symmetric and _symmetric_pattern(block))
            ids, count, _ = aggregate(G, self.seed + depth)
            del G
            ids, count = _keep_coupled(Al, ids, count, node)
            coarse = _all_sum(count * B.shape[1], Al.device)
            watch.lap("aggregation")
            if coarse == 0 or coarse >= 0.9 * n_global:  # coarsening stalled on every rank together
                levels.append(DistLevel(Al, None, None, inv_diag, 0.0))
                break
            lam = _global_lambda_max(Al, inv_diag, self.symmetric)
            watch.lap("spectral radius")
            tentative = tentative_prolongator(ids, count, B, node)
            P, offsets = prolongator(Al, tentative.T, inv_diag, lam)
            watch.lap("smoothed P")
            levels.append(DistLevel(Al, P, P, inv_diag, lam))
            Al = galerkin(Al, P, offsets)
            watch.lap("Galerkin P^T A P")
            B = tentative.coarse_nullspace
        n_coarse = levels[-1].A.shape[0]
        if n_coarse > max(4 * self.max_coarse, _DENSE_COARSE_LIMIT):
            raise StructureError(f"dist-amg: coarsening stalled at {n_coarse} unknowns (level {len(levels) - 1}), too many "
                                 f"for the dense coarse solve gathered on every rank: lower theta, or use block Jacobi")
        self.levels = levels
        self._gather = _CoarseGather(levels[-1].A)
        self._coarse_dense = self._gather.dense_matrix()
        self._factor_coarse()
        watch.lap("coarse gather + factorization")
        self.setup_profile = watch.laps
        self.positive_definite = self.symmetric and self._coarse[0] == "cholesky"

    def _nullspace(self, A: DistSparseMatrix) -> torch.Tensor:
        if self.near_nullspace is None:
            return torch.ones((A.n_owned, 1), dtype=A.dtype, device=A.device)
        B = torch.as_tensor(self.near_nullspace).to(device=A.device, dtype=A.dtype)
        B = B[:, None] if B.dim() == 1 else B
        if B.dim() != 2 or B.shape[0] != A.n_owned or B.shape[1] < 1:
            raise ShapeError(f"near_nullspace must hold this rank's {A.n_owned} rows, shape [{A.n_owned}, k], got {tuple(B.shape)}")
        return B

    def _factor_coarse(self) -> None:
        Ac = self._coarse_dense
        L, info = torch.linalg.cholesky_ex(Ac)
        if self.symmetric and int(info) == 0:
            self._coarse = ("cholesky", L)
        else:
            self._coarse = ("lu",) + tuple(torch.linalg.lu_factor(Ac))

    # ----------------------------------------------------------------------------- apply
    def _coarse_solve(self, b: torch.Tensor) -> torch.Tensor:
        p = self._profile
        if p is not None:
            p.switch("allreduce")  # the collectives' phase
        full = self._gather.all_gather(b)
        if p is not None:
            p.switch("compute")
        return self._gather.own(super()._coarse_solve(full))

    _profile: Any = None

    def attach_profile(self, profile: Any) -> None:
        """Charge the cycle's halo exchanges (SpMVs, prolongation, restriction) and the coarse
        gather to a :class:`~slactl.dist.profile.DistProfile` (None: stop)."""
        self._profile = profile
        for lv in self.levels:
            lv._ops[0].profile = profile
            if lv.P is not None:
                lv.P.profile = profile

    def transpose(self) -> "DistSmoothedAggregation":
        """The cycle of ``A^T`` with the same ``P`` and ``R = P^T`` (exactly ``M^T``); ``self``
        when ``A`` is symmetric."""
        if self.symmetric:
            return self
        t = type(self).__new__(type(self))
        t.__dict__.update(self.__dict__)
        t.levels = [lv.transpose() for lv in self.levels]
        t._coarse_dense = self._coarse_dense.T.contiguous()
        t._factor_coarse()
        return t

    @property
    def operator_complexity(self) -> float:
        """Total nonzeros of all levels over those of ``A`` (global)."""
        nnz = torch.tensor([float(lv.A.local.nnz) for lv in self.levels], dtype=torch.float64, device=self.levels[0].A.device)
        if dist.get_world_size() > 1:
            dist.all_reduce(nnz)
        return float(nnz.sum() / nnz[0])

    @property
    def grid_complexity(self) -> float:
        """Total unknowns of all levels over those of ``A``."""
        return sum(lv.A.shape[0] for lv in self.levels) / self.levels[0].A.shape[0]

    def __repr__(self) -> str:
        sizes = [lv.A.shape[0] for lv in self.levels]
        return f"DistSmoothedAggregation(levels={sizes}, rank={dist.get_rank()})"


# ------------------------------------------------------------------------------ helpers
class Prolongation:
    """This rank's rows of the global prolongator ``P`` (``n_owned x (n_coarse + n_ghost)``: its
    own aggregates, then the other ranks' aggregates its rows reach), with the plan that brings
    those coarse ghosts. ``matvec`` is ``P x`` (one exchange); ``rmatvec`` is ``P^T r`` (the
    ghost part reduced to the owners)."""

    def __init__(self, P: SparseMatrix, plan: HaloPlan, ghost_ids: torch.Tensor):
        self.P, self.plan, self.ghost_ids = P, plan, ghost_ids
        self.R = _transpose(SparseMatrix.from_pattern(P.pattern, P.values))  # keeps P's caches intact
        self._p, self._r = MatrixOperator(P), MatrixOperator(self.R)
        self.profile: Any = None  # a DistProfile charged with the exchanges, when profiling

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        if self.plan.isolated:
            return self._p.matvec(x)
        return self._p.matvec(torch.cat([x, self._exchange(lambda: self.plan.start(x).wait())]))

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        y = self._r.matvec(r)
        n = self.plan.n_owned
        if self.plan.isolated:
            return y
        return y[:n] + self._exchange(lambda: self.plan.start_reduce(y[n:]).wait())

    def _exchange(self, move):
        p = self.profile
        if p is None:
            return move()
        p.count("halo_exchanges")
        p.switch("halo")
        out = move()
        p.switch("compute")
        return out


class _Restriction:
    def __init__(self, prolongation: Prolongation):
        self.matvec = prolongation.rmatvec


def prolongator(A: DistSparseMatrix, T: SparseMatrix, inv_diag: torch.Tensor, lam: float) -> tuple[Prolongation, list[int]]:
    """The smoothed prolongator ``P = (I - omega D^{-1} A) T`` of the global ``A`` (this rank's
    rows) from the block-diagonal tentative ``T`` (this rank's rows, its own aggregates), and the
    coarse offsets of every rank (rank ``r`` owns coarse ids ``offsets[r]:offsets[r + 1]``).
    Collective: the ``T`` rows of the halo nodes come from their owners."""
    rank, device = dist.get_rank(), A.device
    n_coarse = T.shape[1]
    counts = _all_gather_ints(n_coarse, device)
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    first = offsets[rank]
    ghost_crow, ghost_cols, ghost_vals = A.plan.broadcast_rows(T.pattern.crow.to(torch.int64), T.col.to(torch.int64) + first, T.values)
    # coarse ghosts of P: the other ranks' aggregates in those rows, sorted (= grouped by owner)
    ghost_ids, ghost_local = torch.unique(ghost_cols, sorted=True, return_inverse=True)
    crow = torch.cat([T.pattern.crow.to(torch.int64), ghost_crow[1:] + T.nnz])
    cols = torch.cat([T.col.to(torch.int64), ghost_local + n_coarse])
    T_ext = SparseMatrix.from_csr(crow, cols, torch.cat([T.values, ghost_vals]), (A.n_owned + A.n_halo, n_coarse + int(ghost_ids.numel())), check=False)
    P = sparse_product(_smoothing_matrix(A.local.detach(), inv_diag, lam), T_ext)
    owned = torch.arange(first, first + n_coarse, device=device)
    plan = HaloPlan.from_needs(owned, ghost_ids, _owner(ghost_ids, offsets), group=A.plan.group)
    return Prolongation(P, plan, ghost_ids), offsets


def galerkin(A: DistSparseMatrix, prolongation: Prolongation, offsets: list[int]) -> DistSparseMatrix:
    """``P^T A P`` distributed by coarse rows (rank ``r`` owns its aggregates). Each rank forms
    ``P_r^T (A_r P)`` from its own rows (the ``P`` rows of its halo nodes come from their owners);
    the rows that belong to other ranks' aggregates are sent to them and summed. Collective."""
    world, rank, device = dist.get_world_size(), dist.get_rank(), A.device
    P, plan = prolongation.P, prolongation.plan
    n_coarse = plan.n_owned
    first = offsets[rank]
    # Local column numbering of the products ("universe"): own aggregates first, then every other
    # aggregate met, sorted. P's own rows keep their order under it (P's ghosts are sorted too),
    # so only the few received ghost rows need sorting: no sort of P or of A P.
    ghost_ids = prolongation.ghost_ids
    table = torch.cat([torch.arange(first, first + n_coarse, device=device), ghost_ids])  # P column -> global
    ghost_crow, ghost_cols, ghost_vals = A.plan.broadcast_rows(P.pattern.crow.to(torch.int64), table[P.col.to(torch.int64)], P.values)
    own = lambda g: (g >= first) & (g < first + n_coarse)  # noqa: E731
    others = torch.unique(torch.cat([ghost_ids, ghost_cols[~own(ghost_cols)]]), sorted=True)
    universe = torch.cat([torch.arange(first, first + n_coarse, device=device), others])  # universe column -> global
    to_universe = lambda g: torch.where(own(g), g - first, n_coarse + torch.searchsorted(others, g))  # noqa: E731
    p_cols = to_universe(table)[P.col.to(torch.int64)]  # monotone map: P's rows stay sorted
    gcrow, gcols, gvals = _sorted(ghost_crow, to_universe(ghost_cols), ghost_vals, int(universe.numel()))
    P_ext = SparseMatrix.from_csr(torch.cat([P.pattern.crow.to(torch.int64), gcrow[1:] + P.nnz]), torch.cat([p_cols, gcols]),
                                  torch.cat([P.values, gvals]), (A.n_owned + A.n_halo, int(universe.numel())), check=False)
    # A P first, then R (A P) (rows: P's columns, columns: universe). cuSPARSE refuses some of
    # these products on large ranks ("insufficient resources", H200, ~100M rows per rank):
    # sparse_product then falls back to smaller row chunks and to expand-sort-compress.
    C = sparse_product(prolongation.R, sparse_product(A.local.detach(), P_ext))
    del P_ext
    C_crow = C.pattern.crow.to(torch.int64)
    split = int(C_crow[n_coarse])
    # rows of other ranks' aggregates go to their owners (summed there with every contribution)
    owner_rows, in_crow, in_cols, in_vals = plan.reduce_rows(C_crow[n_coarse:] - split, universe[C.col[split:].to(torch.int64)],
                                                             C.values[split:])
    in_rows = torch.repeat_interleave(owner_rows, in_crow[1:] - in_crow[:-1])
    # the received columns may name aggregates this rank has not met: widen ``others`` (small)
    wider = torch.unique(torch.cat([others, in_cols[~own(in_cols)]]), sorted=True)
    widen = torch.cat([torch.arange(n_coarse, device=device), n_coarse + torch.searchsorted(wider, others)])
    mine = SparseMatrix.from_csr(C_crow[:n_coarse + 1], widen[C.col[:split].to(torch.int64)], C.values[:split],
                                 (n_coarse, n_coarse + int(wider.numel())), check=False)
    del C
    in_local = torch.where(own(in_cols), in_cols - first, n_coarse + torch.searchsorted(wider, in_cols))
    local = add_entries(mine, in_rows, in_local, in_vals)
    # ghosts: the aggregates of other ranks that a column names (monotone renumbering: rows stay sorted)
    used = torch.zeros(int(wider.numel()), dtype=torch.bool, device=device)
    cols = local.col.to(torch.int64)
    used[cols[cols >= n_coarse] - n_coarse] = True
    halo_ids = wider[used]
    renumber = torch.cat([torch.arange(n_coarse, device=device), n_coarse + torch.cumsum(used, 0) - 1])
    local = SparseMatrix.from_csr(local.pattern.crow, renumber[cols], local.values, (n_coarse, n_coarse + int(halo_ids.numel())),
                                  check=False)
    local = _unit_diagonal_where_empty(local)
    owned = torch.arange(first, first + n_coarse, device=device)
    coarse_plan = HaloPlan.from_needs(owned, halo_ids, _owner(halo_ids, offsets), group=A.plan.group)
    return DistSparseMatrix(local, owned, halo_ids, coarse_plan, (offsets[-1], offsets[-1]), rank=rank, parts=world,
                            symmetry=A.symmetry)


def add_entries(X: SparseMatrix, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor) -> SparseMatrix:
    """``X`` (CSR, sorted rows) plus a few COO entries (summed where ``X`` has them): only the rows
    they touch are re-sorted; every other entry moves by one shift (no sort of ``X``)."""
    if rows.numel() == 0:
        return X
    device = X.device
    crow = X.pattern.crow.to(torch.int64)
    touched = torch.unique(rows)
    starts, ends = crow[touched], crow[touched + 1]
    lens = ends - starts
    within = torch.arange(int(lens.sum()), device=device) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
    pos = torch.repeat_interleave(starts, lens) + within  # X's entries in the touched rows
    small = SparseMatrix(torch.cat([X.values[pos], vals]), torch.cat([torch.repeat_interleave(touched, lens), rows]),
                         torch.cat([X.col.to(torch.int64)[pos], cols]), X.shape)  # sorted and summed (small)
    scrow = small.pattern.crow.to(torch.int64)
    extra = (scrow[touched + 1] - scrow[touched]) - lens
    counts = crow[1:] - crow[:-1]
    counts[touched] += extra
    new_crow = torch.zeros(X.shape[0] + 1, dtype=torch.int64, device=device)
    torch.cumsum(counts, 0, out=new_crow[1:])
    nnz = int(new_crow[-1])
    out_col = X.col.new_empty(nnz)
    out_val = X.values.new_empty(nnz)
    # untouched entries shift by the extra entries of the touched rows before them
    delta = torch.zeros(X.nnz + 1, dtype=torch.int64, device=device)
    delta.index_add_(0, ends, extra)
    keep = torch.ones(X.nnz, dtype=torch.bool, device=device)
    keep[pos] = False
    idx = torch.nonzero(keep).flatten()
    dest = idx + torch.cumsum(delta, 0)[:X.nnz][idx]
    out_col[dest] = X.col[idx]
    out_val[dest] = X.values[idx]
    srow = small.row.to(torch.int64)
    sdest = new_crow[srow] + (torch.arange(small.nnz, device=device) - scrow[srow])
    out_col[sdest] = small.col.to(out_col.dtype)
    out_val[sdest] = small.values
    return SparseMatrix.from_csr(new_crow, out_col, out_val, X.shape, check=False)


def _owner(ids: torch.Tensor, offsets: list[int]) -> torch.Tensor:
    bounds = torch.tensor(offsets[1:], dtype=torch.int64, device=ids.device)
    return torch.searchsorted(bounds, ids, right=True)


class _CoarseGather:
    """The coarsest level on every rank: its dense matrix once, and per cycle the all-gather of a
    distributed vector (padded to the largest share: no host synchronization)."""

    def __init__(self, A: DistSparseMatrix):
        self.A = A
        self.world = dist.get_world_size()
        counts = _all_gather_ints(A.n_owned, A.device)
        self.width = max(counts)
        ids = [torch.empty(self.width, dtype=torch.int64, device=A.device) for _ in range(self.world)]
        mine = torch.cat([A.owned, A.owned.new_zeros(self.width - A.n_owned)])
        dist.all_gather(ids, mine)
        # position in the gathered (padded) buffer of every global row, and of this rank's rows
        self.where = torch.cat([i[:c] + 0 for i, c in zip(ids, counts)])
        self.slot = torch.cat([torch.arange(c, device=A.device) + r * self.width for r, c in enumerate(counts)])
        self.mine = A.owned

    def dense_matrix(self) -> torch.Tensor:
        A = self.A
        row, col = A.global_coo()
        vals = A.local.values.detach()
        n = A.shape[0]
        counts = _all_gather_ints(int(vals.numel()), A.device)
        width = max(max(counts), 1)
        pad = lambda t: torch.cat([t, t.new_zeros(width - t.numel())])  # noqa: E731
        keys = [torch.empty(width, dtype=torch.int64, device=A.device) for _ in range(self.world)]
        values = [torch.empty(width, dtype=vals.dtype, device=A.device) for _ in range(self.world)]
        dist.all_gather(keys, pad(row * n + col))
        dist.all_gather(values, pad(vals))
        dense = torch.zeros(n * n, dtype=vals.dtype, device=A.device)
        for k, v, c in zip(keys, values, counts):
            dense.index_add_(0, k[:c], v[:c])
        return dense.reshape(n, n)

    def all_gather(self, b: torch.Tensor) -> torch.Tensor:
        """The global vector of the coarsest level on every rank."""
        tail = tuple(b.shape[1:])
        pad = torch.cat([b, b.new_zeros((self.width - b.shape[0],) + tail)])
        parts = [torch.empty_like(pad) for _ in range(self.world)]
        dist.all_gather(parts, pad.contiguous())
        flat = torch.cat(parts)
        full = b.new_empty((self.A.shape[0],) + tail)
        full[self.where] = flat[self.slot]
        return full

    def own(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, self.mine)


def _keep_coupled(A: DistSparseMatrix, ids: torch.Tensor, count: int, node: int) -> tuple[torch.Tensor, int]:
    """Nodes the local aggregation left out although they couple to other ranks (their neighbours
    are all remote) become one-node aggregates: dropping them from the coarse space would lose
    their smooth error. Nodes without off-diagonal entries (Dirichlet rows) stay out, as in
    pyamg."""
    p = A.local.pattern
    row, col = p.row.to(torch.int64), p.col.to(torch.int64)
    remote = torch.zeros(A.n_owned, dtype=torch.bool, device=A.device)
    remote[row[col >= A.n_owned]] = True
    if node > 1:
        remote = remote.reshape(-1, node).any(1)
    loose = (ids < 0) & remote
    extra = int(loose.sum())
    if extra:
        ids = ids.clone()
        ids[loose] = torch.arange(count, count + extra, device=ids.device, dtype=ids.dtype)
    return ids, count + extra


def _inverse_diagonal(A: DistSparseMatrix) -> torch.Tensor:
    p = A.local.pattern
    row, col = p.row.to(torch.int64), p.col.to(torch.int64)
    on = row == col
    d = torch.zeros(A.n_owned, dtype=A.dtype, device=A.device).index_add_(0, row[on], A.local.values.detach()[on])
    zero = torch.nonzero(d == 0).flatten()
    first = zero[0] if zero.numel() else torch.tensor(-1, device=A.device)
    bad = torch.where(first >= 0, A.owned[first.clamp_min(0)] if A.n_owned else first, torch.full_like(first, -1))
    worst = bad.clone().reshape(1)
    if dist.get_world_size() > 1:
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)  # every rank raises, or none (no hang)
    if int(worst) >= 0:
        raise StructureError(f"dist-amg needs a nonzero diagonal; a level matrix has a zero at global row {int(worst)}")
    return 1.0 / d


def _global_lambda_max(A: DistSparseMatrix, inv_diag: torch.Tensor, symmetric: bool, steps: int = 10) -> float:
    """lambda_max of ``D^{-1} A`` over all ranks: Lanczos with global inner products on
    ``D^{-1/2} A D^{-1/2}`` (symmetric ``A``, positive diagonal), else the Gershgorin bound
    ``max_i sum_j |a_ij / a_ii|`` (an upper bound: a safe, if loose, smoother interval)."""
    op = DistOperator(A)
    positive = torch.tensor([0.0 if bool((inv_diag > 0).all()) else 1.0], dtype=torch.float64, device=A.device)
    if dist.get_world_size() > 1:
        dist.all_reduce(positive, op=dist.ReduceOp.MAX)
    if symmetric and float(positive) == 0.0:
        s = inv_diag.sqrt()
        gen = torch.Generator(device=A.device).manual_seed(1000 + dist.get_rank())
        v = torch.rand(A.n_owned, generator=gen, device=A.device, dtype=A.dtype)
        return _lanczos_max(lambda x: s * op.matvec(s * x), v, min(steps, A.shape[0]), dot=op.dot)
    p = A.local.pattern
    row = p.row.to(torch.int64)
    sums = torch.zeros(A.n_owned, dtype=A.dtype, device=A.device).index_add_(0, row, A.local.values.detach().abs())
    bound = (sums * inv_diag.abs()).max().reshape(1) if A.n_owned else torch.zeros(1, dtype=A.dtype, device=A.device)
    if dist.get_world_size() > 1:
        dist.all_reduce(bound, op=dist.ReduceOp.MAX)
    return float(bound)


def _symmetric(A: DistSparseMatrix, tol: float = 1e-10) -> bool:
    """``A == A^T`` up to ``tol``: ``y^T (A x) == x^T (A y)`` with global inner products for random
    ``x, y`` (the engine's test, distributed); the same answer on every rank."""
    if A.symmetry in ("symmetric", "hermitian"):
        return True
    op = DistOperator(A)
    gen = torch.Generator(device=A.device).manual_seed(7 + dist.get_rank())
    x, y = torch.rand((2, A.n_owned), generator=gen, device=A.device, dtype=A.dtype) - 0.5
    ax, ay = op.matvec(x), op.matvec(y)
    d = op.dots((y, ax), (x, ay), (ax, ax), (y, y), (ay, ay), (x, x))
    tol = max(tol, 16 * torch.finfo(A.dtype).eps * A.shape[0] ** 0.5)
    scale = torch.sqrt(d[2] * d[3]) + torch.sqrt(d[4] * d[5])
    return bool((d[0] - d[1]).abs() <= tol * scale)


def _unit_diagonal_where_empty(local: SparseMatrix) -> SparseMatrix:
    """A coarse row without a diagonal entry (a prolongator column zeroed as dependent) gets a
    unit one: a decoupled unknown instead of a singular coarse matrix (the engine's rule)."""
    row, col = local.row.to(torch.int64), local.col.to(torch.int64)
    on = row == col
    d = torch.zeros(local.shape[0], dtype=local.dtype, device=local.device).index_add_(0, row[on], local.values[on])
    empty = torch.nonzero(d == 0).flatten()
    if not empty.numel():
        return local
    return SparseMatrix(torch.cat([local.values, torch.ones(empty.numel(), dtype=local.dtype, device=local.device)]),
                        torch.cat([row, empty]), torch.cat([col, empty]), local.shape)


def _all_sum(value: int, device: torch.device) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=device)
    if dist.get_world_size() > 1:
        dist.all_reduce(t)
    return int(t)


def _all_gather_ints(value: int, device: torch.device) -> list[int]:
    world = dist.get_world_size()
    mine = torch.tensor([value], dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(out, mine)
    return [int(o) for o in out]


__all__ = ["DistSmoothedAggregation", "DistLevel", "galerkin"]
