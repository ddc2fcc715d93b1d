"""Triton kernel of the MIS(2) aggregation (:func:`slactl.engine.preconditioners._aggregation.aggregate`);
imported only when used.

``_neighbour_max_kernel``: ``out[i] = max(values[i], max_{j in row i} values[col[j]])`` over a CSR
graph, a block of rows per program, each row's neighbours read as ``[rows, KP]`` tiles (as the
SpMV of :mod:`._cycle_kernels`). torch's version, ``scatter_reduce(amax)`` over the edge list, is
an atomic max per edge: on 3D Poisson at 16M unknowns (100M edges) an aggregation of ~10 rounds
took 100 ms on an H200. Here each row's maximum is formed in registers and stored once.

``_mis_key_max_kernel`` and ``_mis_update_kernel``: one selection round of the MIS(2) (the largest
key within distance 2, then the state update) in two kernels instead of torch's ~10.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _row_block_max(crow, col, a, b, n, acc, rows, rmask, KEYS: tl.constexpr, KP: tl.constexpr):
    """``max(acc[i], max_{j in row i} v[j])`` for a block of rows, ``v = a`` (or the MIS key
    ``a * n + b`` formed in the gather when ``KEYS``); each row's neighbours read as ``[rows, KP]``
    tiles up to the block's longest row."""
    start = tl.load(crow + rows, mask=rmask, other=0)
    end = tl.load(crow + rows + 1, mask=rmask, other=0)
    length = end - start
    longest = tl.max(length, axis=0)
    for k in range(0, longest, KP):
        offs = k + tl.arange(0, KP)
        m = offs[None, :] < length[:, None]
        c = tl.load(col + start[:, None] + offs[None, :], mask=m, other=0)
        if KEYS:
            v = tl.load(a + c, mask=m, other=0) * n + tl.load(b + c, mask=m, other=0)
        else:
            v = tl.load(a + c, mask=m, other=0)
        # masked lanes take the row's running maximum: never above it
        v = tl.where(m, v, acc[:, None])
        acc = tl.maximum(acc, tl.max(v, axis=1))
    return acc


# (n is not specialized: a variant per n % 16 would compile inside the first set-up of new sizes)
@triton.jit(do_not_specialize=["n"])
def _neighbour_max_kernel(crow, col, values, out, n, BS: tl.constexpr, KP: tl.constexpr):
    rows = tl.program_id(0) * BS + tl.arange(0, BS)
    rmask = rows < n
    acc = tl.load(values + rows, mask=rmask, other=0)
    acc = _row_block_max(crow, col, values, values, n, acc, rows, rmask, False, KP)
    tl.store(out + rows, acc, mask=rmask)


# One MIS(2) round of aggregate() in two kernels (states: 0 out, 1 undecided, 2 root; a node's
# key is state * n + priority). The torch round is ~10 kernels: at 1M unknowns on an H200 an
# aggregation of ~10 rounds per level was launch-bound (~2.5 ms per level).
@triton.jit(do_not_specialize=["n"])
def _mis_key_max_kernel(crow, col, state, priority, out, n, BS: tl.constexpr, KP: tl.constexpr):
    """``out[i]`` = the largest key among ``i`` and its neighbours (keys formed in the gather)."""
    rows = tl.program_id(0) * BS + tl.arange(0, BS)
    rmask = rows < n
    acc = tl.load(state + rows, mask=rmask, other=0) * n + tl.load(priority + rows, mask=rmask, other=0)
    acc = _row_block_max(crow, col, state, priority, n, acc, rows, rmask, True, KP)
    tl.store(out + rows, acc, mask=rmask)


@triton.jit(do_not_specialize=["n"])
def _mis_update_kernel(crow, col, best1, state, priority, n, BS: tl.constexpr, KP: tl.constexpr):
    """The largest key within distance 2 (``best1`` over the neighbours), then each undecided
    node's new state, in place: a root if its key is that largest, out if a root is within
    distance 2 (only row ``i`` reads or writes ``state[i]`` here)."""
    rows = tl.program_id(0) * BS + tl.arange(0, BS)
    rmask = rows < n
    acc = tl.load(best1 + rows, mask=rmask, other=0)
    acc = _row_block_max(crow, col, best1, best1, n, acc, rows, rmask, False, KP)
    s = tl.load(state + rows, mask=rmask, other=0)
    key = s * n + tl.load(priority + rows, mask=rmask, other=0)
    undecided = s == 1
    new = tl.where(undecided & (acc == key), 2, tl.where(undecided & (acc >= 2 * n), 0, s))
    tl.store(state + rows, new.to(s.dtype), mask=rmask)
