"""Triton kernels of the fused CG (:mod:`slactl.engine.krylov.fused_cg`); imported only when used.

One CG iteration is two streaming kernels and the scalar work between them:

* ``_spmv_kernel``: ``p = z + beta p_old`` fused into ``Ap = A p`` (CSR) plus the partial sum of
  ``p . Ap``, and the *previous* iteration's ``x += alpha p_old`` (the rows of ``p_old`` are read
  here anyway, so ``x`` costs no extra pass of ``p``; the driver applies the last iteration's
  update when it copies ``x`` out). The gathered ``p_j`` are formed on the fly from ``z_j`` and
  ``p_old_j``, so ``p`` is written once and never re-read by another kernel of the iteration.
  ``p`` is double-buffered (``p_old`` / ``p_new``): a program gathers ``p_old`` of its neighbours'
  rows while other programs write ``p_new``. The rows of a block are read as ``[rows, KP]`` tiles
  whose entry dimension runs across adjacent lanes (coalesced reads of ``col`` / ``val``: a
  row-per-lane loop makes adjacent lanes read addresses a row length apart), of widths 2^k adding
  up to the longest row (5 = 4 + 1: padding lanes cost registers, hence programs in flight, which
  is what the SpMV's bandwidth depends on).
* ``_update_kernel``: ``r -= alpha Ap``, ``z = dinv r`` (Jacobi) and the partial sums of ``r . r``
  and ``r . z``.
* the scalar *stages* (``_alpha_stage`` after the SpMV, ``_beta_stage`` after the update) reduce the
  per-program partials in a fixed order (deterministic) and run CG's scalar recurrence and its
  bookkeeping (active flag, status code, iteration count, residual history) on the device.
  A stage runs either in a kernel of its own (``_alpha_finish`` / ``_beta_finish``: its programs
  sum chunks of the partials, and the program that finishes last, told by an atomic counter, sums
  the chunk sums in order and runs the stage: still deterministic) or *inline* at the top of the
  next streaming kernel, where every program reduces the (few) partials itself and gets
  bit-identical scalars; program 0 alone writes them. Inline saves two launches per iteration and
  is used for small systems (few partials), whose streaming kernels also issue their loads before
  the stage and are launched as programmatic dependent launches (``PDL``: the next kernel's
  programs start, and load the constant matrix, while the previous kernel ends).

One program per block of rows (``SUB = 1``, the default) keeps the most rows in flight; ``SUB``
blocks per program give fewer partials (and programs that outlive the others at the end).

Per iteration and DOF the kernels move the bandwidth floor's bytes (matrix once, 9 vector passes)
when the gathers hit in cache: the SpMV reads ``z``, ``p_old``, ``x`` and writes ``p_new``, ``Ap``,
``x``; the update reads ``r``, ``Ap`` and writes ``r`` (+ ``dinv`` read and ``z`` write: Jacobi).

The device state is one float64 vector (offsets below): slot A is written by the beta stage and
read by the SpMV and the alpha stage; slot B is written by the alpha stage and read by the update,
the beta stage and the next SpMV (alpha, for the lagged ``x`` update). A kernel never writes the
slot it reads, so the inline stages (read by every program, written by program 0) have no race.
Integers (active flag, status code, count) are stored as float64: exact far beyond any iteration
count.

Freezing (the eager loop's rule, kept bit for bit): once the column stops (converged, NaN or a
failure), ``alpha = beta = 0``; the remaining iterations of a captured block leave ``x`` and ``r``
unchanged and do not count (the first of them still applies the last active iteration's lagged
``x`` update, with that iteration's alpha).
"""

from __future__ import annotations

import triton
import triton.language as tl

try:  # programmatic dependent launch (Hopper and later; Triton >= 3.3)
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    HAS_GDC = True
except ImportError:  # pragma: no cover - older Triton: the plans do not ask for PDL
    HAS_GDC = False

    @triton.jit
    def gdc_wait():
        pass

    @triton.jit
    def gdc_launch_dependents():
        pass

# Offsets in the float64 state vector (mirrored in fused_cg.py).
A_RZ, A_BETA, A_ACTIVE, A_CODE, A_COUNT = 0, 1, 2, 3, 4
TOL = 5  # the tolerance, for the host (the kernels read tol_ptr)
B_RZ, B_ALPHA, B_ACTIVE, B_CODE, B_COUNT = 8, 9, 10, 11, 12
HIST = 16  # residual norms of the iterations of the current block: state[HIST + j]


