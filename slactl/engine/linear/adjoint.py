"""The one adjoint autograd Function every linear solver shares.

Forward: ``x = A^{-1} b`` by any :class:`~slactl.engine.linear.base.Prepared` solver. Backward,
with ``g = dL/dx`` (for complex tensors torch's conjugate Wirtinger gradient ``dL/dx*``): solve
``A^H lam = g`` with ``prepared.adjoint()`` (same factorization or preconditioner: nothing is set
up again; ``A^H = A^T`` when real), then ``dL/db = lam`` and ``dL/dA[i, j] = -lam[i] conj(x[j])``
on A's pattern only, as ``torch.linalg.solve`` gives. The autograd graph has one node whatever the
iteration count, and saves only ``values`` and ``x`` (O(nnz + n) memory).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from slactl.engine.linear.base import Prepared
from slactl.engine.ops.spmm import sampled_product
from slactl.engine.pattern import Pattern


class AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, b, prepared: Prepared, pattern: Pattern, options: dict[str, Any], sink: list):  # type: ignore[override]
        result = prepared.solve(b.detach(), **options)
        sink.append(result)
        if not result.converged:
            result.raise_if_failed()
        ctx.prepared, ctx.pattern = prepared, pattern
        ctx.options = {k: v for k, v in options.items() if k != "x0" and k != "callback"}
        ctx.save_for_backward(values, result.x)
        return result.x

    @staticmethod
    @once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        values, x = ctx.saved_tensors
        adjoint = ctx.prepared.adjoint().solve(g.contiguous(), **ctx.options)
        adjoint.raise_if_failed()
        lam = adjoint.x
        grad_values = None
        if ctx.needs_input_grad[0]:
            grad_values = -sampled_product(ctx.pattern, lam, x.conj(), batched=False)
        return grad_values, lam if ctx.needs_input_grad[1] else None, None, None, None, None
