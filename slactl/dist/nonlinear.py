"""Distributed Newton-Krylov: the engine's Newton on owned unknowns, with the implicit-function adjoint.

A rank's residual maps its owned unknowns to its owned residual; it reads its neighbours' unknowns
through the halo (``A @ u`` of a :class:`~slactl.dist.matrix.DistSparseMatrix`, ``A.full(u)`` or
:func:`~slactl.dist.halo.ghost_broadcast`), whose autograd rule makes Jacobian-vector products
(double backward) and vector-Jacobian products collective and exact.

Nothing of the algorithm is copied: :func:`slactl.engine.nonlinear.newton.newton` runs matrix-free
(GMRES on JVPs, Eisenstat-Walker forcing, backtracking on ``||F||``) on a
:class:`~slactl.engine.nonlinear.newton.System` whose ``reduce`` is an all-reduce, so every norm,
every Krylov inner product and therefore every decision (step accepted, converged) is global and
the same on every rank. Gradients: :class:`~slactl.engine.nonlinear.adjoint.ImplicitSolve`, whose
backward solves ``J^T lam = g`` once (GMRES on VJPs, same inner product) and returns
``-lam^T dF/dp`` for this rank's parameters.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist

from slactl.dist.matrix import DistSparseMatrix
from slactl.engine.matrix import SparseMatrix
from slactl.engine.nonlinear.adjoint import AdjointContext, ImplicitSolve, ParamSpec, closed_over_leaves
from slactl.engine.nonlinear.newton import System, newton
from slactl.errors import ConvergenceError, ShapeError, UsageError


def all_reduce_sum(local: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``local`` (a new tensor)."""
    out = local.detach().clone()
    if dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def _spec(params: list) -> ParamSpec:
    """The engine's ParamSpec, with a DistSparseMatrix treated like a SparseMatrix (its ``values``
    are the differentiable tensor, ``with_values`` rebuilds it)."""
    kinds = ["tensor" if torch.is_tensor(p) else "matrix" if isinstance(p, (SparseMatrix, DistSparseMatrix)) else "const"
             for p in params]
    return ParamSpec(kinds, list(params))


def _preconditioner(preconditioner: Any) -> Any:
    if preconditioner is None or hasattr(preconditioner, "apply") or callable(preconditioner):
        return preconditioner
    raise UsageError("a distributed Newton-Krylov preconditioner must be an object with apply(r) (for example "
                     "slactl.dist.BlockJacobi(A, 'ilu0') of a matrix close to the Jacobian) or a callable; "
                     f"got {preconditioner!r}")


