"""Triton kernel of the MIS(2) aggregation (:func:`slactl.engine.preconditioners._aggregation.aggregate`);
imported only when used.

``_neighbour_max_kernel``: ``out[i] = max(values[i], max_{j in row i} values[col[j]])`` over a CSR
graph, a block of rows per program, each row's neighbours read as ``[rows, KP]`` tiles (as the
SpMV of :mod:`._cycle_kernels`). torch's version, ``scatter_reduce(amax)`` over the edge list, is
an atomic max per edge: on 3D Poisson at 16M unknowns (100M edges) an aggregation of ~10 rounds
took 100 ms on an H200. Here each row's maximum is formed in registers and stored once.
"""

from __future__ import annotations

import triton
import triton.language as tl


# (n is not specialized: a variant per n % 16 would compile inside the first set-up of new sizes)
@triton.jit(do_not_specialize=["n"])
def _neighbour_max_kernel(crow, col, values, out, n, BS: tl.constexpr, KP: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BS + tl.arange(0, BS)
    rmask = rows < n
    start = tl.load(crow + rows, mask=rmask, other=0)
    end = tl.load(crow + rows + 1, mask=rmask, other=0)
    length = end - start
    longest = tl.max(length, axis=0)
    acc = tl.load(values + rows, mask=rmask, other=0)
    for k in range(0, longest, KP):
        offs = k + tl.arange(0, KP)
        m = offs[None, :] < length[:, None]
        c = tl.load(col + start[:, None] + offs[None, :], mask=m, other=0)
        # masked lanes read the row's own value: never above the running maximum
        v = tl.load(values + c, mask=m, other=0)
        v = tl.where(m, v, acc[:, None])
        acc = tl.maximum(acc, tl.max(v, axis=1))
    tl.store(out + rows, acc, mask=rmask)
