"""Smoothed-aggregation AMG set up on the matrix's device (GPU-native; the CPU works too).

Unlike :class:`~slactl.engine.preconditioners.amg.AMG` (pyamg builds the hierarchy on the host,
seconds at 1M unknowns), every set-up step here is a torch operation on the device:

1. strength of connection and MIS(2) aggregation (:mod:`._aggregation`);
2. the tentative prolongator ``T`` from the near-nullspace ``B`` (constant by default; the
   rigid-body modes for elasticity), one QR per aggregate, batched;
3. Jacobi-smoothed prolongation ``P = (I - omega D^{-1} A) T`` with
   ``omega = 4 / (3 lambda_max(D^{-1} A))``, ``A`` filtered of its weak couplings first
   (``filter_weak``); lambda_max from 10 Lanczos steps on the device, two fused Triton kernels
   per step on CUDA (:mod:`._lanczos`); ``P`` by SpGEMM, or on CUDA, for one
   near-nullspace vector, by two row-compression kernels (:mod:`._prolongator`);
4. the Galerkin coarse matrix ``A_c = P^T A P`` (cuSPARSE SpGEMM, in row chunks of ``P^T``);
repeated until at most ``max_coarse`` unknowns remain (or ``max_levels`` is reached, or aggregation
stops reducing the size), the coarsest solved by a dense Cholesky (LU if that fails).
lambda_max comes from 10 Lanczos steps kept on the device when A is symmetric with a positive
diagonal, else from the Arnoldi estimate of :class:`AMG`. The cycle, the smoothers (Chebyshev by default, Jacobi) and the transpose are those of
:class:`AMG`, so both hierarchies are applied by the same code.

Numeric-only re-set-up: the aggregates and ``T`` depend on the pattern (and on the values only
through ``theta`` and explicitly stored zeros); they are cached on the pattern, so a new ``SmoothedAggregation`` of a matrix
with the same pattern and new values (a training loop, Newton steps) redoes only steps 3-4. With
``theta > 0`` the aggregates of the first matrix are kept ("frozen" aggregation); pass
``reuse_aggregates=False`` to re-aggregate. The finest level shares ``A``'s values: after
changing them in place, build a new preconditioner.

Restriction is ``R = P^T`` on every level (Galerkin). For a nonsymmetric ``A`` the hierarchy is
still valid (GMRES / BiCGStab), but pyamg's nonsymmetric variant, which smooths ``R`` with
``A^T``, is not implemented.
"""

from __future__ import annotations

import os
import time
from typing import Any

import scipy.linalg
import torch

from slactl.engine.cuda_graphs import capture, capture_stream
from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import index_dtype_for
from slactl.engine.preconditioners._aggregation import (
    MemoryBudget,
    aggregate,
    galerkin_product,
    strength_graph,
    tentative_prolongator,
)
from slactl.engine.preconditioners._lanczos import lanczos_tridiagonal
from slactl.engine.preconditioners._prolongator import filtered_matrix, smoothed_prolongator, smoothing_matrix
from slactl.engine.preconditioners._symmetry import symmetry
from slactl.engine.preconditioners.amg import AMG, Level, _lambda_max, cycle_options
from slactl.errors import DtypeError, ShapeError, StructureError, UsageError


