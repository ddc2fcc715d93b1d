"""Gradients of a nonlinear solve by the implicit function theorem: one autograd Function.

At the root ``u*`` of ``F(u, p) = 0``, ``du*/dp = -J^{-1} dF/dp`` with ``J = dF/du``. For an
upstream gradient ``g = dL/du*``, the backward solves ``J^H lam = g`` once (``J^T`` when real;
never assuming ``J`` symmetric) and returns ``dL/dp = -lam^H dF/dp`` for every differentiable
input, computed as one vector-Jacobian product of ``F`` at ``u*`` (torch's vector-Jacobian
products conjugate as this does). The cost is one linear solve and one residual
evaluation whatever the number of forward iterations, and the autograd graph has one node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch.autograd.function import once_differentiable

from slactl.engine.krylov import gmres
from slactl.engine.matrix import SparseMatrix
from slactl.engine.nonlinear.jacobian import Linearization, assemble
from slactl.errors import ConvergenceError


@dataclass
class ParamSpec:
    """How ``*params`` map to tensors: ``kinds[i]`` is ``"tensor"``, ``"matrix"`` (its ``values``
    are the tensor) or ``"const"`` (passed through untouched)."""

    kinds: list[str]
    objects: list[Any]

    @classmethod
    def of(cls, params: Sequence[Any]) -> "ParamSpec":
        kinds = ["tensor" if torch.is_tensor(p) else "matrix" if isinstance(p, SparseMatrix) else "const" for p in params]
        return cls(kinds, list(params))

    def tensors(self) -> list[torch.Tensor]:
        return [p if k == "tensor" else p.values for k, p in zip(self.kinds, self.objects) if k != "const"]

    def rebuild(self, tensors: Sequence[torch.Tensor]) -> list[Any]:
        out, it = [], iter(tensors)
        for k, p in zip(self.kinds, self.objects):
            out.append(next(it) if k == "tensor" else p.with_values(next(it)) if k == "matrix" else p)
        return out

    def detached(self) -> list[Any]:
        return self.rebuild([t.detach() for t in self.tensors()])


def closed_over_leaves(F: torch.Tensor) -> list[torch.Tensor]:
    """Leaf tensors requiring grad that ``F``'s graph reaches (those the residual closes over when
    ``F`` was computed from detached ``u`` and parameters)."""
    if F.grad_fn is None:
        return [F] if F.requires_grad else []
    leaves, seen, stack = [], set(), [F.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)
        if var is not None:
            leaves.append(var)
        stack.extend(nxt for nxt, _ in node.next_functions)
    return leaves


@dataclass
class AdjointContext:
    """What the backward needs besides the saved tensors."""

    residual: Callable[..., torch.Tensor]
    spec: ParamSpec
    n_params: int  # tensors of spec (the rest of the Function's inputs are closed-over leaves)
    system: Any  # newton.System (its jacobian mode, pattern, jacobian_fn, linear options)
    result: Any  # NonlinearResult (adjoint_solves, timings are updated)


def _transpose_solve(system: Any, fn: Callable, u: torch.Tensor, F: torch.Tensor, ustar_leaf: torch.Tensor,
                     g: torch.Tensor) -> torch.Tensor:
    """``lam`` with ``J^H lam = g``: adjoint solve of the assembled Jacobian, or GMRES on VJPs."""
    if system.jacobian == "matrix-free":
        def vjp(v: torch.Tensor) -> torch.Tensor:
            (out,) = torch.autograd.grad(F, ustar_leaf, v, retain_graph=True, allow_unused=True)
            return torch.zeros_like(v) if out is None else out

        rtol = system.linear.get("adjoint_rtol") or 1e-12
        res = gmres(system.operator(vjp, g), g, rtol=rtol,
                    maxiter=system.linear.get("maxiter"), restart=system.linear.get("restart") or 30)
        return res.raise_if_failed().x
    from slactl.engine.linear.api import prepare
    from slactl.engine.linear.dispatch import select
    from slactl.engine.linear.structure import analyze

    lin = Linearization(fn, u)
    J = system.matrix(lin)
    structure = analyze(J)
    choice = select(J.shape[0], J.device, J.dtype, structure, method=system.linear.get("method", "auto"),
                    preconditioner=system.linear.get("preconditioner", "auto"))
    prepared = prepare(J, choice, structure, restart=system.linear.get("restart"))
    res = prepared.adjoint().solve(g, rtol=system.linear.get("adjoint_rtol") or 1e-12,
                                     maxiter=system.linear.get("maxiter"))
    if not res.converged:
        raise ConvergenceError("the adjoint solve J^H lam = g of a nonlinear solve's backward failed: " + res.message, result=res)
    return res.x


class ImplicitSolve(torch.autograd.Function):
    """``u* = ImplicitSolve.apply(ctx_info, u_star, *param_tensors, *closed_leaves)``: returns
    ``u*`` and differentiates it by the implicit function theorem."""

    @staticmethod
    def forward(ctx, info: AdjointContext, u_star: torch.Tensor, *inputs: torch.Tensor):  # type: ignore[override]
        ctx.info = info
        ctx.save_for_backward(u_star, *inputs)
        return u_star.detach().clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        t0 = time.perf_counter()
        info: AdjointContext = ctx.info
        u_star, *inputs = ctx.saved_tensors
        needs = ctx.needs_input_grad[2:]
        if not any(needs):
            return (None, None) + (None,) * len(inputs)
        with torch.enable_grad():
            subs = [t.detach().requires_grad_(nd) for t, nd in zip(inputs[: info.n_params], needs)]
            u = u_star.detach().requires_grad_(True)
            F = info.residual(u, *info.spec.rebuild(subs))
        detached = info.spec.detached()

        def fn(v: torch.Tensor) -> torch.Tensor:
            return info.residual(v, *detached)

        lam = _transpose_solve(info.system, fn, u_star, F, u, g.contiguous())
        info.result.adjoint_solves += 1
        targets = subs + list(inputs[info.n_params:])
        wanted = [i for i, nd in enumerate(needs) if nd]
        grads = [None] * len(inputs)
        if F.requires_grad and wanted:
            got = torch.autograd.grad(F, [targets[i] for i in wanted], -lam, allow_unused=True)
            for i, gr in zip(wanted, got):
                grads[i] = gr
        info.result.timings["backward"] = time.perf_counter() - t0
        return (None, None) + tuple(grads)