@triton.jit
def _sum_partials(ptr, n, RB: tl.constexpr):
    """Sum of ``ptr[0:n]`` in a fixed order (chunks of RB, then one tree): deterministic."""
    offs = tl.arange(0, RB)
    acc = tl.load(ptr + offs, mask=offs < n, other=0.0, cache_modifier=".cg")
    for start in range(RB, n, RB):
        o = start + offs
        acc += tl.load(ptr + o, mask=o < n, other=0.0, cache_modifier=".cg")
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
def _tile_matrix(start, end, k0, col, val, KP: tl.constexpr, EVICT: tl.constexpr):
    """The entries ``k0 .. k0 + KP`` of each row (column indices, values, mask) as ``[rows, KP]``
    tiles: the entry dimension runs across adjacent lanes, so a warp reads a few rows' contiguous
    entry ranges at once (coalesced), not one entry of 32 rows ~5 entries apart."""
    idx = start[:, None] + (k0 + tl.arange(0, KP))[None, :]
    m = idx < end[:, None]
    if EVICT:  # the matrix is streamed once per iteration: keep the gathered vectors in L2
        c = tl.load(col + idx, mask=m, other=0, eviction_policy="evict_first")
        a = tl.load(val + idx, mask=m, other=0.0, eviction_policy="evict_first")
    else:
        c = tl.load(col + idx, mask=m, other=0)
        a = tl.load(val + idx, mask=m, other=0.0)
    return c, a, m


@triton.jit
def _tile_gather(c, m, z, p_old):
    """The ``z_j`` and ``p_old_j`` of a tile's entries."""
    return tl.load(z + c, mask=m, other=0.0), tl.load(p_old + c, mask=m, other=0.0)


@triton.jit
def _tile_load(start, end, k0, col, val, z, p_old, KP: tl.constexpr, EVICT: tl.constexpr):
    c, a, m = _tile_matrix(start, end, k0, col, val, KP, EVICT)
    zj, pj = _tile_gather(c, m, z, p_old)
    return a, zj, pj


@triton.jit
def _tile_sum(a, zj, pj, beta):
    """``sum_k a_ik (z_j + beta p_old_j) = sum_k a_ik p_j`` over a tile's entries, per row."""
    return tl.sum(a * (zj + beta * pj), axis=1)


@triton.jit
def _row_products(start, end, k0, col, val, z, p_old, beta, KP: tl.constexpr, EVICT: tl.constexpr):
    a, zj, pj = _tile_load(start, end, k0, col, val, z, p_old, KP, EVICT)
    return _tile_sum(a, zj, pj, beta)


@triton.jit
def _crow_load(crow, rows, rmask, EVICT: tl.constexpr):
    if EVICT:
        start = tl.load(crow + rows, mask=rmask, other=0, eviction_policy="evict_first")
        end = tl.load(crow + rows + 1, mask=rmask, other=0, eviction_policy="evict_first")
    else:
        start = tl.load(crow + rows, mask=rmask, other=0)
        end = tl.load(crow + rows + 1, mask=rmask, other=0)
    return start, end


@triton.jit
def _spmv_rows_out(rows, rmask, zi, po, xi, acc, beta, alpha, p_new, ap, x):
    """Store ``x + alpha p_old``, ``p_new = z + beta p_old`` and ``ap`` of the rows; their
    ``p_new * ap`` (0 on masked rows)."""
    pi = zi + beta * po
    tl.store(x + rows, xi + alpha * po, mask=rmask)
    tl.store(p_new + rows, pi, mask=rmask)
    tl.store(ap + rows, acc, mask=rmask)
    return tl.where(rmask, pi * acc, 0.0)