# The coarsest level is factorized densely; beyond this many unknowns coarsening has failed.
_DENSE_COARSE_LIMIT = 8000
# Default max_coarse: 1000, and on a GPU up to 2500 where the problem is large enough, since a
# dense solve of a few thousand unknowns (one GEMV with the inverse in the fused cycle) costs less
# than one more level's set-up, launch-bound there (~7 ms per level below 20k unknowns on an H200).
# The dense coarsest level holds ~3 n_c^2 values (matrix, factor, inverse): n_c <= sqrt(1.25 n)
# keeps that under 30 bytes per unknown of the problem. On a CPU the dense solve is the cost.
_MAX_COARSE_DEFAULT = 1000
# Scalar products per chunk of the sparse Galerkin products where cuSPARSE's ALG2 multiplies, per
# unknown of the finest level (its work space ~8.5 bytes per product). H200, set-up ms / peak
# bytes per unknown (benchmarks/raw/sa_amg_h200_alg2_2026-11-23): with the default algorithm's
# 2^21 products per chunk, 2D Poisson 1M 29-32 / 276, 4M 66-68 / 260, anisotropic 4M 88-93 / 279;
# ALG2 at 4 per unknown 27-28 / 273, 50-54 / 260, 68-69 / 279; at 6 the anisotropic peak is 312,
# at 8 356 (1M 25 ms at 284).
_GALERKIN_PRODUCTS_PER_UNKNOWN = 4
# ... or more: what fits in the device memory left under a ceiling of this many bytes per unknown
# above what was allocated when the set-up began (_aggregation.MemoryBudget: from the bytes each
# chunk was measured to take per product). The coarse levels, and the finest where the hierarchy
# holds little, take fewer chunks (~0.35 ms of cuSPARSE's fixed cost each), while a level whose
# operators are large keeps its peak. 0 turns it off. H200 (benchmarks/raw/sa_amg_h200_ceiling_
# 2026-11-23): 2D Poisson 1M, 12 -> 9 cuSPARSE calls per set-up, set-up 2.5 ms less on one
# machine (uncapped chunks), within the noise on another (capped: the chosen setting), peak 273
# either way; 4M, 16M and anisotropic 4M unchanged (24 / 12 / 20 calls, peaks 260 / 261 / 279).
# A fixed estimate of 16 bytes per product instead of the measured one let anisotropic 4M peak
# at 354, and chunks of all the room (no MemoryBudget.max_products) cost 16M ~10 ms of set-up.
_GALERKIN_CEILING_PER_UNKNOWN = 200
_MAX_COARSE_GPU = 2500


def default_max_coarse(n: int, device: torch.device) -> int:
    if torch.device(device).type != "cuda":
        return _MAX_COARSE_DEFAULT
    return int(min(_MAX_COARSE_GPU, max(_MAX_COARSE_DEFAULT, (1.25 * n) ** 0.5)))
# With the default max_coarse, a level this small and this dense is the coarsest: its dense
# factorization costs less than another Galerkin product (3D problems fill in on coarse levels:
# 3,105 unknowns with 51% of the entries stored at 16M DOF, whose product took 738 ms on an H200).
_DENSE_STOP_ROWS = 4096
_DENSE_STOP_FILL = 0.2
# On CUDA, Galerkin products whose dense prolongator holds at most max(this, nnz(A) / 2) entries
# run as sparse x dense products (galerkin_product): fast once the coarse space is small. Half of
# nnz(A) keeps the two dense temporaries (P and A P) within the memory of A's values: 2D Poisson
# at 1M peaked at 452 instead of 294 bytes/DOF with a fixed 2^25.
_DENSE_GALERKIN_ENTRIES = 2**18


