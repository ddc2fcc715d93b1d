"""Triton kernels of the fused CG (:mod:`slactl.engine.krylov.fused_cg`); imported only when used.

One CG iteration is two streaming kernels and the scalar work between them:

* ``_spmv_kernel``: ``p = z + beta p_old`` fused into ``Ap = A p`` (CSR, one program per ``BLOCK``
  rows; the gathered ``p_j`` are formed on the fly from ``z_j`` and ``p_old_j``, so ``p`` is written
  once and never re-read by another kernel of the iteration), plus the partial sum of ``p . Ap`` of
  the block. ``p`` is double-buffered (``p_old`` / ``p_new``): a program gathers ``p_old`` of its
  neighbours' rows while other programs write ``p_new``.
* ``_update_kernel``: ``x += alpha p``, ``r -= alpha Ap``, ``z = dinv r`` (Jacobi) and the partial
  sums of ``r . r`` and ``r . z``.
* the scalar *stages* (``_alpha_stage`` after the SpMV, ``_beta_stage`` after the update) reduce the
  per-block partials in a fixed order (deterministic: no atomics) and run CG's scalar recurrence
  and its bookkeeping (active flag, status code, iteration count, residual history) on the device.
  A stage runs either in a one-program kernel of its own (``_alpha_finish`` / ``_beta_finish``) or
  *inline* at the top of the next streaming kernel, where every program reduces the (few) partials
  itself and gets bit-identical scalars; program 0 alone writes them. Inline saves two launches
  per iteration and is used for small systems (few partials).

The device state is one float64 vector (``STATE_*`` offsets below): slot A is written by the beta
stage and read by the SpMV and the alpha stage; slot B is written by the alpha stage and read by the
update and the beta stage. A kernel never writes the slot it reads, so the inline stages (read by
every program, written by program 0) have no race. Integers (active flag, status code, count) are
stored as float64: exact far beyond any iteration count.

Freezing (the eager loop's rule, kept bit for bit): once the column stops (converged, NaN or a
failure), ``alpha = beta = 0``; the remaining iterations of a captured block leave ``x`` and ``r``
unchanged and do not count.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Offsets in the float64 state vector (mirrored in fused_cg.py).
A_RZ, A_BETA, A_ACTIVE, A_CODE, A_COUNT = 0, 1, 2, 3, 4
B_RZ, B_ALPHA, B_ACTIVE, B_CODE, B_COUNT = 8, 9, 10, 11, 12
HIST = 16  # residual norms of the iterations of the current block: state[HIST + j]


@triton.jit
def _sum_partials(ptr, n, RB: tl.constexpr):
    """Sum of ``ptr[0:n]`` in a fixed order (chunks of RB, then one tree): deterministic."""
    offs = tl.arange(0, RB)
    acc = tl.load(ptr + offs, mask=offs < n, other=0.0)
    for start in range(RB, n, RB):
        o = start + offs
        acc += tl.load(ptr + o, mask=o < n, other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def _div(a, b):
    """IEEE division (Triton's float32 ``/`` is the faster ``div.full``; float64 ``/`` is exact)."""
    if a.dtype.is_fp32():  # resolved at compile time
        q = tl.div_rn(a, b)
    else:
        q = a / b
    return q


@triton.jit
def _sqrt(a):
    """IEEE square root (``tl.sqrt`` is approximate in float32; exact in float64)."""
    if a.dtype.is_fp32():  # resolved at compile time
        q = tl.sqrt_rn(a)
    else:
        q = tl.sqrt(a)
    return q


@triton.jit
def _alpha_stage(state, pap_part, n_part, writer, RB: tl.constexpr, CODE_INDEF_MATRIX: tl.constexpr):
    """Start of an iteration (count it where active), ``p . Ap <= 0`` -> INDEFINITE_MATRIX, alpha.

    Reads slot A, writes slot B (where ``writer``); returns alpha in the working dtype."""
    pap = _sum_partials(pap_part, n_part, RB)
    rz = tl.load(state + 0).to(pap.dtype)  # A_RZ
    active = tl.load(state + 2)  # A_ACTIVE
    code = tl.load(state + 3)  # A_CODE
    count = tl.load(state + 4) + active  # A_COUNT: start_iteration counts the active column
    fail = (active > 0) & (pap <= 0)  # NaN does not fail here (it stops at the norm test)
    code = tl.where(fail, CODE_INDEF_MATRIX, code)
    active = tl.where(fail, 0.0, active)
    alpha = tl.where(active > 0, _div(rz, pap), 0.0)
    tl.store(state + 8, rz.to(tl.float64), mask=writer)  # B_RZ
    tl.store(state + 9, alpha.to(tl.float64), mask=writer)  # B_ALPHA
    tl.store(state + 10, active, mask=writer)  # B_ACTIVE
    tl.store(state + 11, code, mask=writer)  # B_CODE
    tl.store(state + 12, count, mask=writer)  # B_COUNT
    return alpha


@triton.jit
def _beta_stage(state, rr_part, rz_part, n_part, tol_ptr, hist_index, writer, RB: tl.constexpr,
                JACOBI: tl.constexpr, CODE_INDEF_PRECONDITIONER: tl.constexpr):
    """End of an iteration: record ``||r||``, stop where it meets the tolerance (or is NaN),
    ``r . z <= 0`` -> INDEFINITE_PRECONDITIONER, beta. Reads slot B, writes slot A and the history
    entry (where ``writer``); returns beta in the working dtype."""
    rr = _sum_partials(rr_part, n_part, RB)
    if JACOBI:
        rzn = _sum_partials(rz_part, n_part, RB)
    else:
        rzn = rr
    norm = _sqrt(rr)
    tol = tl.load(tol_ptr)
    rz = tl.load(state + 8).to(rr.dtype)  # B_RZ
    active = tl.load(state + 10)  # B_ACTIVE
    code = tl.load(state + 11)  # B_CODE
    count = tl.load(state + 12)  # B_COUNT
    active = tl.where(norm > tol, active, 0.0)  # met, or NaN: stopped (why: decided on the host)
    fail = (active > 0) & (rzn <= 0)
    code = tl.where(fail, CODE_INDEF_PRECONDITIONER, code)
    active = tl.where(fail, 0.0, active)
    beta = tl.where(active > 0, _div(rzn, rz), 0.0)
    tl.store(state + 16 + hist_index, norm.to(tl.float64), mask=writer)  # HIST
    tl.store(state + 0, rzn.to(tl.float64), mask=writer)  # A_RZ
    tl.store(state + 1, beta.to(tl.float64), mask=writer)  # A_BETA
    tl.store(state + 2, active, mask=writer)  # A_ACTIVE
    tl.store(state + 3, code, mask=writer)  # A_CODE
    tl.store(state + 4, count, mask=writer)  # A_COUNT
    return beta


@triton.jit
def _gather_step(crow_start, crow_end, k, col, val, z, p_old, beta):
    idx = crow_start + k
    m = idx < crow_end
    c = tl.load(col + idx, mask=m, other=0)
    a = tl.load(val + idx, mask=m, other=0.0)
    zj = tl.load(z + c, mask=m, other=0.0)
    pj = tl.load(p_old + c, mask=m, other=0.0)
    return a * (zj + beta * pj)


@triton.jit(do_not_specialize=["hist_index", "maxlen"])
def _spmv_kernel(crow, col, val, z, p_old, p_new, ap, pap_part, state, rr_part, rz_part, tol_ptr,
                 n, n_upart, hist_index, maxlen,
                 BLOCK: tl.constexpr, MAXLEN: tl.constexpr, BETA_INLINE: tl.constexpr,
                 JACOBI: tl.constexpr, RB: tl.constexpr, CODE_INDEF_PRECONDITIONER: tl.constexpr):
    """``p_new = z + beta p_old``; ``ap = A p_new``; ``pap_part[pid] = sum(p_new * ap)`` over the
    block. ``MAXLEN > 0``: rows have at most MAXLEN entries (unrolled); else a loop to ``maxlen``."""
    pid = tl.program_id(0)
    if BETA_INLINE:
        beta = _beta_stage(state, rr_part, rz_part, n_upart, tol_ptr, hist_index, pid == 0, RB, JACOBI,
                           CODE_INDEF_PRECONDITIONER)
    else:
        beta = tl.load(state + 1).to(val.dtype.element_ty)  # A_BETA
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    rmask = rows < n
    start = tl.load(crow + rows, mask=rmask, other=0)
    end = tl.load(crow + rows + 1, mask=rmask, other=0)
    acc = tl.zeros([BLOCK], dtype=val.dtype.element_ty)
    if MAXLEN > 0:
        for k in tl.static_range(MAXLEN):
            acc += _gather_step(start, end, k, col, val, z, p_old, beta)
    else:
        for k in range(0, maxlen):
            acc += _gather_step(start, end, k, col, val, z, p_old, beta)
    zi = tl.load(z + rows, mask=rmask, other=0.0)
    pi = tl.load(p_old + rows, mask=rmask, other=0.0)
    pi = zi + beta * pi
    tl.store(p_new + rows, pi, mask=rmask)
    tl.store(ap + rows, acc, mask=rmask)
    tl.store(pap_part + pid, tl.sum(tl.where(rmask, pi * acc, 0.0), axis=0))


@triton.jit
def _update_kernel(x, r, z, dinv, p, ap, state, pap_part, rr_part, rz_part, n, n_spart,
                   BLOCK: tl.constexpr, ALPHA_INLINE: tl.constexpr, JACOBI: tl.constexpr,
                   RB: tl.constexpr, CODE_INDEF_MATRIX: tl.constexpr):
    """``x += alpha p``, ``r -= alpha ap``, ``z = dinv r`` (Jacobi); partial ``r.r`` and ``r.z``."""
    pid = tl.program_id(0)
    if ALPHA_INLINE:
        alpha = _alpha_stage(state, pap_part, n_spart, pid == 0, RB, CODE_INDEF_MATRIX)
    else:
        alpha = tl.load(state + 9).to(x.dtype.element_ty)  # B_ALPHA
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    xi = tl.load(x + offs, mask=m, other=0.0)
    pi = tl.load(p + offs, mask=m, other=0.0)
    ri = tl.load(r + offs, mask=m, other=0.0)
    api = tl.load(ap + offs, mask=m, other=0.0)
    xi = xi + alpha * pi
    ri = tl.where(m, ri - alpha * api, 0.0)  # masked lanes stay 0 even for a non-finite alpha
    tl.store(x + offs, xi, mask=m)
    tl.store(r + offs, ri, mask=m)
    tl.store(rr_part + pid, tl.sum(ri * ri, axis=0))  # masked lanes hold 0
    if JACOBI:
        zi = tl.load(dinv + offs, mask=m, other=0.0) * ri
        tl.store(z + offs, zi, mask=m)
        tl.store(rz_part + pid, tl.sum(ri * zi, axis=0))


@triton.jit
def _alpha_finish(state, pap_part, n_part, RB: tl.constexpr, CODE_INDEF_MATRIX: tl.constexpr):
    _alpha_stage(state, pap_part, n_part, tl.program_id(0) == 0, RB, CODE_INDEF_MATRIX)


@triton.jit(do_not_specialize=["hist_index"])
def _beta_finish(state, rr_part, rz_part, n_part, tol_ptr, hist_index, RB: tl.constexpr,
                 JACOBI: tl.constexpr, CODE_INDEF_PRECONDITIONER: tl.constexpr):
    _beta_stage(state, rr_part, rz_part, n_part, tol_ptr, hist_index, tl.program_id(0) == 0, RB, JACOBI,
                CODE_INDEF_PRECONDITIONER)
