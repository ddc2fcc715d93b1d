"""``slogdet`` / ``logdet`` / ``det`` of a sparse matrix from its LU factors, with gradients.

Forward: SciPy SuperLU, ``P_r A^T P_c = L U`` (we factor A^T, whose CSC arrays are A's CSR arrays;
det A^T = det A): ``det A = sign(P_r) sign(P_c) prod(diag U)`` (L has a unit diagonal).
Backward: ``d log|det A| / dA = A^{-T}``, so ``grad_values[e] = (A^{-1})[col[e], row[e]]``: the
entries of the inverse on the transposed pattern, computed column block by column block with the
kept factors (``n`` solves in blocks of 256). That is exact, and affordable up to about 10^5 rows;
beyond that it raises (selected inversion is not implemented).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from slactl.engine.linear.superlu import SuperLUFactorization
from slactl.engine.matrix import SparseMatrix, host_numpy
from slactl.errors import NotImplementedFeatureError, StructureError, UsageError

BACKWARD_MAX_ROWS = 200_000
_BLOCK = 256


def _inverse_on_transposed_pattern(F: SuperLUFactorization, A: SparseMatrix) -> np.ndarray:
    """``out[e] = (A^{-1})[col[e], row[e]]`` for every stored entry ``e``."""
    n = A.shape[0]
    row = A.pattern.row.numpy().astype(np.int64)
    col = A.pattern.col.numpy().astype(np.int64)
    out = np.empty(A.nnz, dtype=np.result_type(host_numpy(A.values).dtype, np.float64))
    crow = A.pattern.crow.numpy()
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        E = np.zeros((n, stop - start), dtype=out.dtype)
        E[np.arange(start, stop), np.arange(stop - start)] = 1.0
        X = F._apply_inverse(torch.from_numpy(E)).numpy()  # columns start..stop-1 of A^{-1}
        lo, hi = crow[start], crow[stop]  # entries whose row lies in the block
        out[lo:hi] = X[col[lo:hi], row[lo:hi] - start]
    return out


class _LogAbsDet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, A: SparseMatrix):  # type: ignore[override]
        F = SuperLUFactorization(A.detach().cpu())
        sign, logabs = F.logdet()
        ctx.F, ctx.A = F, A.detach().cpu()
        ctx.device = values.device
        return values.new_tensor(logabs), values.new_tensor(sign)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_logabs, g_sign):  # type: ignore[override]
        if ctx.A.shape[0] > BACKWARD_MAX_ROWS:
            raise NotImplementedFeatureError(
                f"the gradient of logdet needs the inverse on the pattern; slactl computes it with "
                f"n solves, which is limited to {BACKWARD_MAX_ROWS} rows (this matrix has "
                f"{ctx.A.shape[0]}); selected inversion is not implemented yet")
        inv_t = torch.from_numpy(_inverse_on_transposed_pattern(ctx.F, ctx.A)).to(ctx.device)
        return g_logabs * inv_t.to(g_logabs.dtype), None


def slogdet(A: SparseMatrix) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sign, log|det A|)`` like ``torch.linalg.slogdet``; differentiable in ``A.values``.

    The factorization runs on the CPU (SuperLU) whatever A's device; results come back on it.

    Examples
    --------
    >>> import torch, slactl
    >>> A = slactl.SparseMatrix.from_dense(torch.tensor([[0.0, 2.0], [3.0, 0.0]], dtype=torch.float64))
    >>> slactl.slogdet(A)
    (tensor(-1., dtype=torch.float64), tensor(1.7918, dtype=torch.float64))
    """
    if not isinstance(A, SparseMatrix):
        raise UsageError(f"slogdet takes a SparseMatrix, got {type(A).__name__}")
    if A.shape[0] != A.shape[1]:
        raise StructureError(f"a determinant needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
    if A.is_batched:
        pairs = [slogdet(A[i]) for i in range(A.batch_size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    if A.dtype.is_complex:
        raise NotImplementedFeatureError("slogdet of complex matrices is not implemented")
    try:
        logabs, sign = _LogAbsDet.apply(A.values, A)
    except StructureError:
        # singular: det = 0, log|det| = -inf (torch.linalg.slogdet's convention)
        z = A.values.new_zeros(())
        return z, z - float("inf")
    return sign, logabs


def logdet(A: SparseMatrix) -> torch.Tensor:
    """``log det A`` (NaN when det A < 0, like ``torch.logdet``)."""
    sign, logabs = slogdet(A)
    return torch.where(sign > 0, logabs, torch.where(sign == 0, logabs, torch.full_like(logabs, float("nan"))))


def det(A: SparseMatrix) -> torch.Tensor:
    """``det A = sign * exp(log|det A|)`` (overflows to inf for large matrices: prefer slogdet)."""
    sign, logabs = slogdet(A)
    return sign * torch.exp(logabs)