class SmoothedAggregation(AMG):
    """Smoothed-aggregation AMG whose set-up runs on the matrix's device.

    Parameters
    ----------
    A : SparseMatrix, optional
        Real, square, nonzero diagonal; set up at once when given.
    theta : float
        Strength threshold: ``|a_ij| >= theta sqrt(|a_ii a_jj|)`` is a strong connection
        (0 keeps every off-diagonal entry, pyamg's default). The default 0.08 lets aggregates follow
        anisotropy and coefficient jumps (13 instead of 75 CG iterations on ``anisotropic2d``)
        at no cost on isotropic problems.
    coarse_theta : float, optional
        The threshold on the coarse levels (default ``theta / 2``). Galerkin operators of smoothed
        aggregation carry many small entries that still couple strongly in the aggregate sense:
        with the fine threshold, aggregates on 3D Poisson stay small and the operators fill in
        (16M on an H200: complexity 2.06, 40 CG iterations; with half of it 1.51 and 12). The
        2D gallery keeps its counts (anisotropic 4M 14 -> 14, high-contrast 4M 13 -> 15 iterations,
        both in less time).
    near_nullspace : Tensor ``[n, k]``, optional
        Vectors the coarse spaces must represent (default: the constant vector).
    block_size : int
        Unknowns per mesh node, aggregated together (2 for 2D elasticity, 3 in 3D).
    smoother, degree : as :class:`AMG` (Chebyshev of degree 2 by default).
    max_levels, max_coarse : int
        At most ``max_levels`` levels; the coarsest (at most ``max_coarse`` unknowns) is solved
        densely. By default (None) ``max_coarse`` is 1000, on CUDA up to 2500 (``sqrt(1.25 n)``:
        a dense coarse solve is cheaper there than a launch-bound small level), and a level of at most
        4096 unknowns with at least 20% of its entries stored is the coarsest too (it has filled
        in: a dense factorization is cheaper than coarsening it further). A given value is kept
        exactly.
    symmetry : {"symmetric", "nonsymmetric"}, optional
        Skip the symmetry check when known.
    reuse_aggregates : bool
        Reuse the aggregation cached on ``A``'s pattern (numeric-only re-set-up).
    seed : int
        Seed of the MIS(2) priorities (the set-up is deterministic on a given device).
    filter_weak : bool
        Smooth the prolongator with the filtered matrix (weak couplings, ``|a_ij| < theta
        min(m_i, m_j)`` with ``m_i`` row ``i``'s largest off-diagonal magnitude, lumped onto the
        diagonal against the level's near-nullspace: :func:`._prolongator.filtered_matrix`) instead
        of ``A``, on every level where the finest level has weak couplings (at least 5% of its
        entries), on none otherwise. Scalar unknowns with one near-nullspace vector only
        (elasticity keeps ``A``). ``anisotropic2d`` 4M on an H200: operator complexity 3.7 -> 1.7,
        14 CG iterations either way, 0.30 -> 0.12 s to solution, peak 863 -> 279 bytes/DOF.
    cuda_graph : bool
        On CUDA, capture the V-cycle once per right-hand-side shape in a CUDA graph and replay it
        (about 30 kernels per level launched as one: the cycle is launch-bound below ~4M
        unknowns). Falls back to eager launches where capture fails.
    fused_cycle : bool
        On CUDA with Triton, each level's SpMVs and smoother updates run as fused kernels
        (:mod:`slactl.engine.preconditioners.fused_cycle`: 6 kernels per Chebyshev(2) level
        instead of ~30); False keeps the torch cycle.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, slactl
    >>> from slactl.engine.krylov import cg
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(64, 64))
    >>> A = slactl.SparseMatrix.from_scipy(sp.kron(T, sp.eye(64)) + sp.kron(sp.eye(64), T))
    >>> res = cg(A, torch.ones(64 * 64, dtype=torch.float64), preconditioner=SmoothedAggregation(A))
    >>> res.converged, res.iterations < 30
    (True, True)
    """

    name = "sa-amg"
    # Entries of the dense prolongator below which Galerkin products run sparse x dense; None: the
    # device's default (max(2^18, nnz(A) / 2) on CUDA, never on the CPU, where SciPy's sparse product
    # is faster). Tests set it to exercise that path on the CPU.
    _dense_galerkin_entries: int | None = None

    def __init__(
        self,
        A: SparseMatrix | None = None,
        *,
        theta: float = 0.08,
        coarse_theta: float | None = None,
        near_nullspace: torch.Tensor | None = None,
        block_size: int = 1,
        smoother: str = "chebyshev",
        degree: int = 2,
        max_levels: int = 12,
        max_coarse: int | None = None,
        symmetry: str | None = None,
        reuse_aggregates: bool = True,
        seed: int = 0,
        filter_weak: bool = True,
        cuda_graph: bool = True,
        fused_cycle: bool = True,
    ):
        self.smoother, self.degree = cycle_options(smoother, degree)
        self.fused_cycle = bool(fused_cycle)
        if int(block_size) < 1 or int(max_levels) < 1 or (max_coarse is not None and int(max_coarse) < 1):
            raise UsageError("block_size, max_levels and max_coarse must be positive integers")
        if not theta >= 0:
            raise UsageError(f"theta must be >= 0, got {theta}")
        if coarse_theta is not None and not coarse_theta >= 0:
            raise UsageError(f"coarse_theta must be >= 0, got {coarse_theta}")
        self.coarse_theta = None if coarse_theta is None else float(coarse_theta)
        if symmetry not in (None, "symmetric", "hermitian", "nonsymmetric"):
            raise UsageError(f"symmetry must be 'symmetric', 'hermitian', 'nonsymmetric' or None, got {symmetry!r}")
        self.theta, self.block_size, self.seed = float(theta), int(block_size), int(seed)
        self.near_nullspace = near_nullspace
        self.max_levels = int(max_levels)
        self.max_coarse = None if max_coarse is None else int(max_coarse)
        self.symmetry = symmetry
        self.reuse_aggregates = reuse_aggregates
        self.filter_weak = bool(filter_weak)
        self.levels: list[Level] = []
        self.hierarchy = None
        self.reused_aggregates = False
        self.cuda_graph = bool(cuda_graph)
        self._graphs: dict[Any, Any] = {}
        super(AMG, self).__init__(A)

    # ----------------------------------------------------------------------------- setup
    def _setup(self, A: SparseMatrix) -> None:
        # The set-up caches the COO row indices and the diagonal positions on A's pattern (shared
        # with the caller's matrix): 36 bytes per unknown on a 5-point stencil that would outlive
        # the set-up, a fifth of the hierarchy's memory. Dropped afterwards unless they were there
        # before (they are rebuilt on demand; the aggregation cache for re-set-ups is kept).
        had_row, had_diagonal = A.pattern._row is not None, "diagonal" in A.pattern._cache
        try:
            self._build(A, keep_row=had_row)
        finally:
            if not had_row:
                A.pattern._row = None
            if not had_diagonal:
                A.pattern._cache.pop("diagonal", None)

    def _build(self, A: SparseMatrix, keep_row: bool = True) -> None:
        if A.dtype.is_complex:
            raise DtypeError("sa-amg takes a real matrix; use ilu0 or jacobi for a complex one")
        n = A.shape[0]
        if n % self.block_size:
            raise ShapeError(f"block_size {self.block_size} does not divide the {n} rows")
        self._graphs = {}  # graphs captured on a previous hierarchy must never replay
        # The strength graph may skip symmetrization only for a structurally symmetric pattern
        # (both tests in one host synchronization).
        values, pattern = symmetry(A)
        self.symmetric = self.symmetry in ("symmetric", "hermitian") if self.symmetry else values
        symmetric_pattern = self.symmetric and pattern
        B = self._nullspace(A)
        max_coarse = self.max_coarse or default_max_coarse(A.shape[0], A.device)
        dense_entries = self._dense_galerkin_entries
        if dense_entries is None:
            dense_entries = max(_DENSE_GALERKIN_ENTRIES, A.nnz // 2) if A.device.type == "cuda" else 0
        theta = self.theta
        coarse_theta = theta / 2 if self.coarse_theta is None else self.coarse_theta
        # (the default max_coarse also stops at small dense levels: part of the key)
        key = ("sa-amg", theta, coarse_theta, self.block_size, self.max_levels, max_coarse, self.max_coarse is None, self.seed, A.dtype)
        cached = A.pattern._cache.get(key) if self.reuse_aggregates else None
        if cached is not None and _same_nullspace(cached[0], self.near_nullspace):
            tentatives, stalled, self.reused_aggregates = cached[1], cached[2], True
        else:
            tentatives, stalled, self.reused_aggregates = [], False, False
        levels: list[Level] = []
        watch = _Stopwatch(A.device)
        Al = SparseMatrix.from_pattern(A.pattern, A.values.detach())
        filtering = self.filter_weak
        memory = None
        if A.device.type == "cuda" and _GALERKIN_CEILING_PER_UNKNOWN > 0:
            memory = MemoryBudget(torch.cuda.memory_allocated(A.device) + int(_GALERKIN_CEILING_PER_UNKNOWN * n))
        for depth in range(self.max_levels):
            rows = Al.shape[0]
            last = (depth == self.max_levels - 1 or rows <= max_coarse
                    or (self.max_coarse is None and rows <= _DENSE_STOP_ROWS and Al.nnz >= _DENSE_STOP_FILL * rows * rows))
            # (a coarse level's empty rows get a unit diagonal: see _unit_diagonal_where_empty)
            Al, inv_diag, positive = _diagonal_facts(Al, repair=depth > 0)
            lam = 0.0 if last else _spectral_radius(Al, inv_diag, self.symmetric, positive=positive)
            watch.lap("spectral radius")
            if last:
                levels.append(Level(Al, None, None, inv_diag, lam))
                break
            level_theta = theta if depth == 0 else coarse_theta
            node = self.block_size if depth == 0 else B.shape[1]  # unknowns per aggregated node
            if depth >= len(tentatives):
                if self.reused_aggregates:  # the cached set-up stopped coarsening here (stalled)
                    levels.append(Level(Al, None, None, inv_diag, 0.0))
                    break
                G = strength_graph(Al, level_theta, node, symmetric_pattern)
                watch.lap("strength")
                ids, count, _ = aggregate(G, self.seed + depth)
                del G
                watch.lap("aggregation")
                if count == 0 or count * B.shape[1] >= 0.9 * Al.shape[0]:  # coarsening stalled
                    levels.append(Level(Al, None, None, inv_diag, 0.0))
                    stalled = True
                    break
                tentatives.append(tentative_prolongator(ids, count, B, node))
                B = tentatives[-1].coarse_nullspace
                watch.lap("tentative")
            T = tentatives[depth].T
            one_per_row = tentatives[depth].coarse_nullspace.shape[1] == 1
            # The prolongator is smoothed with the filtered matrix (scalar unknowns, one
            # near-nullspace vector: this level's, the tentative's input), on every level of a
            # matrix with weak couplings; where the finest has none (Poisson, coefficient jumps),
            # on none: the small entries of Galerkin operators are no anisotropy, and filtering
            # them cost a compaction and a Lanczos estimate per level (2D Poisson 4M on an H200:
            # +7 ms of set-up, 13 -> 14 CG iterations).
            Af = None
            if filtering and node == 1 and one_per_row and level_theta > 0:
                b = self._nullspace(A) if depth == 0 else tentatives[depth - 1].coarse_nullspace
                constant = depth == 0 and self.near_nullspace is None  # (lumping row sums: no products)
                Af = filtered_matrix(Al, level_theta, None if constant else b[:, 0])
            filtering = filtering and (depth > 0 or Af is not None)
            if Al.pattern is not A.pattern or not keep_row:
                # The COO rows (strength, symmetry test, diagonal) are not needed any more: 4 bytes
                # per entry freed before the SpGEMMs, where the set-up peaks.
                Al.pattern._row = None
            if Af is None:
                P = _smooth_prolongator(Al, T, inv_diag, lam, one_per_row=one_per_row)
            else:
                Af, inv_diag_f, positive_f = _diagonal_facts(Af)
                P = _smooth_prolongator(Af, T, inv_diag_f, _spectral_radius(Af, inv_diag_f, self.symmetric, positive=positive_f),
                                        one_per_row=True)
                del Af, inv_diag_f
            watch.lap("smoothed P")
            R = _transpose(P)  # Galerkin restriction R = P^T, also for nonsymmetric A (module docstring)
            watch.lap("transpose")
            levels.append(Level(Al, P, R, inv_diag, lam))
            # Galerkin: sparse in row chunks of R, or sparse x dense once the coarse space is small
            Al = galerkin_product(R, Al, P, dense_entries=dense_entries, symmetric=self.symmetric,
                                  alg2_products=int(_GALERKIN_PRODUCTS_PER_UNKNOWN * n), memory=memory)
            watch.lap("Galerkin R A P")
        if not self.reused_aggregates and self.reuse_aggregates:
            snapshot = None if self.near_nullspace is None else torch.as_tensor(self.near_nullspace).clone()
            A.pattern._cache[key] = (snapshot, tentatives[: len(levels) - 1], stalled)
        if levels[-1].A.shape[0] > max(4 * max_coarse, _DENSE_COARSE_LIMIT):
            advice = (f"with theta={self.theta} too few connections are strong: lower theta (0 keeps all)" if self.theta > 0
                      else "the matrix graph has too few off-diagonal connections to aggregate")
            raise StructureError(
                f"sa-amg: coarsening stalled at {levels[-1].A.shape[0]} unknowns (level {len(levels) - 1}), too many "
                f"for the dense coarse solve: {advice}; or use another preconditioner (jacobi, ic0)"
            )
        self.levels = levels
        self._factor_coarse()
        watch.lap("coarse factorization")
        self.setup_profile = watch.laps
        self.positive_definite = self.symmetric and self._coarse[0] == "cholesky"

    def _nullspace(self, A: SparseMatrix) -> torch.Tensor:
        if self.near_nullspace is None:
            return torch.ones((A.shape[0], 1), dtype=A.dtype, device=A.device)
        B = torch.as_tensor(self.near_nullspace).to(device=A.device, dtype=A.dtype)
        B = B[:, None] if B.dim() == 1 else B
        if B.dim() != 2 or B.shape[0] != A.shape[0] or B.shape[1] < 1:
            raise ShapeError(f"near_nullspace must have shape [{A.shape[0]}, k] with k >= 1, got {tuple(B.shape)}")
        return B

    # ----------------------------------------------------------------------------- apply
    def _apply(self, r: torch.Tensor) -> torch.Tensor:
        if self.cuda_graph and r.is_cuda and not torch.cuda.is_current_stream_capturing():
            graphed = self._graphed(r)
            if graphed is not None:
                return graphed
        return self._cycle(0, r)

    def _graphed(self, r: torch.Tensor) -> torch.Tensor | None:
        key = (tuple(r.shape), r.dtype, r.device)
        entry = self._graphs.get(key)
        if entry is None:
            out, self._graphs[key] = _run_and_capture(lambda x: self._cycle(0, x), r)
            return out
        if entry is False:  # capture failed once: eager from now on
            return None
        graph, static_in, static_out = entry
        static_in.copy_(r)
        graph.replay()
        return static_out.clone()  # the next replay overwrites static_out

    def transpose(self) -> "SmoothedAggregation":
        t = super().transpose()
        if t is not self:
            t._graphs = {}  # captured graphs belong to the untransposed cycle
        return t

    @property
    def grid_complexity(self) -> float:
        """Total unknowns of all levels over those of ``A``."""
        return sum(lv.A.shape[0] for lv in self.levels) / self.levels[0].A.shape[0]


class _Stopwatch:
    """Seconds and peak device bytes per set-up stage, summed over levels, when the environment
    sets ``SLACTL_AMG_PROFILE=1`` (synchronizes at every stage boundary; off by default)."""

    def __init__(self, device: torch.device):
        self.enabled = os.environ.get("SLACTL_AMG_PROFILE") == "1"
        self.cuda = device.type == "cuda"
        self.laps: dict[str, float] = {}
        self.t = self._now() if self.enabled else 0.0
        if self.enabled and self.cuda:
            self.laps["start held MB"] = torch.cuda.memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, stage: str) -> None:
        if not self.enabled:
            return
        now = self._now()
        self.laps[stage] = self.laps.get(stage, 0.0) + now - self.t
        if self.cuda:  # the peak within this stage (resets the device's peak counter)
            peak = torch.cuda.max_memory_allocated() / 2**20
            self.laps[f"{stage} peak MB"] = max(self.laps.get(f"{stage} peak MB", 0.0), peak)
            self.laps[f"{stage} held MB"] = torch.cuda.memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        self.t = self._now()


