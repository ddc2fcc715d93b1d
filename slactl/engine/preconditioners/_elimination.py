"""Level-scheduled incomplete factorizations (ILU(0), IC(0)) in vectorized NumPy.

Both factorizations eliminate row by row: row ``i`` needs the finished rows ``k`` of its strictly
lower part, and within row ``i`` its lower entries are processed left to right. Rows are grouped into
levels of the dependency DAG (``level(i) = 1 + max level(k)``, computed by Kahn's frontier
algorithm); within a level the rows are independent, so one NumPy operation handles the ``t``-th
lower entry of every row of the level at once. The arithmetic, and its order for each entry, are
exactly those of the sequential row algorithm, so the factors equal it (up to the summation order
of one row, which is unchanged: updates to an entry arrive in increasing ``t``).

For the 5-point 2D Poisson matrix of side ``N`` there are ``2N - 1`` levels of ``<= 2`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slactl.errors import StructureError


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` over the pairs (vectorized)."""
    counts = counts.astype(np.int64, copy=False)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    exclusive = np.cumsum(counts) - counts
    return np.repeat(starts.astype(np.int64) - exclusive, counts) + np.arange(total, dtype=np.int64)


def levels(n: int, dep_ptr: np.ndarray, dep_idx: np.ndarray) -> np.ndarray:
    """Level of each row of a DAG where row ``i`` depends on ``dep_idx[dep_ptr[i]:dep_ptr[i+1]]``."""
    indeg = np.diff(dep_ptr).astype(np.int64)
    # Reverse adjacency: which rows depend on row k.
    dependents = np.repeat(np.arange(n, dtype=np.int64), indeg)[np.argsort(dep_idx, kind="stable")]
    rev_ptr = np.zeros(n + 1, dtype=np.int64)
    rev_ptr[1:] = np.cumsum(np.bincount(dep_idx, minlength=n))
    level = np.full(n, -1, dtype=np.int64)
    frontier = np.flatnonzero(indeg == 0)
    depth = 0
    while frontier.size:
        level[frontier] = depth
        succ = dependents[ranges(rev_ptr[frontier], rev_ptr[frontier + 1] - rev_ptr[frontier])]
        rows, hits = np.unique(succ, return_counts=True)
        indeg[rows] -= hits
        frontier = rows[indeg[rows] == 0]
        depth += 1
    if (level < 0).any():  # cannot happen for dependencies on lower rows only
        raise StructureError("the dependency graph of the factorization has a cycle")
    return level


@dataclass
class Schedule:
    """The order of an elimination: group ``g`` divides ``a[div[ds[g]:ds[g+1]]]`` by
    ``a[pivot[...]]`` and then applies ``a[tgt] -= a[src1] * conj?(a[src2])`` over
    ``ts[g]:ts[g+1]``; ``level_end[l]`` is the first group after level ``l``, whose rows are
    ``rows[rs[l]:rs[l+1]]``."""

    div: np.ndarray
    pivot: np.ndarray
    ds: np.ndarray
    tgt: np.ndarray
    src1: np.ndarray
    src2: np.ndarray
    ts: np.ndarray
    level_end: np.ndarray
    rows: np.ndarray
    rs: np.ndarray

    @property
    def n_levels(self) -> int:
        return len(self.level_end)


def schedule(
    indptr: np.ndarray,
    row: np.ndarray,
    lower: np.ndarray,
    pivot: np.ndarray,
    tgt: np.ndarray,
    src1: np.ndarray,
    src2: np.ndarray,
    lower_dep: np.ndarray,
) -> Schedule:
    """Group the strictly lower positions ``lower`` (dividing by ``pivot``) and the update triples
    (``src1`` being the lower position that triggers each) by (level of the row, rank in the row).

    ``lower_dep`` is, for each entry of ``lower``, the row it depends on (its column)."""
    n = len(indptr) - 1
    lrow = row[lower]
    lptr = np.zeros(n + 1, dtype=np.int64)
    lptr[1:] = np.cumsum(np.bincount(lrow, minlength=n))
    level = levels(n, lptr, lower_dep)
    n_levels = int(level.max()) + 1 if n else 0
    rank = lower - indptr[lrow]  # lower entries come first in a sorted row
    max_rank = int(rank.max()) + 1 if rank.size else 1
    gkey = level[lrow] * max_rank + rank
    order = np.argsort(gkey, kind="stable")
    gkey_sorted = gkey[order]
    group_keys, ds = np.unique(gkey_sorted, return_index=True)
    ds = np.append(ds, len(gkey_sorted)).astype(np.int64)
    # Triples follow the group of the lower entry that triggers them.
    group_of_pos = np.full(len(row), -1, dtype=np.int64)
    group_of_pos[lower[order]] = np.searchsorted(group_keys, gkey_sorted)
    tgroup = group_of_pos[src1]
    torder = np.argsort(tgroup, kind="stable")
    ts = np.searchsorted(tgroup[torder], np.arange(len(group_keys) + 1))
    level_of_group = group_keys // max_rank
    level_end = np.searchsorted(level_of_group, np.arange(n_levels), side="right")
    rows_by_level = np.argsort(level, kind="stable")
    rs = np.searchsorted(level[rows_by_level], np.arange(n_levels + 1))
    return Schedule(
        div=lower[order], pivot=pivot[order], ds=ds,
        tgt=tgt[torder], src1=src1[torder], src2=src2[torder], ts=ts,
        level_end=level_end, rows=rows_by_level, rs=rs,
    )


def eliminate(a: np.ndarray, s: Schedule, *, conj: bool, finish_level=None) -> None:
    """Run the scheduled elimination in place on the values ``a``.

    ``finish_level(a, rows)`` is called after each level (IC(0) takes square roots there)."""
    start = 0
    for lev in range(s.n_levels):
        end = int(s.level_end[lev])
        for g in range(start, end):
            lo, hi = s.ds[g], s.ds[g + 1]
            # l_ik = a_ik / pivot: the multiplier of row k in row i
            a[s.div[lo:hi]] /= a[s.pivot[lo:hi]]
            lo, hi = s.ts[g], s.ts[g + 1]
            if hi > lo:
                # a_ij -= l_ik * u_kj (ILU) or a_ik -= l_ij * conj(l_kj) (IC)
                other = a[s.src2[lo:hi]]
                a[s.tgt[lo:hi]] -= a[s.src1[lo:hi]] * (np.conj(other) if conj else other)
        start = end
        if finish_level is not None:
            finish_level(a, s.rows[s.rs[lev] : s.rs[lev + 1]])


def csr_keys(indptr: np.ndarray, indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row of each entry and its sorted key ``row * n + col`` (for lookups by searchsorted)."""
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    return row, row * n + indices.astype(np.int64)


def lookup(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``wanted`` keys in the sorted ``keys`` and a mask of those that exist."""
    pos = np.searchsorted(keys, wanted)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[pos] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
    return pos, found


def diagonal_positions(keys: np.ndarray, n: int, who: str) -> np.ndarray:
    """Position of every diagonal entry; StructureError naming the first row without one."""
    pos, found = lookup(keys, np.arange(n, dtype=np.int64) * (n + 1))
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise StructureError(
            f"{who} needs every diagonal entry stored, but row {i} has none; store it explicitly "
            "(with a shift if it is zero), or use amg or no preconditioner"
        )
    return pos