def nonlinear_solve(
    residual: Callable[..., torch.Tensor],
    u0: torch.Tensor,
    *params: Any,
    rtol: float = 1e-10,
    atol: float = 0.0,
    maxiter: int = 50,
    line_search: bool = True,
    preconditioner: Any = None,
    linear_rtol: float | None = None,
    linear_maxiter: int | None = None,
    restart: int = 30,
    adjoint_rtol: float = 1e-12,
    return_result: bool = False,
    callback: Callable[[int, float], Any] | None = None,
) -> Any:
    """Solve ``F(u, *params) = 0`` across ranks by Newton-Krylov; differentiable w.r.t. the parameters.

    Every rank calls it with its owned entries of ``u0`` and gets its owned entries of ``u``.
    Stopping rule: ``||F(u)|| <= max(rtol * ||F(u0)||, atol)`` with global 2-norms.

    Parameters
    ----------
    residual : callable
        ``residual(u, *params) -> Tensor [n_owned]``: this rank's residual rows from its owned
        ``u`` (neighbours' values through the halo, e.g. ``A @ u``). Torch operations only, twice
        differentiable in ``u`` (JVPs use double backward); the same sequence of halo exchanges on
        every rank.
    u0 : Tensor ``[n_owned]``
    *params
        Tensors, :class:`DistSparseMatrix` / :class:`SparseMatrix` objects (their ``values`` get
        gradients) and constants. A parameter that requires grad must do so on every rank. A
        parameter replicated on every rank (a scalar coefficient) gets on each rank the share of
        that rank's residual rows: all-reduce its ``.grad`` for the gradient (as DDP does).
    rtol, atol, maxiter
        Stopping rule and Newton iteration limit.
    line_search : bool
        Backtracking (Armijo) on the global ``||F||``.
    preconditioner : object with ``apply(r)`` or callable, optional
        Right preconditioner of the GMRES steps (and of nothing else), e.g.
        ``slactl.dist.BlockJacobi(A, "ilu0")`` of a matrix close to the Jacobian.
    linear_rtol : float, optional
        Fixed GMRES tolerance (default: Eisenstat-Walker forcing terms).
    linear_maxiter, restart
        GMRES limits (default ``linear_maxiter``: ``10 * n`` with the global ``n``).
    adjoint_rtol : float
        Tolerance of the backward's ``J^T lam = g`` solve.
    return_result : bool
        Return the engine's :class:`~slactl.engine.nonlinear.result.NonlinearResult` (``.u``
        differentiable) instead of ``u``.
    callback : callable, optional
        ``callback(iteration, ||F(u)||)`` after each Newton step (global norm, every rank).

    Raises
    ------
    ConvergenceError
        On every rank alike; ``err.result`` is the partial result.

    Examples
    --------
    >>> A = DistSparseMatrix.from_store("poisson.parts.zarr")                     # doctest: +SKIP
    >>> f = torch.ones(A.n_owned, dtype=A.dtype, requires_grad=True)               # doctest: +SKIP
    >>> u = nonlinear_solve(lambda u, A, f: A @ u + u**3 - f, torch.zeros_like(f), A, f)   # doctest: +SKIP
    >>> u.sum().backward()      # on every rank: one distributed J^T solve      # doctest: +SKIP
    """
    if not torch.is_tensor(u0) or u0.dim() != 1:
        raise ShapeError(f"u0 must be this rank's owned entries, a 1-D tensor, got "
                         f"{tuple(u0.shape) if torch.is_tensor(u0) else type(u0).__name__}")
    if int(maxiter) < 0:
        raise UsageError(f"maxiter must be non-negative, got {maxiter}")
    params_l = list(params)
    spec = _spec(params_l)
    detached = spec.detached()
    n = int(all_reduce_sum(torch.tensor([u0.numel()], dtype=torch.int64, device=u0.device)))
    linear = dict(preconditioner=_preconditioner(preconditioner), rtol=linear_rtol, restart=int(restart),
                  maxiter=10 * n if linear_maxiter is None else int(linear_maxiter), adjoint_rtol=adjoint_rtol)
    system = System(lambda u: residual(u, *detached), "matrix-free", linear=linear, reduce=all_reduce_sum)
    result = newton(system, u0, rtol=rtol, atol=atol, maxiter=int(maxiter), line_search_on=line_search,
                    callback=callback)
    result.info["parts"] = dist.get_world_size()
    if not result.converged:
        raise ConvergenceError(result.message, result=result)
    result.u = _attach_gradients(residual, spec, system, result)
    return result if return_result else result.u


def _attach_gradients(residual: Callable, spec: ParamSpec, system: System, result: Any) -> torch.Tensor:
    """``u*`` through the engine's :class:`ImplicitSolve` when anything requires grad on any rank
    (an error when the ranks disagree: the backward pass is collective)."""
    u = result.u.detach()
    if not torch.is_grad_enabled():
        return u
    tensors = spec.tensors()
    with torch.enable_grad():
        F = residual(u, *spec.detached())
    closed = closed_over_leaves(F) if torch.is_tensor(F) and F.requires_grad else []
    wants = float(bool(closed) or any(t.requires_grad for t in tensors))
    votes = torch.tensor([wants, -wants], dtype=torch.float64, device=u.device)  # NCCL reduces device tensors
    if dist.get_world_size() > 1:
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    anyone, everyone = float(votes[0]) > 0, -float(votes[1]) > 0
    if anyone != everyone:
        raise UsageError("a parameter of the distributed nonlinear solve requires grad on some ranks but not on "
                         "others; the backward pass is collective: ask for the gradient on every rank or on none")
    if not anyone:
        return u
    info = AdjointContext(residual, spec, len(tensors), system, result)
    return ImplicitSolve.apply(info, u, *tensors, *closed)
