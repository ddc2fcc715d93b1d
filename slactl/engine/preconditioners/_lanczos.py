"""Lanczos tridiagonal of ``D^{-1/2} A D^{-1/2}`` kept on the device, for the ``lambda_max(D^{-1} A)``
of the sa-amg set-up (the smoothed prolongator's omega and the Chebyshev smoother's interval).

:func:`lanczos_tridiagonal` runs ``steps`` steps from a seeded random start: with Triton on CUDA
as two fused kernels per step (:mod:`._lanczos_kernels`), else as torch operations. Both return
the tridiagonal's diagonal and off-diagonal as device tensors (no host synchronization).
"""

from __future__ import annotations

import torch

from slactl.engine.krylov.operator import MatrixOperator
from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners._aggregation import _use_kernel, device_generator

# Programs of the fused kernels: each strides over row blocks, and every program sums the
# partials of each scalar (G of them) itself.
_PROGRAMS = 512
_ROWS_PER_PROGRAM = 128


def lanczos_tridiagonal(A: SparseMatrix, s: torch.Tensor, steps: int,
                        interpret: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alphas [steps], betas [steps - 1])`` of ``steps`` Lanczos steps on ``S A S``, ``S = diag(s)``
    (``steps <= n``). ``interpret`` runs the fused kernels under Triton's interpreter (tests)."""
    n = A.shape[0]
    v = torch.rand(n, generator=device_generator(A.device, 0), device=A.device, dtype=A.dtype)
    if _use_kernel(v, interpret):
        return _fused(A, s, v, steps)
    return _torch(A, s, v, steps)


def _torch(A: SparseMatrix, s: torch.Tensor, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    op = MatrixOperator(A)
    v = v / torch.linalg.vector_norm(v)
    v_prev = torch.zeros_like(v)
    alphas, betas = [], []
    beta = torch.zeros((), dtype=A.dtype, device=A.device)
    tiny = torch.finfo(A.dtype).tiny
    for _ in range(steps):
        w = s * op.matvec(s * v) - beta * v_prev
        alpha = torch.dot(w, v)
        w = w - alpha * v
        beta = torch.linalg.vector_norm(w)
        alphas.append(alpha)
        betas.append(beta)
        v_prev, v = v, w / beta.clamp_min(tiny)
    return torch.stack(alphas), torch.stack(betas[: steps - 1]) if steps > 1 else v.new_zeros(0)


def _fused(A: SparseMatrix, s: torch.Tensor, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    from slactl.engine.preconditioners import _lanczos_kernels as K

    n = A.shape[0]
    BS = _ROWS_PER_PROGRAM
    blocks = -(-n // BS)
    G = max(1, min(_PROGRAMS, blocks))
    GP = 1 << (G - 1).bit_length()
    KP = 8 if A.nnz <= 8 * n else 32
    # partial sums per program: |u_k|^2 (row k; u_0's in the first slot of row 0) and alpha_k
    norms = torch.zeros((steps + 1, G), dtype=torch.float64, device=A.device)
    norms[0, 0] = torch.dot(v, v)
    alphas = torch.empty((steps, G), dtype=torch.float64, device=A.device)
    # the kernels read every array with unit stride (values may be a column of a batch, a view),
    # and write the Lanczos vectors in place (v among them: the caller's v is left as it was)
    crow, col, val = (t.contiguous() for t in (A.pattern.crow, A.pattern.col, A.values.detach()))
    s = s.contiguous()
    u, u_prev = v.clone(memory_format=torch.contiguous_format), torch.zeros_like(v)
    for step in range(steps):
        # w may be written over u_prev (each row read before it is written, by its own program)
        K._lanczos_apply[(G,)](crow, col, val, s, u, u_prev, u_prev, norms, alphas, n, step, G, blocks,
                               BS=BS, KP=KP, GP=GP, num_warps=4)
        w = u_prev
        K._lanczos_orthogonalize[(G,)](u, w, norms, alphas, n, step, G, blocks, BS=BS, GP=GP, num_warps=4)
        u_prev, u = u, w
    return alphas.sum(1).to(A.dtype), norms[1:steps].sum(1).sqrt().to(A.dtype)