@triton.jit(do_not_specialize=["hist_index", "maxlen"])
def _spmv_kernel(crow, col, val, z, p_old, p_new, ap, x, pap_part, state, rr_part, rz_part, tol_ptr,
                 n, n_upart, hist_index, maxlen,
                 BLOCK: tl.constexpr, SUB: tl.constexpr, KP: tl.constexpr, KP2: tl.constexpr,
                 KP3: tl.constexpr, LOOP: tl.constexpr, EVICT: tl.constexpr, BETA_INLINE: tl.constexpr,
                 JACOBI: tl.constexpr, RB: tl.constexpr, CODE_INDEF_PRECONDITIONER: tl.constexpr,
                 PDL: tl.constexpr = False):
    """``x += alpha_prev p_old`` (the previous iteration's ``x`` update, see the module docstring);
    ``p_new = z + beta p_old``; ``ap = A p_new``; ``pap_part[pid] = sum(p_new * ap)`` over the
    program's ``SUB`` blocks of ``BLOCK`` rows. Rows hold at most ``KP + KP2 + KP3`` entries (tiles
    of those widths, powers of 2 or 0: 5 = 4 + 1 holds no padding lanes, which cost registers and
    so rows in flight), or (``LOOP``) tiles of ``KP`` entries up to ``maxlen``.

    With an inline stage and one block of short rows (small systems) every load of the block is
    issued before the stage: none depends on beta, so the stage's reduction overlaps the loads.
    (Without an inline stage, beta is one load; the rows' loads then follow the products, which
    holds fewer values live: more programs in flight.) ``PDL`` (launched as a programmatic
    dependent launch, small systems): the matrix loads run before the wait for the previous
    kernel's end, overlapping its tail and the launch."""
    pid = tl.program_id(0)
    dt = val.dtype.element_ty
    if BETA_INLINE and SUB == 1 and not LOOP:
        if PDL:  # let the next kernel's programs start (they wait for this one's end)
            gdc_launch_dependents()
        rows = pid * BLOCK + tl.arange(0, BLOCK)
        rmask = rows < n
        start, end = _crow_load(crow, rows, rmask, EVICT)
        c1, a1, m1 = _tile_matrix(start, end, 0, col, val, KP, EVICT)
        if KP2 > 0:
            c2, a2, m2 = _tile_matrix(start, end, KP, col, val, KP2, EVICT)
        if KP3 > 0:
            c3, a3, m3 = _tile_matrix(start, end, KP + KP2, col, val, KP3, EVICT)
        if PDL:  # the matrix is constant; everything else waits for the previous kernel's end
            gdc_wait()
        z1, q1 = _tile_gather(c1, m1, z, p_old)
        if KP2 > 0:
            z2, q2 = _tile_gather(c2, m2, z, p_old)
        if KP3 > 0:
            z3, q3 = _tile_gather(c3, m3, z, p_old)
        zi = tl.load(z + rows, mask=rmask, other=0.0)
        po = tl.load(p_old + rows, mask=rmask, other=0.0)
        xi = tl.load(x + rows, mask=rmask, other=0.0)
        if BETA_INLINE:
            beta = _beta_stage(state, rr_part, rz_part, n_upart, tol_ptr, hist_index, pid == 0, RB, JACOBI,
                               CODE_INDEF_PRECONDITIONER)
        else:
            beta = tl.load(state + 1).to(dt)  # A_BETA
        alpha = tl.load(state + 9).to(dt)  # B_ALPHA: the previous iteration's (0 before the first)
        acc = _tile_sum(a1, z1, q1, beta)
        if KP2 > 0:
            acc += _tile_sum(a2, z2, q2, beta)
        if KP3 > 0:
            acc += _tile_sum(a3, z3, q3, beta)
        pap = _spmv_rows_out(rows, rmask, zi, po, xi, acc, beta, alpha, p_new, ap, x)
    else:
        if PDL:
            gdc_wait()
        if BETA_INLINE:
            beta = _beta_stage(state, rr_part, rz_part, n_upart, tol_ptr, hist_index, pid == 0, RB, JACOBI,
                               CODE_INDEF_PRECONDITIONER)
        else:
            beta = tl.load(state + 1).to(dt)  # A_BETA
        alpha = tl.load(state + 9).to(dt)  # B_ALPHA
        pap = tl.zeros([BLOCK], dtype=dt)
        for t in range(SUB):
            rows = (pid * SUB + t) * BLOCK + tl.arange(0, BLOCK)
            rmask = rows < n
            start, end = _crow_load(crow, rows, rmask, EVICT)
            if LOOP:
                acc = tl.zeros([BLOCK], dtype=dt)
                for k0 in range(0, maxlen, KP):
                    acc += _row_products(start, end, k0, col, val, z, p_old, beta, KP, EVICT)
            else:
                acc = _row_products(start, end, 0, col, val, z, p_old, beta, KP, EVICT)
                if KP2 > 0:
                    acc += _row_products(start, end, KP, col, val, z, p_old, beta, KP2, EVICT)
                if KP3 > 0:
                    acc += _row_products(start, end, KP + KP2, col, val, z, p_old, beta, KP3, EVICT)
            zi = tl.load(z + rows, mask=rmask, other=0.0)
            po = tl.load(p_old + rows, mask=rmask, other=0.0)
            xi = tl.load(x + rows, mask=rmask, other=0.0)
            pap += _spmv_rows_out(rows, rmask, zi, po, xi, acc, beta, alpha, p_new, ap, x)
    tl.store(pap_part + pid, tl.sum(pap, axis=0))


@triton.jit
def _update_rows(r, z, dinv, offs, m, ri, api, alpha, JACOBI: tl.constexpr):
    """``r -= alpha ap`` and ``z = dinv r`` on the entries; their ``r * r`` and ``r * z``."""
    ri = tl.where(m, ri - alpha * api, 0.0)  # masked lanes stay 0 even for a non-finite alpha
    tl.store(r + offs, ri, mask=m)
    if JACOBI:
        zi = tl.load(dinv + offs, mask=m, other=0.0) * ri
        tl.store(z + offs, zi, mask=m)
    else:
        zi = ri
    return ri * ri, ri * zi


