"""The AMG V-cycle as fused Triton kernels (CUDA): SpMV and the smoother's vector work in one pass.

:meth:`AMG._cycle <slactl.engine.preconditioners.amg.AMG>` applies every level with torch: each
SpMV through cuSPARSE (a partition pass, a memset and the product: three kernels) and every
vector update of the Chebyshev / Jacobi smoother as a kernel of its own. Below a few million
unknowns the cycle is bound by those launches (H200, 2D Poisson 1M: 0.74 ms per V-cycle for ~27
SpMVs and ~90 elementwise kernels). Here each level of a Chebyshev(2) cycle is six kernels of
:mod:`._cycle_kernels`, each a CSR SpMV with the smoother's update as its epilogue:

=====================  ===============================================================
pre-smoothing          ``CHEB_FIRST`` (from x = 0: ``d = dinv b / theta`` formed in the gather)
                       then ``CHEB_STEP`` for each further degree
residual               ``RESID``: ``r = b - A x``
restriction            ``SPMV``: ``R r``
coarse correction      ``ADD``: ``x + P e``
post-smoothing         ``CHEB_START`` then ``CHEB_STEP`` for each further degree
=====================  ===============================================================

(Jacobi smoothing: one ``JACOBI`` kernel per sweep.) The arithmetic is the eager cycle's, in
another order of rounding; the coarsest level (at most ~2500 unknowns by default on CUDA) is solved with
the inverse formed from the same dense factorization, one GEMV (rounding of order
``cond(A_c) eps`` relative, far below what a preconditioner needs). Used by :class:`AMG` and
:class:`SmoothedAggregation` for one real vector on CUDA when Triton is installed
(``fused_cycle=False`` on the preconditioner keeps the torch cycle); batched right-hand sides and
the CPU run the torch cycle. The V-cycle is still captured in a CUDA graph where the
preconditioner asks for it (Triton launches capture like any kernel).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from slactl.engine.matrix import SparseMatrix

_KERNELS = "slactl.engine.preconditioners._cycle_kernels"
# Coarsest levels up to this size are solved with their explicit inverse (8 MB at 1000, 128 MB at 4096).
_COARSE_INVERSE_MAX = 4096
_MODES = dict(SPMV=0, RESID=1, ADD=2, CHEB_START=3, CHEB_STEP=4, CHEB_FIRST=5, JACOBI=6)


def available(amg: Any, b: torch.Tensor, interpret: bool = False) -> bool:
    """The fused cycle applies: one real float32/float64 vector on CUDA (or under Triton's
    interpreter for tests), every level matrix a plain CSR matrix on ``b``'s device and dtype."""
    if b.dim() != 1 or b.dtype not in (torch.float32, torch.float64):
        return False
    if not (b.is_cuda or interpret):
        return False
    from slactl.engine.krylov.fused_cg import interpreting, triton_available

    if not triton_available() or (interpreting() and not interpret):
        return False
    for lv in amg.levels[:-1]:
        for M in (lv.A, lv.P, lv.R):
            if not isinstance(M, SparseMatrix) or M.values.dim() != 1:
                return False
            if M.device != b.device or M.dtype != b.dtype:
                return False
    return True


