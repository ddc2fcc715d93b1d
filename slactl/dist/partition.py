"""Partition the rows of a sparse matrix among ranks, and measure how good the partition is.

Methods
-------
``metis``       METIS k-way (pymetis) on the graph of ``A + A^T`` without its diagonal: the
                smallest edge cut, hence the smallest halos, for general sparsity.
``rcb``         Recursive coordinate bisection: split the points along their longest extent at the
                (weighted) median, recursively; needs one coordinate row per unknown.
``contiguous``  Blocks of consecutive rows of (nearly) equal size: free, and good when the
                numbering is already local (banded matrices, lexicographic grids).

Every method returns ``part``: an int array of length ``n`` with the rank that owns each row (and
the matching column / vector entry). :func:`partition_quality` reports the edge cut, the load
imbalance and, per rank, the halo size, the neighbours and the communication volume of one halo
exchange. Pure NumPy/SciPy: no process group is needed to partition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from slactl.errors import PartitionError, UsageError

METHODS = ("metis", "rcb", "contiguous")


def symmetrized_graph(A: Any) -> sp.csr_array:
    """The adjacency of ``|A| + |A|^T`` with the diagonal removed (pattern only, int8 ones)."""
    csr = sp.csr_array(A)
    n = csr.shape[0]
    pat = sp.csr_array((np.ones(csr.nnz, dtype=np.int8), csr.indices, csr.indptr), shape=(n, n))
    g = sp.csr_array(pat + pat.T)
    g.setdiag(0)
    g.eliminate_zeros()
    g.sort_indices()
    return g


def _check(A: Any, parts: int) -> sp.csr_array:
    csr = sp.csr_array(A)
    m, n = csr.shape
    if m != n:
        raise PartitionError(f"only square matrices can be partitioned by rows and columns together, got {m}x{n}")
    if int(parts) < 1:
        raise PartitionError(f"parts must be at least 1, got {parts}")
    if int(parts) > n:
        raise PartitionError(f"cannot split {n} rows into {parts} non-empty parts; use --parts {max(n, 1)} or fewer")
    return csr


def contiguous(n: int, parts: int) -> np.ndarray:
    """Rank of each of ``n`` rows for ``parts`` consecutive blocks whose sizes differ by at most one."""
    sizes = np.full(parts, n // parts, dtype=np.int64)
    sizes[: n % parts] += 1
    return np.repeat(np.arange(parts, dtype=np.int32), sizes)


def metis(A: Any, parts: int, *, seed: int = 0) -> np.ndarray:
    """METIS k-way partition of the symmetrized pattern of ``A`` (diagonal removed)."""
    csr = _check(A, parts)
    if parts == 1:
        return np.zeros(csr.shape[0], dtype=np.int32)
    try:
        import pymetis
    except ImportError:  # pragma: no cover - pymetis is a dependency
        from slactl.errors import BackendUnavailableError

        raise BackendUnavailableError("METIS partitioning needs pymetis: pip install pymetis, or use --method rcb/contiguous") from None
    g = symmetrized_graph(csr)
    opts = pymetis.Options(seed=int(seed))
    adjacency = pymetis.CSRAdjacency(g.indptr.astype(np.int64), g.indices.astype(np.int64))
    _, membership = pymetis.part_graph(int(parts), adjacency, options=opts)
    part = np.asarray(membership, dtype=np.int32)
    if np.bincount(part, minlength=parts).min() == 0:
        # METIS may leave a part empty on tiny or disconnected graphs; every rank must own rows.
        raise PartitionError(f"METIS left a part empty for {parts} parts of {csr.shape[0]} rows; use fewer parts or --method contiguous")
    return part


def rcb(coordinates: np.ndarray, parts: int) -> np.ndarray:
    """Recursive coordinate bisection of ``coordinates`` ``[n, d]`` into ``parts`` parts.

    A set meant for ``k`` parts is split along its longest extent so that the first piece gets
    ``floor(k / 2) / k`` of the points (ties broken by index: deterministic), recursively.
    """
    xyz = np.asarray(coordinates, dtype=np.float64)
    if xyz.ndim == 1:
        xyz = xyz[:, None]
    n = xyz.shape[0]
    if parts < 1 or parts > n:
        raise PartitionError(f"cannot split {n} points into {parts} non-empty parts")
    part = np.empty(n, dtype=np.int32)
    stack = [(np.arange(n), 0, parts)]
    while stack:
        idx, first, k = stack.pop()
        if k == 1:
            part[idx] = first
            continue
        pts = xyz[idx]
        axis = int(np.argmax(pts.max(0) - pts.min(0))) if len(idx) else 0
        order = idx[np.argsort(pts[:, axis], kind="stable")]
        k1 = k // 2
        cut = int(round(len(idx) * k1 / k))
        stack.append((order[:cut], first, k1))
        stack.append((order[cut:], first + k1, k - k1))
    return part


def partition(A: Any, parts: int, method: str = "metis", *, coordinates: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The owner rank of every row of ``A``.

    Parameters
    ----------
    A : scipy.sparse matrix
        Square; only its pattern matters.
    parts : int
        Number of ranks.
    method : {"metis", "rcb", "contiguous"}
    coordinates : ndarray ``[n, d]``, optional
        Point of each unknown; ``rcb`` needs them.
    seed : int
        METIS's random seed (the partition is deterministic for a given seed).

    Returns
    -------
    ndarray of int32, shape ``[n]``

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> partition(sp.eye(6, format="csr"), 3, "contiguous").tolist()
    [0, 0, 1, 1, 2, 2]
    """
    csr = _check(A, parts)
    n = csr.shape[0]
    if method == "contiguous":
        return contiguous(n, int(parts))
    if method == "metis":
        return metis(csr, int(parts), seed=seed)
    if method == "rcb":
        if coordinates is None:
            raise UsageError("--method rcb needs coordinates (one row per unknown): pass --coords PATH, or use metis/contiguous")
        coordinates = np.asarray(coordinates)
        if coordinates.shape[0] != n:
            raise PartitionError(f"coordinates have {coordinates.shape[0]} rows but the matrix has {n} unknowns")
        return rcb(coordinates, int(parts))
    raise UsageError(f"unknown partition method {method!r}; choose one of {', '.join(METHODS)}")


