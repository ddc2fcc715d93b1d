"""Triton kernel of the randomized symmetry tests (:mod:`._symmetry`); imported only when used.

``_symmetry_sums``: for a block of rows, ``(A x)_i`` and ``(A y)_i`` (each row's entries read as
``[rows, KP]`` tiles, as the SpMV of :mod:`._cycle_kernels`) and the pattern sums ``sum_j g_j``,
``sum_j h_j`` over the row's stored columns; the program's partial sums of ``y_i (A x)_i``,
``x_i (A y)_i``, ``(A x)_i^2``, ``(A y)_i^2``, ``h_i sum_j g_j``, ``g_i sum_j h_j``, ``x_i^2``,
``y_i^2`` in float64, to ``out[program, 0:8]``.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["n"])
def _symmetry_sums(crow, col, val, x, y, h, g, out, n, BS: tl.constexpr, KP: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BS + tl.arange(0, BS)
    rmask = rows < n
    start = tl.load(crow + rows, mask=rmask, other=0)
    length = tl.load(crow + rows + 1, mask=rmask, other=0) - start
    longest = tl.max(length, axis=0)
    ax = tl.zeros([BS], dtype=tl.float64)
    ay = tl.zeros([BS], dtype=tl.float64)
    gs = tl.zeros([BS], dtype=tl.float64)
    hs = tl.zeros([BS], dtype=tl.float64)
    for k in range(0, longest, KP):
        offs = k + tl.arange(0, KP)
        m = offs[None, :] < length[:, None]
        idx = start[:, None] + offs[None, :]
        c = tl.load(col + idx, mask=m, other=0)
        v = tl.load(val + idx, mask=m, other=0.0).to(tl.float64)
        ax += tl.sum(v * tl.load(x + c, mask=m, other=0.0).to(tl.float64), axis=1)
        ay += tl.sum(v * tl.load(y + c, mask=m, other=0.0).to(tl.float64), axis=1)
        gs += tl.sum(tl.load(g + c, mask=m, other=0.0), axis=1)
        hs += tl.sum(tl.load(h + c, mask=m, other=0.0), axis=1)
    xi = tl.load(x + rows, mask=rmask, other=0.0).to(tl.float64)
    yi = tl.load(y + rows, mask=rmask, other=0.0).to(tl.float64)
    hi = tl.load(h + rows, mask=rmask, other=0.0)
    gi = tl.load(g + rows, mask=rmask, other=0.0)
    base = out + pid * 8
    tl.store(base + 0, tl.sum(yi * ax, axis=0))
    tl.store(base + 1, tl.sum(xi * ay, axis=0))
    tl.store(base + 2, tl.sum(ax * ax, axis=0))
    tl.store(base + 3, tl.sum(ay * ay, axis=0))
    tl.store(base + 4, tl.sum(hi * gs, axis=0))
    tl.store(base + 5, tl.sum(gi * hs, axis=0))
    tl.store(base + 6, tl.sum(xi * xi, axis=0))
    tl.store(base + 7, tl.sum(yi * yi, axis=0))
