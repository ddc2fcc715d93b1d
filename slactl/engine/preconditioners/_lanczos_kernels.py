"""Triton kernels of the Lanczos estimate of ``lambda_max(D^{-1} A)`` in the sa-amg set-up
(:func:`slactl.engine.preconditioners._lanczos.lanczos_tridiagonal`); imported only when used.

The torch Lanczos step is ~15 kernels (scalings, an SpMV, two dot products, axpys, a norm): 10
steps on each level of a 1M-unknown hierarchy were ~1.5 ms per level on an H200, all launch
overhead. Here a step is two kernels, and every vector is kept unnormalized with its squared
norm as per-program partial sums, so no kernel waits for a scalar from the host:

* ``_lanczos_apply``: ``w = s * A (s * u_k) / |u_k| - (|u_k| / |u_{k-1}|) u_{k-1}`` (the three-term
  recurrence with ``v_k = u_k / |u_k|`` and ``beta_{k-1} = |u_k|``), and the partial sums of
  ``w . v_k`` (``alpha_k``);
* ``_lanczos_orthogonalize``: ``u_{k+1} = w - alpha_k v_k`` and the partial sums of ``|u_{k+1}|^2``.

The programs stride over row blocks (``G`` programs); every program sums the ``G`` partials of a
scalar itself, in the same order, so the result is deterministic (no atomics) and equal in every
program.
"""

from __future__ import annotations

import triton
import triton.language as tl

from slactl.engine.preconditioners._cycle_kernels import csr_row_products


@triton.jit
def _total(partials, G, GP: tl.constexpr):
    """The sum of ``G`` float64 partials (the same order in every program)."""
    offs = tl.arange(0, GP)
    return tl.sum(tl.load(partials + offs, mask=offs < G, other=0.0), axis=0)


@triton.jit
def _norm(partials, step, G, GP: tl.constexpr):
    """``|u_step|`` from its partials (row ``step`` of ``[steps + 1, G]``)."""
    return tl.sqrt(_total(partials + step * G, G, GP))


# (n is not specialized: see _cycle_kernels)
@triton.jit(do_not_specialize=["n", "step", "G", "blocks"])
def _lanczos_apply(crow, col, val, s, u, u_prev, w, norms, alphas, n, step, G, blocks,
                   BS: tl.constexpr, KP: tl.constexpr, GP: tl.constexpr):
    pid = tl.program_id(0)
    norm = _norm(norms, step, G, GP)
    previous = _norm(norms, tl.maximum(step - 1, 0), G, GP)
    # beta_{k-1} / |u_{k-1}| (0 at the first step, and after a breakdown, |u_k| = 0)
    ratio = tl.where((step > 0) & (previous > 0), norm / previous, 0.0)
    scale = tl.where(norm > 0, 1.0 / norm, 0.0)  # v_k = u_k * scale (0 when u_k = 0)
    dot = tl.sum(tl.zeros([BS], dtype=tl.float64), axis=0)
    for b in range(pid, blocks, G):
        rows = b * BS + tl.arange(0, BS)
        rmask = rows < n
        acc = csr_row_products(crow, col, val, u, s, rows, rmask, True, BS, KP)
        si = tl.load(s + rows, mask=rmask, other=0.0)
        vi = tl.load(u + rows, mask=rmask, other=0.0) * scale
        # (u_prev is zero at the first step; w may be u_prev: this program read row i above)
        wi = si * acc * scale - ratio * tl.load(u_prev + rows, mask=rmask, other=0.0)
        tl.store(w + rows, wi, mask=rmask)
        dot += tl.sum(wi * vi, axis=0)
    tl.store(alphas + step * G + pid, dot)


@triton.jit(do_not_specialize=["n", "step", "G", "blocks"])
def _lanczos_orthogonalize(u, w, norms, alphas, n, step, G, blocks, BS: tl.constexpr, GP: tl.constexpr):
    pid = tl.program_id(0)
    norm = _norm(norms, step, G, GP)
    coefficient = tl.where(norm > 0, _total(alphas + step * G, G, GP) / norm, 0.0)  # alpha_k / |u_k|
    sq = tl.sum(tl.zeros([BS], dtype=tl.float64), axis=0)
    for b in range(pid, blocks, G):
        rows = b * BS + tl.arange(0, BS)
        rmask = rows < n
        wi = tl.load(w + rows, mask=rmask, other=0.0) - coefficient * tl.load(u + rows, mask=rmask, other=0.0)
        tl.store(w + rows, wi, mask=rmask)
        sq += tl.sum(wi * wi, axis=0)
    tl.store(norms + (step + 1) * G + pid, sq)