@dataclass
class PartitionQuality:
    """How good a partition is. Per-rank lists are indexed by rank.

    ``edge_cut`` counts undirected edges of ``A + A^T`` (diagonal removed) between ranks;
    ``imbalance`` is ``max(rows) / mean(rows)`` (1.0 is perfect); ``halo`` is the number of ghost
    entries a rank receives per exchange, ``send`` the number it sends; ``neighbours`` the number of
    ranks it exchanges with. ``volume`` is the total number of values moved per exchange.
    """

    parts: int
    method: str
    edge_cut: int
    imbalance: float
    nnz_imbalance: float
    volume: int
    rows: list[int] = field(default_factory=list)
    rank_nnz: list[int] = field(default_factory=list)
    halo: list[int] = field(default_factory=list)
    send: list[int] = field(default_factory=list)
    neighbours: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def partition_quality(A: Any, part: np.ndarray, method: str = "?") -> PartitionQuality:
    """Measure ``part`` (see :class:`PartitionQuality`) without building any rank's block."""
    csr = sp.csr_array(A)
    part = np.asarray(part, dtype=np.int64)
    parts = int(part.max()) + 1 if part.size else 0
    n = csr.shape[0]
    row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(csr.indptr))
    owner_r, owner_c = part[row_of], part[csr.indices]
    cross = owner_r != owner_c
    # A ghost is a (receiving rank, global column) pair, counted once however many rows use it.
    ghosts = np.unique(owner_r[cross] * n + csr.indices[cross].astype(np.int64))
    recv_rank = ghosts // n
    send_rank = part[ghosts % n]
    pairs = np.unique(recv_rank * max(parts, 1) + send_rank)
    nbr = np.zeros(parts, dtype=np.int64)
    np.add.at(nbr, pairs // max(parts, 1), 1)
    g = symmetrized_graph(csr)
    gr = np.repeat(np.arange(n, dtype=np.int64), np.diff(g.indptr))
    cut = int(np.count_nonzero(part[gr] != part[g.indices])) // 2
    rows = np.bincount(part, minlength=parts)
    nnz = np.bincount(owner_r, minlength=parts)
    return PartitionQuality(
        parts=parts, method=method, edge_cut=cut,
        imbalance=float(rows.max() / rows.mean()) if parts else 1.0,
        nnz_imbalance=float(nnz.max() / max(nnz.mean(), 1e-300)) if parts else 1.0,
        volume=int(ghosts.size),
        rows=rows.tolist(), rank_nnz=nnz.tolist(),
        halo=np.bincount(recv_rank, minlength=parts).tolist(),
        send=np.bincount(send_rank, minlength=parts).tolist(),
        neighbours=nbr.tolist(),
    )
