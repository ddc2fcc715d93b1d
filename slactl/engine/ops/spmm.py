"""Sparse times dense: ``A @ x`` for a vector ``x`` ([n]) or a block of vectors ([n, k]).

Forward uses torch's CSR kernels (MKL on the CPU, cuSPARSE on CUDA). The backward is
``grad_x = A^H g`` (on the cached transpose pattern; ``A^T`` when real) and
``grad_values[e] = sum_k g[row[e], k] conj(x[col[e], k])`` (a sampled dense-dense product on A's
pattern), torch's convention for complex tensors. Both are written with differentiable
operations, so higher derivatives work too.
"""

from __future__ import annotations

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import Pattern
from slactl.errors import ShapeError


def _check_operand(A: SparseMatrix, x: torch.Tensor) -> None:
    A.check_compatible(x)
    n = A.shape[1]
    if A.is_batched:
        ok = x.dim() in (2, 3) and x.shape[0] == A.batch_size and x.shape[1] == n
        want = f"[{A.batch_size}, {n}] or [{A.batch_size}, {n}, k]"
    else:
        ok = x.dim() in (1, 2) and x.shape[0] == n
        want = f"[{n}] or [{n}, k]"
    if not ok:
        raise ShapeError(f"A is {A.shape[0]}x{n}{' (batch of %d)' % A.batch_size if A.is_batched else ''}; x must have shape {want}, got {tuple(x.shape)}")


def _forward(pattern: Pattern, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if values.dim() == 2:
        batch = values.shape[0]
        m, n = pattern.shape
        flat = pattern.block_diagonal(batch).torch_csr(values.reshape(-1))
        xx = x.reshape((batch * n,) + tuple(x.shape[2:]))
        y = flat @ xx
        return y.reshape((batch, m) + tuple(x.shape[2:]))
    csr = pattern.torch_csr(values)
    return torch.mv(csr, x) if x.dim() == 1 else torch.mm(csr, x)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, x, pattern):  # type: ignore[override]
        ctx.pattern = pattern
        ctx.save_for_backward(values, x)
        return _forward(pattern, values.detach(), x.detach())

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        values, x = ctx.saved_tensors
        pattern = ctx.pattern
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = matmul(SparseMatrix.from_pattern(pattern, values).H, g)
        if ctx.needs_input_grad[0]:
            grad_values = sampled_product(pattern, g, x.conj(), batched=values.dim() == 2)
        return grad_values, grad_x, None


def sampled_product(pattern: Pattern, g: torch.Tensor, x: torch.Tensor, *, batched: bool) -> torch.Tensor:
    """``out[..., e] = sum_k g[..., row[e], k] * x[..., col[e], k]`` for every stored entry ``e``.

    For blocks ([n, k]) the entries are processed in chunks so the temporaries stay near
    ``_CHUNK`` elements instead of ``nnz * k``.
    """
    row, col = pattern.row, pattern.col
    # index_select is several times faster than advanced indexing on the CPU (int32 indices).
    if batched:
        prod = g.index_select(1, row) * x.index_select(1, col)
        return prod if g.dim() == 2 else prod.sum(-1)
    if g.dim() == 1:
        return g.index_select(0, row) * x.index_select(0, col)
    step = max(1, _CHUNK // max(g.shape[-1], 1))
    if pattern.nnz <= step:
        return (g.index_select(0, row) * x.index_select(0, col)).sum(-1)
    parts = [(g.index_select(0, row[s:s + step]) * x.index_select(0, col[s:s + step])).sum(-1)
             for s in range(0, pattern.nnz, step)]
    return torch.cat(parts)


_CHUNK = 1 << 25  # elements per temporary in the block sampled product (256 MiB in float64)


def matmul(A: SparseMatrix, x: torch.Tensor) -> torch.Tensor:
    """``A @ x``; differentiable in ``A.values`` and ``x``.

    Unbatched A takes ``x`` of shape ``[n]`` or ``[n, k]``; a batch of B matrices takes ``[B, n]``
    or ``[B, n, k]``.
    """
    _check_operand(A, x)
    if torch.is_grad_enabled() and (A.values.requires_grad or x.requires_grad):
        return _SpMM.apply(A.values, x, A.pattern)
    if A.values.dim() == 1:
        # Hot path of every Krylov iteration: reuse one torch CSR view of the values (it shares
        # their memory, so in-place updates of A.values are seen).
        csr = A._csr
        if csr is None:
            csr = A._csr = A.pattern.torch_csr(A.values.detach())
        return torch.mv(csr, x) if x.dim() == 1 else torch.mm(csr, x)
    return _forward(A.pattern, A.values, x)