def _run_and_capture(cycle, r: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """``cycle(r)``, run eagerly, and ``(graph, static_in, static_out)`` replaying ``cycle`` on
    ``static_in``, or False where the capture fails.

    The eager run is the capture's warm-up (cuSPARSE descriptors, cuBLAS's work space on the
    capture stream and Triton's compilations exist before the capture) and its result is the
    first application's: the capture, host work only, overlaps the device running it, and no
    separate warm-up cycle is spent (it took 1.1-1.7 ms of a first solve at 1M on an H200)."""
    current = torch.cuda.current_stream(r.device)
    side = capture_stream(r.device)
    side.wait_stream(current)
    try:
        with torch.cuda.stream(side):
            out = cycle(r)
    finally:  # (also on an error: the caller's r may be reused on its stream only after side's reads)
        current.wait_stream(side)
    out.record_stream(current)  # allocated on the side stream, used on the caller's
    static_in = r.detach().clone()
    try:
        graph, static_out = capture(lambda: cycle(static_in), r.device)
    except RuntimeError:  # an operation that cannot be captured: stay eager
        torch.cuda.synchronize(r.device)
        return out, False
    return out, (graph, static_in, static_out)


def _same_nullspace(cached: Any, B: Any) -> bool:
    """The cached aggregation was built for this near-nullspace (by value, not identity)."""
    if cached is None or B is None:
        return cached is None and B is None
    B = torch.as_tensor(B)
    return cached.shape == B.shape and cached.dtype == B.dtype and bool(torch.equal(cached, B.to(cached.device)))


def _unit_diagonal_where_empty(A: SparseMatrix) -> SparseMatrix:
    """A coarse unknown whose prolongator column is zero (a near-nullspace vector that is
    rank-deficient on an aggregate) has an empty row and column: give it a unit diagonal, a decoupled
    unknown whose coarse correction is zero, instead of a singular coarse matrix."""
    d = A.diagonal()
    empty = d == 0
    if not bool(empty.any()):
        return A
    rows = torch.nonzero(empty).flatten()
    one = SparseMatrix(torch.ones(rows.numel(), dtype=A.dtype, device=A.device), rows, rows, A.shape)
    from slactl.engine.ops.elementwise import add

    with torch.no_grad():
        return add(A, one)


def _symmetric_pattern(A: SparseMatrix) -> bool:
    """Structural symmetry (:func:`._symmetry.symmetry`)."""
    return symmetry(A)[1]


def _symmetric(A: SparseMatrix, tol: float = 1e-10) -> bool:
    """``||A - A^T||_F <= tol ||A||_F``: exact on the host, estimated on the device (:func:`._symmetry.symmetry`)."""
    return symmetry(A, tol)[0]


def _transpose(P: SparseMatrix) -> SparseMatrix:
    """``P^T`` as its own CSR matrix, keeping nothing else: the transpose permutations and COO row
    indices that ``SparseMatrix.T`` caches for autograd would double the hierarchy's memory. On
    CUDA a stable sort of the column indices alone (the rows are in order already) and a scatter
    count, without the host synchronizations of ``Pattern.transpose``."""
    if P.device.type == "cuda":
        m, n = P.shape
        col = P.pattern.col
        order = torch.sort(col, stable=True).indices
        counts = torch.zeros(n, dtype=torch.int64, device=P.device).index_add_(
            0, col, torch.ones(1, dtype=torch.int64, device=P.device).expand(col.numel()))
        crow = torch.zeros(n + 1, dtype=torch.int64, device=P.device)
        torch.cumsum(counts, 0, out=crow[1:])
        rows = torch.repeat_interleave(torch.arange(m, device=P.device, dtype=col.dtype),
                                       P.pattern.crow[1:] - P.pattern.crow[:-1], output_size=col.numel())
        idx = index_dtype_for(n + 1, m, col.numel())
        R = SparseMatrix.from_csr(crow.to(idx), rows[order].to(idx), P.values[order], (n, m), check=False)
        P.pattern._row = None
        return R
    pattern_t, perm = P.pattern.transpose()
    R = SparseMatrix.from_csr(pattern_t.crow, pattern_t.col, P.values[perm.to(torch.int64)], (P.shape[1], P.shape[0]), check=False)
    P.pattern._cache.clear()
    P.pattern._row = None
    return R


def _inverse_diagonal(A: SparseMatrix) -> torch.Tensor:
    return _diagonal_facts(A)[1]


def _diagonal_facts(A: SparseMatrix, repair: bool = False) -> tuple[SparseMatrix, torch.Tensor, bool]:
    """``(A, 1 / diag(A), diag(A) > 0)`` in one host synchronization. A zero on the diagonal is
    an error, unless ``repair`` (a coarse level): then ``A`` gets a unit diagonal there first
    (:func:`_unit_diagonal_where_empty`)."""
    row, col, values = A.row, A.col, A.values.detach()
    # one addend per row is the diagonal, the others are zeros: exact in any order, and no
    # boolean-mask gather (diagonal_positions), which waits for the device
    d = torch.zeros(A.shape[0], dtype=A.dtype, device=A.device).index_add_(0, row, torch.where(row == col, values, 0))
    zero, positive = torch.stack([(d == 0).any(), (d > 0).all()]).tolist()
    if zero and repair:
        return _diagonal_facts(_unit_diagonal_where_empty(A))
    if zero:
        i = int(torch.nonzero(d == 0)[0])
        raise StructureError(f"sa-amg needs a nonzero diagonal; a level matrix has a zero at row {i}")
    return A, 1.0 / d, positive


def _smooth_prolongator(A: SparseMatrix, T: SparseMatrix, inv_diag: torch.Tensor, lam: float,
                        one_per_row: bool = False) -> SparseMatrix:
    """``P = (I - omega D^{-1} A) T``, ``omega = 4 / (3 lambda_max)`` (:mod:`._prolongator`)."""
    return smoothed_prolongator(A, T, inv_diag, 4.0 / (3.0 * lam), one_per_row=one_per_row)


def _smoothing_matrix(A: SparseMatrix, inv_diag: torch.Tensor, lam: float) -> SparseMatrix:
    """``S = I - omega D^{-1} A``, ``omega = 4 / (3 lambda_max)`` (:func:`._prolongator.smoothing_matrix`)."""
    return smoothing_matrix(A, inv_diag, 4.0 / (3.0 * lam))


def _spectral_radius(A: SparseMatrix, inv_diag: torch.Tensor, symmetric: bool, steps: int = 10,
                     positive: bool | None = None) -> float:
    """lambda_max of ``D^{-1} A``: for symmetric ``A`` with a positive diagonal (``positive``, when
    the caller knows it), ``steps`` Lanczos steps on ``D^{-1/2} A D^{-1/2}`` kept on the device
    (:func:`._lanczos.lanczos_tridiagonal`, fused kernels on CUDA; one host synchronization at the
    end; the largest Ritz value approaches lambda_max from below, hence the smoothers' 1.1 factor);
    else the Arnoldi estimate of :class:`AMG`."""
    if positive is None:
        positive = bool((inv_diag > 0).all())
    if not (symmetric and positive):
        return _lambda_max(A, inv_diag, symmetric)
    m = min(steps, A.shape[0])
    alphas, betas = lanczos_tridiagonal(A, inv_diag.sqrt(), m)
    host = torch.cat([alphas, betas]).double().cpu().numpy()
    return float(scipy.linalg.eigvalsh_tridiagonal(host[:m], host[m:], select="i", select_range=(m - 1, m - 1))[0])


__all__ = ["SmoothedAggregation"]
