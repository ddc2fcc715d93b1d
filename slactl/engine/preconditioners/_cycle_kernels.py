"""Triton kernels of the fused AMG V-cycle (:mod:`slactl.engine.preconditioners.fused_cycle`);
imported only when used.

One kernel, ``_level_kernel``: a CSR SpMV ``t = A x`` (a block of rows per program, each row's
entries read as ``[rows, KP]`` tiles across adjacent lanes, a loop over tiles up to the block's
longest row) followed by the elementwise work that the cycle does with ``t``, selected by
``MODE``. The unfused cycle runs each SpMV through cuSPARSE (three kernels: a partition pass, a
memset, the SpMV) and each vector update as its own torch kernel; at 1M unknowns that is ~27
SpMVs and ~90 small kernels per V-cycle, launch-bound. Fused, a Chebyshev(2) level is 6 kernels.

Modes (``i`` a row of the block; ``dinv`` the inverse diagonal; ``in*`` row-aligned inputs;
``c0, c1, c2`` = ``coef[0:3]``):

* ``SPMV``: ``out0 = t`` (restriction ``R r``);
* ``RESID``: ``out0 = in0 - t`` (``r = b - A x``);
* ``ADD``: ``out0 = in0 + t`` (``x + P e``);
* ``CHEB_START``: ``r = dinv (in0 - t)``, ``d = c0 r``, ``x' = in1 + d`` (a Chebyshev smoothing
  started from ``x = in1``; ``in0 = b``); writes ``r``, ``d``, ``x'``;
* ``CHEB_STEP``: ``r' = in0 - dinv t``, ``d' = c1 in1 + c2 r'``, ``x' = in2 + d'`` with
  ``t = A d`` (``in0 = r``, ``in1 = d``, ``in2 = x``);
* ``CHEB_FIRST``: the first step from ``x = 0``, whose ``r = dinv b``, ``d = c0 r``, ``x = d`` are
  never stored: the gather forms ``d_j = c0 dinv_j b_j`` on the fly (``x = b`` here, ``XS = dinv``),
  then the step as ``CHEB_STEP``;
* ``JACOBI``: ``x' = in1 + c0 dinv (in0 - t)`` with ``t = A in1`` (a damped Jacobi sweep).

``WRITE_RD = False`` skips the ``r'`` / ``d'`` stores of the last Chebyshev step (only ``x'`` is
read afterwards). Outputs never alias the gathered vector (programs read their neighbours' rows
while others write).
"""

from __future__ import annotations

import triton
import triton.language as tl

# (tl.constexpr: the only globals a jitted function may read)
SPMV, RESID, ADD, CHEB_START, CHEB_STEP, CHEB_FIRST, JACOBI = (tl.constexpr(i) for i in range(7))


@triton.jit
def csr_row_products(crow, col, val, x, xs, rows, rmask, SCALED: tl.constexpr, BS: tl.constexpr, KP: tl.constexpr):
    """``sum_j a_ij x_j`` (``a_ij x_j xs_j`` when ``SCALED``) for a block of rows, each row's
    entries read as ``[rows, KP]`` tiles across adjacent lanes up to the block's longest row
    (shared with the Lanczos kernels of :mod:`._lanczos_kernels`)."""
    start = tl.load(crow + rows, mask=rmask, other=0)
    end = tl.load(crow + rows + 1, mask=rmask, other=0)
    length = end - start
    longest = tl.max(length, axis=0)
    acc = tl.zeros([BS], dtype=val.dtype.element_ty)
    for k in range(0, longest, KP):
        offs = k + tl.arange(0, KP)
        m = offs[None, :] < length[:, None]
        idx = start[:, None] + offs[None, :]
        c = tl.load(col + idx, mask=m, other=0)
        v = tl.load(val + idx, mask=m, other=0.0)
        xv = tl.load(x + c, mask=m, other=0.0)
        if SCALED:
            xv = xv * tl.load(xs + c, mask=m, other=0.0)
        acc += tl.sum(v * xv, axis=1)
    return acc


# (n is not specialized: Triton would compile a variant per n % 16 and n == 1, so the levels of a
# new problem size would compile inside its first solve)
@triton.jit(do_not_specialize=["n"])
def _level_kernel(crow, col, val, x, xs, n,
                  out0, out1, out2, in0, in1, in2, dinv, coef,
                  MODE: tl.constexpr, WRITE_RD: tl.constexpr,
                  BS: tl.constexpr, KP: tl.constexpr):
    # The coefficients come from memory in the vectors' dtype: Python floats would be passed as
    # fp32 scalars (a relative change of ~1e-8 in the smoother of a float64 cycle).
    c0 = tl.load(coef)
    c1 = tl.load(coef + 1)
    c2 = tl.load(coef + 2)
    pid = tl.program_id(0)
    rows = pid * BS + tl.arange(0, BS)
    rmask = rows < n
    acc = csr_row_products(crow, col, val, x, xs, rows, rmask, MODE == CHEB_FIRST, BS, KP)
    if MODE == SPMV:
        tl.store(out0 + rows, acc, mask=rmask)
    elif MODE == RESID:
        tl.store(out0 + rows, tl.load(in0 + rows, mask=rmask, other=0.0) - acc, mask=rmask)
    elif MODE == ADD:
        tl.store(out0 + rows, tl.load(in0 + rows, mask=rmask, other=0.0) + acc, mask=rmask)
    elif MODE == CHEB_START:
        di = tl.load(dinv + rows, mask=rmask, other=0.0)
        r = di * (tl.load(in0 + rows, mask=rmask, other=0.0) - acc)
        d = c0 * r
        tl.store(out0 + rows, r, mask=rmask)
        tl.store(out1 + rows, d, mask=rmask)
        tl.store(out2 + rows, tl.load(in1 + rows, mask=rmask, other=0.0) + d, mask=rmask)
    elif MODE == JACOBI:
        di = tl.load(dinv + rows, mask=rmask, other=0.0)
        xi = tl.load(in1 + rows, mask=rmask, other=0.0)
        tl.store(out0 + rows, xi + c0 * di * (tl.load(in0 + rows, mask=rmask, other=0.0) - acc), mask=rmask)
    else:  # CHEB_STEP / CHEB_FIRST
        di = tl.load(dinv + rows, mask=rmask, other=0.0)
        if MODE == CHEB_FIRST:
            r = di * tl.load(x + rows, mask=rmask, other=0.0)
            d = c0 * r
            xi = d
            r = r - di * (c0 * acc)
        else:
            r = tl.load(in0 + rows, mask=rmask, other=0.0) - di * acc
            d = tl.load(in1 + rows, mask=rmask, other=0.0)
            xi = tl.load(in2 + rows, mask=rmask, other=0.0)
        d = c1 * d + c2 * r
        if WRITE_RD:
            tl.store(out0 + rows, r, mask=rmask)
            tl.store(out1 + rows, d, mask=rmask)
        tl.store(out2 + rows, xi + d, mask=rmask)
