"""The check for pairs a symmetric file lists from both triangles, against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from slactl.io.csr_build import MemorySink, pair_in_both_triangles
from slactl.io.mtx_body import CooBlock


def _reference(rows, cols):
    """Walk the entries in file order: the first entry whose mirror was listed earlier on the other
    side is the later listing of the pair named (its earlier listing: that side's first)."""
    first = {}
    for k, (i, j) in enumerate(zip(rows.tolist(), cols.tolist())):
        if i == j:
            continue
        pair, side = (max(i, j), min(i, j)), i < j
        first.setdefault((pair, side), k)
        other = first.get((pair, not side))
        if other is not None:
            return other, k, i, j
    return None


@pytest.mark.parametrize("seed", range(40))
def test_the_pair_named_is_the_first_contradiction(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 12)), int(rng.integers(1, 60))
    rows, cols = rng.integers(0, n, m), rng.integers(0, n, m)
    if seed % 3 == 0:  # one side only, duplicates and the diagonal: never a contradiction
        rows, cols = np.maximum(rows, cols), np.minimum(rows, cols)
    sink = MemorySink(n, n, "symmetric")
    step = int(rng.integers(1, 8))
    for s in range(0, m, step):  # several blocks: ordinals run on across them
        sink.add(CooBlock(rows[s : s + step], cols[s : s + step], None))
    assert pair_in_both_triangles(sink) == _reference(rows, cols)