@triton.jit
def _update_kernel(r, z, dinv, ap, state, pap_part, rr_part, rz_part, n, n_spart,
                   BLOCK: tl.constexpr, SUB: tl.constexpr, ALPHA_INLINE: tl.constexpr, JACOBI: tl.constexpr,
                   RB: tl.constexpr, CODE_INDEF_MATRIX: tl.constexpr, PDL: tl.constexpr = False):
    """``r -= alpha ap``, ``z = dinv r`` (Jacobi); partial ``r.r`` and ``r.z`` of the program's
    ``SUB`` blocks of ``BLOCK`` entries (``x`` is updated by the next SpMV). With an inline stage
    and one block, the block's loads are issued before the stage."""
    pid = tl.program_id(0)
    dt = r.dtype.element_ty
    if ALPHA_INLINE and SUB == 1:
        if PDL:  # as in the SpMV: nothing here is constant but dinv, so wait at once
            gdc_launch_dependents()
            gdc_wait()
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        ri = tl.load(r + offs, mask=m, other=0.0)
        api = tl.load(ap + offs, mask=m, other=0.0)
        if ALPHA_INLINE:
            alpha = _alpha_stage(state, pap_part, n_spart, pid == 0, RB, CODE_INDEF_MATRIX)
        else:
            alpha = tl.load(state + 9).to(dt)  # B_ALPHA
        rr, rz = _update_rows(r, z, dinv, offs, m, ri, api, alpha, JACOBI)
    else:
        if PDL:
            gdc_wait()
        if ALPHA_INLINE:
            alpha = _alpha_stage(state, pap_part, n_spart, pid == 0, RB, CODE_INDEF_MATRIX)
        else:
            alpha = tl.load(state + 9).to(dt)  # B_ALPHA
        rr = tl.zeros([BLOCK], dtype=dt)
        rz = tl.zeros([BLOCK], dtype=dt)
        for t in range(SUB):
            offs = (pid * SUB + t) * BLOCK + tl.arange(0, BLOCK)
            m = offs < n
            ri = tl.load(r + offs, mask=m, other=0.0)
            api = tl.load(ap + offs, mask=m, other=0.0)
            rr_t, rz_t = _update_rows(r, z, dinv, offs, m, ri, api, alpha, JACOBI)
            rr += rr_t
            rz += rz_t
    tl.store(rr_part + pid, tl.sum(rr, axis=0))
    if JACOBI:
        tl.store(rz_part + pid, tl.sum(rz, axis=0))


@triton.jit
def _chunk_sum(src, n, pid, CHUNK: tl.constexpr):
    """Sum of ``src[pid * CHUNK:(pid + 1) * CHUNK]`` (clipped to ``n``; read past L1: written by
    other programs)."""
    offs = pid * CHUNK + tl.arange(0, CHUNK)
    return tl.sum(tl.load(src + offs, mask=offs < n, other=0.0, cache_modifier=".cg"), axis=0)


@triton.jit
def _arrived_last(counter):
    """Count this program's arrival; True in the program that arrives last, which then sees every
    other program's stores made before its arrival (release / acquire on the counter)."""
    tl.debug_barrier()  # every thread of the program has stored its share
    old = tl.atomic_add(counter, 1, sem="acq_rel")
    return old == tl.num_programs(0) - 1


@triton.jit
def _alpha_finish(state, pap_part, n_part, part2, counter, CHUNK: tl.constexpr, RB: tl.constexpr,
                  CODE_INDEF_MATRIX: tl.constexpr):
    """The alpha stage over many partials: each program sums a chunk of them, the last to finish
    sums the chunk sums (in program order: deterministic) and runs the stage."""
    pid = tl.program_id(0)
    tl.store(part2 + pid, _chunk_sum(pap_part, n_part, pid, CHUNK))
    if _arrived_last(counter):
        _alpha_stage(state, part2, tl.num_programs(0), True, RB, CODE_INDEF_MATRIX)
        tl.store(counter, 0)  # ready for the next launch


@triton.jit(do_not_specialize=["hist_index"])
def _beta_finish(state, rr_part, rz_part, n_part, rr2, rz2, counter, tol_ptr, hist_index, CHUNK: tl.constexpr,
                 RB: tl.constexpr, JACOBI: tl.constexpr, CODE_INDEF_PRECONDITIONER: tl.constexpr):
    """The beta stage over many partials (as :func:`_alpha_finish`)."""
    pid = tl.program_id(0)
    tl.store(rr2 + pid, _chunk_sum(rr_part, n_part, pid, CHUNK))
    if JACOBI:
        tl.store(rz2 + pid, _chunk_sum(rz_part, n_part, pid, CHUNK))
    if _arrived_last(counter):
        _beta_stage(state, rr2, rz2, tl.num_programs(0), tol_ptr, hist_index, True, RB, JACOBI,
                    CODE_INDEF_PRECONDITIONER)
        tl.store(counter, 0)
