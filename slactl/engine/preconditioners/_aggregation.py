"""Set-up kernels of smoothed-aggregation AMG that run on the matrix's device (CPU or CUDA).

Everything here is a handful of whole-array torch operations per step (scatter-max over the edge
list, sorts, a batched QR), so the set-up of a 1M-row matrix on a GPU costs milliseconds and
never copies the matrix to the host:

* :func:`strength_graph` - the symmetric strength-of-connection graph (Vanek, Mandel & Brezina):
  ``|a_ij| >= theta sqrt(|a_ii a_jj|)``, on nodes of ``block_size`` unknowns (Frobenius norms of
  the blocks) when several unknowns share a mesh node (elasticity).
* :func:`aggregate` - aggregation by a distance-2 maximal independent set (Bell, Dalton & Olson,
  "Exposing fine-grained parallelism in algebraic multigrid methods", SISC 2012): the MIS(2)
  nodes are the aggregate roots, every other node joins the root within distance 2. Parallel
  (Luby-style rounds of scatter-max), deterministic for a fixed seed.
* :func:`tentative_prolongator` - the piecewise near-nullspace prolongator ``T`` and the coarse
  near-nullspace ``B_c`` from one QR per aggregate (Gram-Schmidt with segment sums).
* :func:`sparse_product` - ``A @ B`` for the Galerkin products: cuSPARSE SpGEMM on CUDA (its
  ALG2 through :mod:`slactl.engine.ops.cusparse_spgemm`, else ``torch.sparse.mm``), SciPy on the CPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from slactl.engine.ops import cusparse_spgemm
from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import index_dtype_for


def device_generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on ``device``: random set-up data is drawn where it is used."""
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class Graph:
    """A symmetric graph on ``n`` nodes in CSR form: node ``i``'s neighbours are
    ``col[crow[i]:crow[i+1]]`` (both directions stored, no loops)."""

    n: int
    crow: torch.Tensor  # int64 [n + 1]
    col: torch.Tensor  # int32 or int64
    interpret: bool = False  # run the Triton kernel under its CPU interpreter (tests)

    @functools.cached_property
    def dst(self) -> torch.Tensor:
        """The node each stored neighbour belongs to (int64, one per entry); built once for the two
        neighbour maxima of every MIS round, not per call (the torch path: 2D Poisson 1M on 2 cores,
        23 -> 13-20 ms per call on the finest level)."""
        return torch.repeat_interleave(torch.arange(self.n, device=self.col.device), self.crow[1:] - self.crow[:-1],
                                       output_size=self.col.numel())

    def neighbour_max(self, values: torch.Tensor) -> torch.Tensor:
        """``max(values[i], max_{j ~ i} values[j])`` for every node ``i``."""
        if _use_kernel(values, self.interpret):
            out = torch.empty_like(values)
            self._launch("_neighbour_max_kernel", values, out)
            return out
        return values.scatter_reduce(0, self.dst, values[self.col], reduce="amax", include_self=True)

    def mis_round(self, state: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
        """One round of the MIS(2) selection of :func:`aggregate` (states 0 out, 1 undecided,
        2 root; keys ``state * n + priority``): the new states."""
        n = self.n
        if _use_kernel(state, self.interpret):
            best1 = torch.empty_like(state)
            self._launch("_mis_key_max_kernel", state, priority, best1)
            state = state.clone()  # the update kernel writes in place
            self._launch("_mis_update_kernel", best1, state, priority)
            return state
        undecided = state == _UNDECIDED
        key = state * n + priority
        best = self.neighbour_max(self.neighbour_max(key))
        new_root = undecided & (best == key)
        state = torch.where(new_root, _ROOT, state)
        return torch.where(undecided & ~new_root & (best >= _ROOT * n), 0, state)

    def _launch(self, kernel: str, *arrays: torch.Tensor) -> None:
        """One of :mod:`._aggregation_kernels` over the rows: 128 rows per program, 8 lanes per row."""
        rows_per_program = 128
        grid = (max(1, -(-self.n // rows_per_program)),)
        getattr(_kernels(), kernel)[grid](self.crow, self.col, *arrays, self.n, BS=rows_per_program, KP=8)


# MIS(2) node states (the Triton round of _aggregation_kernels uses the same numbers)
_UNDECIDED, _ROOT = 1, 2


def _use_kernel(values: torch.Tensor, interpret: bool) -> bool:
    """The set-up's Triton kernels apply to tensors like ``values``: on CUDA with Triton, or under
    Triton's interpreter where ``interpret`` asks for it (tests)."""
    from slactl.engine.krylov.fused_cg import interpreting, triton_available

    if not triton_available():
        return False
    return (values.is_cuda and not interpreting()) or (interpret and interpreting())


def _kernels():
    import importlib

    return importlib.import_module("slactl.engine.preconditioners._aggregation_kernels")


def _csr_graph(n: int, row: torch.Tensor, col: torch.Tensor, keep: torch.Tensor) -> Graph:
    """The graph of the kept entries of a row-sorted edge list (``row`` ascending)."""
    counts = torch.zeros(n, dtype=torch.int32, device=col.device).index_add_(0, row, keep.to(torch.int32))
    crow = torch.zeros(n + 1, dtype=torch.int64, device=col.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return Graph(n, crow, col[keep])


# Entries per chunk of the strength test (~32 MB of float64 temporaries per chunk).
_STRENGTH_CHUNK = 1 << 22


def strength_graph(A: SparseMatrix, theta: float, block_size: int = 1, symmetric: bool = False) -> Graph:
    """Strong connections of ``A`` on its nodes (``block_size`` consecutive unknowns per node).

    ``theta = 0`` keeps every stored off-diagonal entry that is not an explicit zero. The graph is
    symmetrized (``i ~ j`` when either direction is strong), as aggregation needs; ``symmetric``
    says the pattern and values are symmetric, so the edge list already holds both directions.
    """
    row, col, val = A.row, A.col, A.values.detach()
    if block_size > 1:
        row, col = row.to(torch.int64) // block_size, col.to(torch.int64) // block_size
        n = A.shape[0] // block_size
        key, inverse = torch.unique(row * n + col, return_inverse=True)
        val = torch.zeros(key.numel(), dtype=val.dtype, device=val.device).index_add_(0, inverse, val.abs() ** 2).sqrt()
        row, col = key // n, key % n
    else:
        n = A.shape[0]
        val = val.abs()
    on_diagonal = row == col
    # |a_ii| by a scatter over all entries (zero off the diagonal): no boolean-mask gathers, which
    # synchronize with the host
    diag = torch.zeros(n, dtype=val.dtype, device=val.device).index_add_(0, row, torch.where(on_diagonal, val, 0))
    keep = ~on_diagonal & (val > 0)
    if theta > 0:
        # theta sqrt(d_i d_j) per entry, in chunks of entries: the gathers (and the int64 copies
        # of int32 indices that indexing makes) stay O(chunk); over all entries at once they were
        # the set-up's memory peak on 2D Poisson.
        step = _STRENGTH_CHUNK
        for s0 in range(0, row.numel(), step):
            r, c = row[s0 : s0 + step], col[s0 : s0 + step]
            bound = diag[r]
            bound.mul_(diag[c]).sqrt_().mul_(theta)
            keep[s0 : s0 + step] &= val[s0 : s0 + step] >= bound
            del bound, r, c
    if symmetric:  # the entries are in row order: the kept ones are the graph in CSR form
        return _csr_graph(n, row, col, keep)
    # both directions of every kept entry, sorted by node (and deduplicated)
    src, dst = col[keep].to(torch.int64), row[keep].to(torch.int64)
    keys = torch.unique(torch.cat([dst * n + src, src * n + dst]))
    nodes, neighbours = keys // n, keys % n
    del keys
    return _csr_graph(n, nodes, neighbours.to(index_dtype_for(n + 1, n, 0)), torch.ones_like(nodes, dtype=torch.bool))


# MIS(2) rounds before the first termination test of aggregate(), and between two tests: 2D
# Poisson takes 4-6 rounds per level. Each test waits for the device; a round after the last is a
# no-op (no undecided node is left to change), two kernels.
_MIS_ROUNDS_FIRST = 4
_MIS_ROUNDS_PER_TEST = 2


def aggregate(G: Graph, seed: int = 0) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Aggregate id of every node (``-1`` for nodes without strong neighbours), the count, and
    which nodes are the aggregates' roots (a boolean mask: root ``a`` is the ``a``-th set entry).

    Round of the MIS(2) selection: every undecided node compares the key ``(state, priority)``
    with all keys within distance 2 (two scatter-max sweeps); it becomes a root when its own key is
    the largest, and leaves the candidate set when a root lies within distance 2. Roots are thus
    more than 2 apart, every aggregated node has exactly one root within distance 1 or reaches one
    at distance 2, and aggregates have a diameter of at most 4.
    """
    n, dev = G.n, G.col.device
    # Drawn on the device: a host permutation of 16M entries alone takes 0.3 s.
    priority = torch.randperm(n, generator=device_generator(dev, seed), device=dev)
    degree = G.crow[1:] - G.crow[:-1]
    # Keys (state, priority) as state * n + priority: int32 halves the traffic where they fit.
    kdtype = torch.int32 if 3 * n < 2**31 else torch.int64
    priority = priority.to(kdtype)
    state = torch.where(degree > 0, _UNDECIDED, 0).to(kdtype)  # isolated nodes: out
    for _ in range(_MIS_ROUNDS_FIRST):
        state = G.mis_round(state, priority)
    while bool((state == _UNDECIDED).any()):
        for _ in range(_MIS_ROUNDS_PER_TEST):
            state = G.mis_round(state, priority)
    roots = state == _ROOT
    # Root numbers by a prefix sum (no boolean-mask assignment: one host synchronization, the count)
    numbers = torch.cumsum(roots, 0, dtype=kdtype)
    count = int(numbers[-1]) if n else 0
    ids = torch.where(roots, numbers - 1, -1)
    # Distance 1: the (unique) adjacent root; distance 2: an aggregated neighbour's aggregate.
    hop1 = G.neighbour_max(ids)
    ids = torch.where(degree > 0, hop1, ids)
    hop2 = G.neighbour_max(ids)
    ids = torch.where((ids < 0) & (degree > 0), hop2, ids)
    return ids.to(torch.int64), count, roots


@dataclass
class Tentative:
    """The tentative prolongator ``T`` (``n x count*k``) and coarse near-nullspace ``B_c``."""

    T: SparseMatrix
    coarse_nullspace: torch.Tensor


def tentative_prolongator(ids: torch.Tensor, count: int, B: torch.Tensor, block_size: int = 1) -> Tentative:
    """``T`` with orthonormal columns per aggregate spanning ``B`` restricted to it: ``B = T B_c``.

    ``ids`` are node aggregates; unknown ``i`` belongs to node ``i // block_size``. Unknowns of
    unaggregated nodes get an empty row (the smoother alone handles them, as in pyamg). The QR of
    every aggregate's block of ``B`` is one Gram-Schmidt sweep over the ``k`` columns done for all
    aggregates at once with segment sums (classical Gram-Schmidt, twice, for orthogonality to
    rounding level), so there is no padding and no batched small-matrix QR.
    """
    n, k = B.shape
    dev, dtype = B.device, B.dtype
    agg = ids.repeat_interleave(block_size) if block_size > 1 else ids
    if k == 1:
        return _tentative_one_vector(agg, count, B[:, 0])
    live = torch.nonzero(agg >= 0).flatten()
    a = agg[live]
    V = B[live].clone()  # [live, k]

    def segment_sum(x: torch.Tensor) -> torch.Tensor:  # per-aggregate sums of the rows of x
        return torch.zeros((count,) + x.shape[1:], dtype=dtype, device=dev).index_add_(0, a, x)

    R = torch.zeros((count, k, k), dtype=dtype, device=dev)
    tiny = 1e3 * torch.finfo(dtype).eps
    for j in range(k):
        before = segment_sum(V[:, j] ** 2).sqrt()
        for _ in range(2 if j else 1):
            if j:
                h = segment_sum(V[:, :j] * V[:, j : j + 1])  # [count, j]: q_i . v_j per aggregate
                V[:, j] -= (V[:, :j] * h[a]).sum(1)
                R[:, :j, j] += h
        norm = segment_sum(V[:, j] ** 2).sqrt()
        # A column that is (numerically) dependent on the previous ones on this aggregate is zero
        # in T, not normalized rounding noise (the coarse unknown is then decoupled).
        dependent = norm <= tiny * before
        norm = torch.where(dependent, torch.zeros_like(norm), norm)
        R[:, j, j] = norm
        V[:, j] = V[:, j] / torch.where(norm > 0, norm, 1.0)[a] * (~dependent)[a].to(dtype)
    counts = torch.zeros(n, dtype=torch.int64, device=dev)
    counts[live] = k
    crow = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    crow[1:] = torch.cumsum(counts, 0)
    cols = (a[:, None] * k + torch.arange(k, device=dev)[None, :]).reshape(-1)
    idx = index_dtype_for(n + 1, count * k, cols.numel())
    T = SparseMatrix.from_csr(crow.to(idx), cols.to(idx), V.reshape(-1), (n, count * k), check=False)
    return Tentative(T, R.reshape(count * k, k))


# Scalar products of the first multiplication per chunk of sparse_product (cuSPARSE's work space
# grows with them).
_CHUNK_PRODUCTS = 2**21
# Above this many scalar products a sparse product is GPU-bound and keeps the default algorithm.
_ALG2_MAX_PRODUCTS = 2**27


def _tentative_one_vector(agg: torch.Tensor, count: int, b: torch.Tensor) -> Tentative:
    """:func:`tentative_prolongator` of one near-nullspace vector: ``T``'s entry in row ``i`` is
    ``b_i / |b on i's aggregate|`` (zero where that norm is, as the general sweep's dependent
    column), ``B_c`` the norms; a dozen kernels instead of the sweep's ~35 (launch-bound on a GPU)."""
    n, dev = agg.numel(), agg.device
    live = torch.nonzero(agg >= 0).flatten()
    a = agg[live]
    v = b[live]
    norm = torch.zeros(count, dtype=b.dtype, device=dev).index_add_(0, a, v * v).sqrt_()
    scale = norm[a]
    v = torch.where(scale > 0, v / torch.where(scale > 0, scale, 1.0), 0.0)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    torch.cumsum(agg >= 0, 0, out=crow[1:])
    idx = index_dtype_for(n + 1, count, live.numel())
    T = SparseMatrix.from_csr(crow.to(idx), a.to(idx), v, (n, count), check=False)
    return Tentative(T, norm[:, None])


@dataclass
class MemoryBudget:
    """Device memory that the chunks of the ALG2 products of one set-up may take: up to ``ceiling``
    bytes allocated (torch's caching allocator, the device's total), at ``bytes_per_product`` per
    scalar product of a chunk's first multiplication. That starts as a prior and becomes the
    largest measured so far, with a margin (:meth:`observe`: cuSPARSE's buffers, the intermediate
    product and the result, which differ from problem to problem: the intermediate of
    anisotropic operators is larger per product than Poisson's). The prior carries no margin: a
    first chunk may overshoot the room by its error (anisotropic 2D at 4M measured 25.7 bytes per
    product against the prior's 24). A chunk grows to at most ``max_products``: beyond that its
    fixed cost is small against its kernels, and a larger one only maps fresh device memory (H200,
    chunks of all the room: 2D Poisson 16M set-up +10 ms)."""

    ceiling: int
    bytes_per_product: float = 24.0
    measured: bool = False
    max_products: int = 2**24

    def products(self, device: torch.device, floor: int) -> int:
        """Scalar products to aim the next chunk at: what the room left holds (at most
        ``max_products``), at least ``floor``."""
        room = self.ceiling - torch.cuda.memory_allocated(device)
        return max(floor, min(self.max_products, int(room / self.bytes_per_product)))

    def observe(self, peak_bytes: int, products: int) -> None:
        """A chunk of ``products`` first-multiplication products held ``peak_bytes`` at most."""
        if products > 0:
            measured = 1.1 * peak_bytes / products
            self.bytes_per_product = max(self.bytes_per_product, measured) if self.measured else measured
            self.measured = True


def sparse_product(*factors: SparseMatrix, max_products: int | None = None, engine: str | None = None,
                   sort_each: bool = False, alg2_products: int | None = None,
                   memory: MemoryBudget | None = None) -> SparseMatrix:
    """``F_1 @ F_2 @ ... @ F_k`` (no gradient): sorted, duplicate-free rows, int32 indices where they fit.

    ``engine="scipy"`` (the default on the CPU) multiplies on the host; ``"torch"`` (the default on
    CUDA: cuSPARSE SpGEMM) takes the rows of ``F_1`` in chunks of at most ``max_products`` scalar
    products of the first multiplication (default ``max(2^21, m)``, ``m`` rows) and carries each chunk
    through all the factors. cuSPARSE's work space grows with the products, and a Galerkin product
    ``P^T A P`` computed chunk by chunk never holds the full intermediate ``A P`` or ``P^T A``.
    cuSPARSE's products come with sorted rows; that is checked once for all of them at the end
    (a host synchronization per product cost ~0.1 ms each), and should a product be unsorted, all
    is recomputed with each product sorted (``sort_each``).

    Given ``alg2_products``, where every factor qualifies for cuSPARSE's ALG2
    (:mod:`slactl.engine.ops.cusparse_spgemm`: 32-bit indices on CUDA) and the product has at
    most ``_ALG2_MAX_PRODUCTS`` scalar products, ALG2 multiplies, with about a third of the default
    algorithm's work space per product, and the default chunk is ``alg2_products`` products if
    that is larger (the sa-amg set-up passes 4 per unknown of the problem: fewer chunks, each
    ~0.35 ms of fixed cost). Given ``memory`` as well (and no ``max_products``), the chunks grow to
    what its room holds, chunk by chunk, from the memory each chunk was measured to take.
    """
    A = factors[0]
    m, n = A.shape[0], factors[-1].shape[1]
    engine = engine or ("scipy" if A.device.type == "cpu" else "torch")
    if engine == "scipy":
        C = A.to_scipy()
        for F in factors[1:]:
            C = C @ F.to_scipy()
        C = C.tocsr()
        C.sum_duplicates()
        C.sort_indices()
        idx = index_dtype_for(m + 1, n, C.nnz)
        return SparseMatrix.from_csr(torch.from_numpy(C.indptr).to(idx), torch.from_numpy(C.indices).to(idx),
                                     torch.from_numpy(C.data).to(A.dtype), (m, n), check=False)
    B = factors[1]
    per_row_end, total = _products_per_row(A, B)
    budget = max(_CHUNK_PRODUCTS, m)
    # ALG2 where its smaller work space saves chunks, i.e. host time; beyond _ALG2_MAX_PRODUCTS the
    # products are GPU-bound, and ALG2's ~1.7x GPU time loses (169M unknowns: set-up 1.23 -> 1.78 s)
    alg2 = bool(alg2_products) and total <= _ALG2_MAX_PRODUCTS and cusparse_spgemm.available_for(*factors)
    if alg2:
        budget = max(budget, alg2_products)
    adaptive = alg2 and memory is not None and max_products is None
    if adaptive:
        chunks = _adaptive_chunks(A, per_row_end, total, max(budget, -(-total // 16)), memory)
    else:
        cuts = _row_cuts(A, per_row_end, total, max_products or budget, max_chunks=16 if max_products is None else 2**62)
        entry_cuts = A.pattern.crow[cuts].tolist()  # the chunks' entry ranges, in one synchronization
        chunks = ((r0, r1, (entry_cuts[k], entry_cuts[k + 1]), None) for k, (r0, r1) in enumerate(zip(cuts[:-1], cuts[1:])))
        del per_row_end
    right = [F.pattern.torch_csr(F.values.detach()) for F in factors[1:]]
    crows, cols, vals, offset = [torch.zeros(1, dtype=torch.int64, device=A.device)], [], [], 0
    # Column indices are kept in int32 as soon as the column count allows (the pieces, their
    # concatenation and no final cast: at the first level's S @ T this was a third of the set-up's
    # peak memory); a single piece is not copied.
    col_dtype = torch.int32 if n < 2**31 else torch.int64
    # (the CPU's products are not sorted: each is sorted there)
    unsorted: list[torch.Tensor] | None = None if sort_each or A.device.type != "cuda" else []
    for r0, r1, bounds, peaks in chunks:
        if r1 <= r0:
            continue
        for crow, col, val in _product_rows_or_fallback(A, right, r0, r1, bounds, unsorted, alg2=alg2, peaks=peaks):
            crows.append(crow[1:].to(torch.int64) + offset)
            cols.append(col.to(col_dtype))
            vals.append(val)
            offset += col.numel()
            del crow, col, val
    if unsorted and bool(torch.stack(unsorted).any()):
        del crows, cols, vals
        return sparse_product(*factors, max_products=max_products, engine=engine, sort_each=True,
                              alg2_products=alg2_products, memory=memory)
    crow = torch.cat(crows)
    if not cols:  # no rows
        empty = torch.zeros(0, dtype=torch.int64, device=A.device)
        return SparseMatrix.from_csr(torch.zeros(m + 1, dtype=torch.int64, device=A.device), empty,
                                     torch.zeros(0, dtype=A.dtype, device=A.device), (m, n), check=False)
    idx = index_dtype_for(m + 1, n, offset)
    col = cols[0] if len(cols) == 1 else torch.cat(cols)
    del cols
    val = vals[0] if len(vals) == 1 else torch.cat(vals)
    del vals
    return SparseMatrix.from_csr(crow.to(idx), col.to(idx), val, (m, n), check=False)


def galerkin_product(R: SparseMatrix, A: SparseMatrix, P: SparseMatrix, *, dense_entries: int = 0,
                     symmetric: bool = False, alg2_products: int | None = None,
                     memory: MemoryBudget | None = None) -> SparseMatrix:
    """The Galerkin product ``R A P`` (no gradient).

    By :func:`sparse_product`, unless ``P`` as a dense ``n x n_c`` array holds at most
    ``dense_entries`` entries (or less than half the scalar products of ``R @ A``; 0 turns the
    dense path off): then as two sparse x dense products (cuSPARSE SpMM on CUDA),
    ``A @ P_dense`` and ``R @ (A P)``, and the nonzeros of the dense result. That is the fast way
    where the coarse space is small and the operators have filled in (the coarse levels of
    smoothed aggregation on 3D problems: there a sparse product of a 20,612-row level took 325 ms
    on an H200, its dense counterpart a few milliseconds). ``symmetric`` averages the dense result
    with its transpose, so a symmetric ``A`` gives a coarse matrix symmetric to the last bit (and a
    structurally symmetric pattern, which the strength graph relies on). ``alg2_products`` and
    ``memory``: as :func:`sparse_product`'s.
    """
    n, nc = P.shape
    dense = max(n, nc) * nc  # entries of the largest dense temporary
    # Dense also where it holds less than the sparse product's scalar products of R @ A (about
    # what cuSPARSE's work space grows with): levels that have filled in.
    products = R.nnz * (A.nnz / max(n, 1))
    if dense_entries <= 0 or (dense > dense_entries and 2 * dense > products):
        return sparse_product(R, A, P, alg2_products=alg2_products, memory=memory)
    with torch.no_grad():
        AP = torch.sparse.mm(A.pattern.torch_csr(A.values.detach()), P.detach().to_dense())
        Ac = torch.sparse.mm(R.pattern.torch_csr(R.values.detach()), AP)
        del AP
        if symmetric:
            Ac = (Ac + Ac.mT) * 0.5
        return _from_dense_rows(Ac)


def _from_dense_rows(D: torch.Tensor) -> SparseMatrix:
    """The nonzeros of a dense matrix as CSR (``nonzero`` lists them row by row, columns ascending)."""
    m, n = D.shape
    mask = D != 0
    row, col = torch.nonzero(mask, as_tuple=True)
    crow = torch.zeros(m + 1, dtype=torch.int64, device=D.device)
    torch.cumsum(mask.sum(1), 0, out=crow[1:])
    idx = index_dtype_for(m + 1, n, row.numel())
    return SparseMatrix.from_csr(crow.to(idx), col.to(idx), D[row, col], (m, n), check=False)


def _products_per_row(A: SparseMatrix, B: SparseMatrix) -> tuple[torch.Tensor, int]:
    """The scalar products of ``A @ B`` up to the end of each row of ``A`` (int64), and their
    total. One int64 prefix sum over the entries of ``A``, one host synchronization."""
    lengths = B.pattern.crow[1:] - B.pattern.crow[:-1]
    prefix = torch.cumsum(lengths[A.col], 0, dtype=torch.int64)  # products up to each entry of A
    ends = A.pattern.crow[1:].to(torch.int64)
    per_row_end = torch.where(ends > 0, prefix[(ends - 1).clamp_min(0)], 0) if prefix.numel() else ends
    return per_row_end, int(per_row_end[-1]) if A.shape[0] else 0


def _row_cuts(A: SparseMatrix, per_row_end: torch.Tensor, total: int, budget: int, max_chunks: int = 16) -> list[int]:
    """Row cuts of ``A`` with about ``budget`` products per chunk (:func:`_products_per_row`), but
    at most ``max_chunks`` chunks (each costs ~0.35 ms of cuSPARSE set-up and host waits)."""
    m = A.shape[0]
    budget = max(budget, -(-total // max_chunks))
    chunks = max(1, -(-total // budget))
    if chunks == 1:
        return [0, m]
    inner = torch.searchsorted(per_row_end, torch.arange(1, chunks, device=A.device, dtype=torch.int64) * budget)
    return [0] + inner.tolist() + [m]


def _adaptive_chunks(A: SparseMatrix, per_row_end: torch.Tensor, total: int, floor: int, memory: MemoryBudget):
    """Row chunks ``(r0, r1, entry bounds, peaks)`` of ``A`` for :func:`sparse_product`: the whole
    rows up to as many products as ``memory`` has room for (:meth:`MemoryBudget.products`, at
    least ``floor``; at least one row), decided when the previous chunk is done. The caller fills
    ``peaks`` (:func:`_product_rows`) and its largest entry tells ``memory`` what a product took;
    chunks of fewer than ``floor / 4`` products (a remainder, whose fixed overhead would inflate
    the figure for the rest of the set-up) are not counted once a figure was measured. One host
    synchronization per chunk."""
    m, device = A.shape[0], A.device
    r0, e0, done = 0, 0, 0
    while r0 < m:
        chunk = memory.products(device, floor)
        if done + chunk >= total:
            r1, e1, reached = m, A.col.numel(), total
        else:
            target = torch.tensor([done + chunk], dtype=torch.int64, device=device)
            cut = torch.searchsorted(per_row_end, target, right=True).clamp(min=r0 + 1, max=m)
            r1, e1, reached = torch.cat([cut, A.pattern.crow[cut].to(torch.int64), per_row_end[cut - 1]]).tolist()
        peaks: list[int] = []
        yield r0, r1, (e0, e1), peaks
        if peaks and (not memory.measured or reached - done >= floor // 4):
            memory.observe(max(peaks), reached - done)
        r0, e0, done = r1, e1, reached


def _product_rows(A: SparseMatrix, right: list[torch.Tensor], r0: int, r1: int,
                  bounds: tuple[int, int] | None = None, unsorted: list[torch.Tensor] | None = None,
                  alg2: bool = False, peaks: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``r0:r1`` of ``A @ right[0] @ right[1] ...`` by cuSPARSE (:func:`_multiply`): CSR arrays, rows
    sorted, or, given ``unsorted``, as cuSPARSE left them, with a device flag per product appended
    to ``unsorted`` (true where a row is not sorted). ``bounds``: the entry range of those rows in
    ``A``, when the caller has it (saves two host synchronizations per chunk). ``alg2``: by
    cuSPARSE's ALG2 where it applies. ``peaks``: each multiplication by ALG2 appends the most
    device memory it held at once, the intermediate it multiplies included."""
    crow = A.pattern.crow[r0 : r1 + 1]
    lo, hi = (int(crow[0]), int(crow[-1])) if bounds is None else bounds
    c = torch.sparse_csr_tensor(crow - lo, A.col[lo:hi], A.values.detach()[lo:hi], size=(r1 - r0, A.shape[1]))
    for k, b in enumerate(right):
        stats = None if peaks is None else {}
        held = 0 if stats is None or k == 0 else sum(t.numel() * t.element_size() for t in _csr_arrays(c))
        c = _multiply(c, b, alg2, stats)
        if stats:  # (filled by ALG2 only)
            peaks.append(held + stats["peak_bytes"])
        if unsorted is None:
            c = _sorted(*c, b.shape[1])
        else:
            unsorted.append(_unsorted(c[0], c[1]))
        c = torch.sparse_csr_tensor(*c, size=(r1 - r0, b.shape[1]))
    return _csr_arrays(c)


def _multiply(a: torch.Tensor, b: torch.Tensor, alg2: bool = False,
              stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a @ b`` of two CSR tensors as CSR arrays: with ``alg2``, cuSPARSE's ALG2 where it applies
    (:mod:`slactl.engine.ops.cusparse_spgemm`: a third of the default algorithm's work space; it
    fills ``stats``), else ``torch.sparse.mm`` (the default algorithm)."""
    if alg2 and cusparse_spgemm.available(a, b):
        return cusparse_spgemm.spgemm(a, b, stats)
    return _csr_arrays(torch.sparse.mm(a, b))


# Rows of one fallback product: the expanded products of the first multiplication it may hold.
_EXPAND_PRODUCTS = 2**22


def _product_rows_or_fallback(A: SparseMatrix, right: list[torch.Tensor], r0: int, r1: int,
                              bounds: tuple[int, int] | None = None, unsorted: list[torch.Tensor] | None = None,
                              alg2: bool = False, peaks: list[int] | None = None) -> list[tuple[torch.Tensor, ...]]:
    """:func:`_product_rows`, and where cuSPARSE's SpGEMM fails with "insufficient resources"
    (a known failure of its default algorithm on some large inputs, which torch gives no way to
    swap: CUDALibrarySamples#38, cupy#10033; seen on H200 on the ranks of a distributed Galerkin
    product whose rows reach columns tens of millions apart) the rows are halved until the
    failing part holds at most ``_EXPAND_PRODUCTS`` products, which :func:`_expand_sort_compress`
    multiplies without cuSPARSE. Pieces in row order."""
    try:
        return [_product_rows(A, right, r0, r1, bounds, unsorted, alg2=alg2, peaks=peaks)]
    except RuntimeError as exc:
        if "insufficient resources" not in str(exc):
            raise
    if peaks is not None:  # a failed chunk's figures are partial; its halves' are not its own
        peaks.clear()
    lo, hi = int(A.pattern.crow[r0]), int(A.pattern.crow[r1])
    first = right[0].crow_indices()
    products = int((first[1:] - first[:-1])[A.col[lo:hi].to(torch.int64)].sum()) if hi > lo else 0
    if r1 - r0 <= 1 or products <= _EXPAND_PRODUCTS:
        return [_expand_sort_compress(A, right, r0, r1)]
    mid = (r0 + r1) // 2
    return (_product_rows_or_fallback(A, right, r0, mid, None, unsorted, alg2)
            + _product_rows_or_fallback(A, right, mid, r1, None, unsorted, alg2))


def _expand_sort_compress(A: SparseMatrix, right: list[torch.Tensor], r0: int, r1: int) -> tuple[torch.Tensor, ...]:
    """Rows ``r0:r1`` of ``A @ right[0] @ ...`` by expansion, sort and compression (every scalar
    product listed, then summed per (row, column) key): no cuSPARSE, memory linear in the products."""
    device = A.device
    crow = A.pattern.crow[r0 : r1 + 1].to(torch.int64)
    lo, hi = int(crow[0]), int(crow[-1])
    m = r1 - r0
    rows = torch.repeat_interleave(torch.arange(m, device=device), crow[1:] - crow[:-1])
    cols, vals = A.col[lo:hi].to(torch.int64), A.values.detach()[lo:hi]
    for b in right:
        bcrow, bcol, bval = b.crow_indices().to(torch.int64), b.col_indices().to(torch.int64), b.values()
        start = bcrow[cols]
        lens = bcrow[cols + 1] - start
        src = torch.repeat_interleave(torch.arange(cols.numel(), device=device), lens)
        pos = start[src] + torch.arange(src.numel(), device=device) - (torch.cumsum(lens, 0) - lens)[src]
        ncols = b.shape[1]
        keys, inverse = torch.unique(rows[src] * ncols + bcol[pos], sorted=True, return_inverse=True)
        vals = torch.zeros(keys.numel(), dtype=vals.dtype, device=device).index_add_(0, inverse, vals[src] * bval[pos])
        rows, cols = keys // ncols, keys % ncols
    out = torch.zeros(m + 1, dtype=torch.int64, device=device)
    torch.cumsum(torch.bincount(rows, minlength=m), 0, out=out[1:])
    return out, cols, vals


def _csr_arrays(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return c.crow_indices(), c.col_indices(), c.values()


def _sorted(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, ncols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Columns ascending within every row (cuSPARSE's output already is: one check of one byte per
    entry; the CPU's is not, and is sorted by row-major keys)."""
    if col.numel() > 1 and bool(_unsorted(crow, col)):
        rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=col.device), (crow[1:] - crow[:-1]).to(torch.int64))
        order = torch.argsort(rows * ncols + col.to(torch.int64))
        col, val = col[order], val[order]
    return crow, col, val


def _unsorted(crow: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """A device flag: some row's columns are not strictly ascending (no host synchronization)."""
    if col.numel() <= 1:
        return torch.zeros((), dtype=torch.bool, device=col.device)
    # one flag past the end takes the starts of trailing empty rows (no boolean-mask indexing,
    # which synchronizes with the host)
    row_start = torch.zeros(col.numel() + 1, dtype=torch.bool, device=col.device)
    row_start[crow[1:-1].to(torch.int64)] = True
    return ~((col[1:] > col[:-1]) | row_start[1:-1]).all()
