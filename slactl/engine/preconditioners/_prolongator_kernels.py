"""Triton kernels of the smoothed prolongator ``P = (I - omega D^{-1} A) T`` for a tentative ``T``
with at most one entry per row (a scalar near-nullspace: Poisson, diffusion; see
:func:`slactl.engine.preconditioners._prolongator.smoothed_prolongator`); imported only when used.

Row ``i`` of ``P`` is row ``i`` of ``S = I - omega D^{-1} A`` with every column ``j`` replaced by
its aggregate ``agg(j)`` (weighted by ``T``'s entry ``t_j``) and the duplicates summed: a
compression of each row, done in registers. A block of rows per program holds every row as one
``[BS, W]`` tile (``W`` >= the longest row); the distinct aggregates and their ranks come from
``[BS, W, W]`` comparisons. Two passes: ``_count`` (entries per row of ``P``), then, after a prefix
sum, ``_write`` (columns ascending, values summed). cuSPARSE's SpGEMM of ``S @ T`` did the same
in ~0.5 ms of host work per call (a few calls per level, in chunks to bound its work space) and
needed ``S`` itself; here ``S`` is formed on the fly.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _row_keys(crow, col, tcrow, tcol, rows, rmask, W: tl.constexpr):
    """Each entry's aggregate (``-1``: padding, or a column without an aggregate), its column and
    position, and whether it is the first entry of its aggregate in the row."""
    start = tl.load(crow + rows, mask=rmask, other=0)
    length = tl.load(crow + rows + 1, mask=rmask, other=0) - start
    offs = tl.arange(0, W)
    m = offs[None, :] < length[:, None]
    idx = start[:, None] + offs[None, :]
    c = tl.load(col + idx, mask=m, other=0)
    t0 = tl.load(tcrow + c, mask=m, other=0)
    has = m & (tl.load(tcrow + c + 1, mask=m, other=0) > t0)
    key = tl.where(has, tl.load(tcol + t0, mask=has, other=0).to(tl.int64), -1)
    same = (key[:, :, None] == key[:, None, :]) & (key[:, None, :] >= 0)  # [row, e, f]
    earlier = offs[None, :, None] > offs[None, None, :]  # f before e
    first = (key >= 0) & (tl.sum((same & earlier).to(tl.int32), axis=2) == 0)
    return key, c, idx, m, t0, has, same, first


@triton.jit(do_not_specialize=["n"])
def _count(crow, col, tcrow, tcol, counts, n, BS: tl.constexpr, W: tl.constexpr):
    rows = tl.program_id(0) * BS + tl.arange(0, BS)
    rmask = rows < n
    key, c, idx, m, t0, has, same, first = _row_keys(crow, col, tcrow, tcol, rows, rmask, W)
    tl.store(counts + rows, tl.sum(first.to(tl.int64), axis=1), mask=rmask)


@triton.jit(do_not_specialize=["n"])
def _write(crow, col, val, dinv, coef, tcrow, tcol, tval, out_crow, out_col, out_val, n,
           BS: tl.constexpr, W: tl.constexpr):
    rows = tl.program_id(0) * BS + tl.arange(0, BS)
    rmask = rows < n
    key, c, idx, m, t0, has, same, first = _row_keys(crow, col, tcrow, tcol, rows, rmask, W)
    omega = tl.load(coef)  # (from memory in the values' dtype: a Python float would be fp32)
    a = tl.load(val + idx, mask=m, other=0.0)
    di = tl.load(dinv + rows, mask=rmask, other=0.0)
    s = tl.where(c == rows[:, None], 1.0, 0.0).to(a.dtype) - omega * di[:, None] * a  # S = I - omega D^-1 A
    v = tl.where(has, s * tl.load(tval + t0, mask=has, other=0.0), 0.0)
    total = tl.sum(tl.where(same, v[:, None, :], 0.0), axis=2)  # per entry: its aggregate's sum
    smaller = first[:, None, :] & (key[:, None, :] < key[:, :, None])
    rank = tl.sum(smaller.to(tl.int64), axis=2)  # distinct aggregates below the entry's
    dest = tl.load(out_crow + rows, mask=rmask, other=0)[:, None] + rank
    tl.store(out_col + dest, key.to(out_col.dtype.element_ty), mask=first)
    tl.store(out_val + dest, total, mask=first)