class _Csr:
    """Kernel arguments of one level matrix: CSR arrays, rows, and the tile shape."""

    def __init__(self, M: SparseMatrix):
        self.crow = M.pattern.crow.contiguous()
        self.col = M.pattern.col.contiguous()
        self.val = M.values.detach().contiguous()
        self.n = int(M.shape[0])
        mean = M.nnz / max(self.n, 1)
        # The entry tile: 8 wide for short rows (stencils, prolongators), 32 for long ones
        # (restrictions, coarse operators); longer rows of a block take more tiles. About 1024
        # entries per program. Two widths only: each (mode, width) is a kernel Triton compiles on
        # first use, so a width per matrix would compile inside the first solves of new sizes.
        self.KP = 8 if mean <= 8 else 32
        self.BS = 1024 // self.KP
        self.grid = (max(1, -(-self.n // self.BS)),)


class FusedCycle:
    """The V-cycle of an :class:`AMG` hierarchy with the level work in fused kernels."""

    def __init__(self, amg: Any):
        self.K = importlib.import_module(_KERNELS)
        self.amg = amg
        self._coef: dict[Any, torch.Tensor] = {}
        self.levels = amg.levels  # the hierarchy this plan belongs to (identity checked by AMG)
        self.mats = [None if lv.P is None else (_Csr(lv.A), _Csr(lv.P), _Csr(lv.R)) for lv in amg.levels]
        # The coarsest solve as one GEMV with the explicit inverse (from the factorization the
        # torch cycle uses) where it is small: two triangular solves are ~15 us each on a GPU
        # whatever the size, a 1000 x 1000 GEMV ~3 us. Larger coarse levels keep the solves.
        self.coarse_inv = None
        if amg.levels[-1].A.shape[0] <= _COARSE_INVERSE_MAX:
            kind, *factors = amg._coarse
            if kind == "cholesky":  # A^-1 = L^-T L^-1: one triangular solve and a GEMM (cuSOLVER's
                # cholesky_inverse of a 910 x 910 factor took ~0.4 ms on an H200, in the first solve)
                L = factors[0]
                L_inv = torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=L.dtype, device=L.device), upper=False)
                self.coarse_inv = L_inv.mT @ L_inv
            else:
                eye = torch.eye(factors[0].shape[0], dtype=factors[0].dtype, device=factors[0].device)
                self.coarse_inv = torch.linalg.lu_solve(factors[0], factors[1], eye)

    def _launch(self, m: _Csr, x: torch.Tensor, mode: str, out0: torch.Tensor, out1=None, out2=None,
                in0=None, in1=None, in2=None, dinv=None, xs=None, c=(0.0, 0.0, 0.0), write_rd=True) -> None:
        # Unused pointers get out0 (never read: the mode's branches are compile-time).
        o = out0
        self.K._level_kernel[m.grid](
            m.crow, m.col, m.val, x, o if xs is None else xs, m.n,
            out0, o if out1 is None else out1, o if out2 is None else out2,
            o if in0 is None else in0, o if in1 is None else in1, o if in2 is None else in2,
            o if dinv is None else dinv, self._coefficients(c, x),
            MODE=_MODES[mode], WRITE_RD=write_rd, BS=m.BS, KP=m.KP, num_warps=4)

    def _coefficients(self, c: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
        """``c`` as a device tensor of ``like``'s dtype, made once per plan (the first, eager
        cycle makes them all, before a CUDA graph captures the cycle: no host copy in a graph)."""
        key = (tuple(float(v) for v in c), like.dtype)
        t = self._coef.get(key)
        if t is None:
            t = self._coef[key] = torch.tensor(key[0], dtype=like.dtype, device=like.device)
        return t

    def __call__(self, level: int, b: torch.Tensor) -> torch.Tensor:
        # Buffers: only the gathered vector (the one multiplied by the matrix) must not be an
        # output of the same kernel; vectors read at their own rows only are updated in place
        # (a row is read and written by the same program), and each temporary is dropped as soon
        # as it is used, so the graph's memory pool can reuse it on the next level.
        amg = self.amg
        if level == len(amg.levels) - 1:
            return amg._coarse_solve(b) if self.coarse_inv is None else torch.mv(self.coarse_inv, b)
        lv = amg.levels[level]
        A, P, R = self.mats[level]
        x = self._smooth(lv, A, b, None)
        r = torch.empty_like(b)
        self._launch(A, x, "RESID", r, in0=b)
        rc = torch.empty(R.n, dtype=b.dtype, device=b.device)
        self._launch(R, r, "SPMV", rc)
        del r
        e = self(level + 1, rc)
        del rc
        self._launch(P, e, "ADD", x, in0=x)  # x += P e, in place
        del e
        return self._smooth(lv, A, b, x)

    def _smooth(self, lv: Any, A: _Csr, b: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        degree = self.amg.degree
        if self.amg.smoother == "jacobi":
            omega = 4.0 / (3.0 * lv.lambda_max)
            for _ in range(degree):
                if x is None:  # from x = 0: no product needed
                    x = (omega * lv.inv_diag) * b
                    continue
                x_new = torch.empty_like(b)  # (x is gathered: not in place)
                self._launch(A, x, "JACOBI", x_new, in0=b, in1=x, dinv=lv.inv_diag, c=(omega, 0.0, 0.0))
                x = x_new
            return x
        # Chebyshev: the coefficients of amg._chebyshev (Saad, Alg. 12.1).
        hi, lo = 1.1 * lv.lambda_max, 0.1 * lv.lambda_max
        theta, delta = (hi + lo) / 2, (hi - lo) / 2
        sigma = theta / delta
        rho = 1.0 / sigma
        steps = degree - 1
        if x is None and steps == 0:
            return (lv.inv_diag * b) / theta
        if x is None:
            rho_new = 1.0 / (2.0 * sigma - rho)
            last = steps == 1
            x = torch.empty_like(b)
            r, d = (None, None) if last else (torch.empty_like(b), torch.empty_like(b))
            self._launch(A, b, "CHEB_FIRST", x if last else r, d, x, dinv=lv.inv_diag, xs=lv.inv_diag,
                         c=(1.0 / theta, rho_new * rho, 2.0 * rho_new / delta), write_rd=not last)
            rho, steps = rho_new, steps - 1
        else:
            r, d, x_new = (torch.empty_like(b) for _ in range(3))
            self._launch(A, x, "CHEB_START", r, d, x_new, in0=b, in1=x, dinv=lv.inv_diag, c=(1.0 / theta, 0.0, 0.0))
            x = x_new
        for k in range(steps):
            rho_new = 1.0 / (2.0 * sigma - rho)
            last = k == steps - 1
            d2 = None if last else torch.empty_like(b)  # d is gathered: the new d is another buffer
            self._launch(A, d, "CHEB_STEP", r, d2, x, in0=r, in1=d, in2=x,  # r and x in place
                         dinv=lv.inv_diag, c=(0.0, rho_new * rho, 2.0 * rho_new / delta), write_rd=not last)
            d, rho = d2, rho_new
        return x
