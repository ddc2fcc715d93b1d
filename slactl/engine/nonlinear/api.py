"""`slactl.nonlinear_solve`: roots of ``F(u, *params) = 0``, differentiable in the parameters."""

from __future__ import annotations

from typing import Any, Callable

import torch

from slactl.engine.nonlinear.adjoint import AdjointContext, ImplicitSolve, ParamSpec, closed_over_leaves
from slactl.engine.nonlinear.fixed_point import fixed_point
from slactl.engine.nonlinear.jacobian import resolve_pattern
from slactl.engine.nonlinear.newton import System, newton
from slactl.engine.nonlinear.result import NonlinearResult
from slactl.errors import ConvergenceError, ShapeError, UsageError

METHODS = ("newton", "picard", "anderson")
JACOBIANS = ("auto", "sparse", "matrix-free")


def _system(residual: Callable, params: list, u0: torch.Tensor, jacobian: Any, pattern: Any,
            linear: dict[str, Any]) -> System:
    detached = ParamSpec.of(params).detached()

    def fn(u: torch.Tensor) -> torch.Tensor:
        return residual(u, *detached)

    if callable(jacobian) and not isinstance(jacobian, str):
        return System(fn, "callable", jacobian_fn=lambda u: jacobian(u, *detached), linear=linear)
    if jacobian not in JACOBIANS:
        raise UsageError(f"jacobian must be one of {', '.join(JACOBIANS)} or a callable, got {jacobian!r}")
    pat = None if jacobian == "matrix-free" else resolve_pattern(pattern, params, u0.numel())
    if jacobian == "sparse" and pat is None:
        raise UsageError("jacobian='sparse' needs a pattern: pass pattern= (a SparseMatrix or Pattern), or pass "
                         "the residual's sparse matrix in *params so that its pattern can be used")
    if pat is None:
        if isinstance(linear.get("preconditioner"), str) and linear["preconditioner"] not in ("auto", "none"):
            raise UsageError("a named preconditioner needs an assembled Jacobian; pass pattern= or jacobian='sparse'")
        linear = {**linear, "preconditioner": None if isinstance(linear.get("preconditioner"), str) else linear.get("preconditioner")}
        return System(fn, "matrix-free", linear=linear)
    return System(fn, "sparse", pattern=pat.to(u0.device), linear=linear)


def nonlinear_solve(
    residual: Callable[..., torch.Tensor],
    u0: torch.Tensor,
    *params: Any,
    method: str = "newton",
    jacobian: Any = "auto",
    pattern: Any = None,
    rtol: float = 1e-10,
    atol: float = 0.0,
    maxiter: int = 50,
    line_search: bool = True,
    linear_method: str = "auto",
    preconditioner: Any = "auto",
    linear_rtol: float | None = None,
    damping: float = 1.0,
    memory: int = 5,
    return_result: bool = False,
    callback: Callable[[int, float], Any] | None = None,
) -> Any:
    """Solve ``F(u, *params) = 0`` for ``u``, differentiable w.r.t. the parameters.

    Stopping rule: ``||F(u)|| <= max(rtol * ||F(u0)||, atol)`` (2-norm).

    Gradients come from the implicit function theorem, not from unrolling the iteration: the
    backward solves ``J^H lam = g`` once (``J = dF/du`` at the root, never assumed symmetric) and
    returns ``-lam^H dF/dp``. They reach

    * every tensor in ``params``, and the ``values`` of every :class:`SparseMatrix` in ``params``;
    * leaf tensors the residual closes over (found by tracing ``F``'s autograd graph once).

    Prefer passing what you differentiate through ``params``: a closed-over tensor that is not a
    leaf is reached through its own graph, which must still be alive at backward time.

    Parameters
    ----------
    residual : callable
        ``residual(u, *params) -> Tensor [n]``, written with torch operations (SparseMatrix
        products included). It must be twice differentiable in ``u`` for ``jacobian='sparse'``
        and matrix-free Newton (Jacobian-vector products use double backward).
    u0 : Tensor ``[n]``
        Initial guess.
    *params
        Tensors, SparseMatrix objects and constants passed to ``residual``.
    method : {"newton", "picard", "anderson"}
        Picard and Anderson iterate ``G(u) = u - damping * F(u)``: for a fixed-point problem
        ``u = T(u)`` pass ``residual = lambda u: u - T(u)``.
    jacobian : {"auto", "sparse", "matrix-free"} or callable
        Newton's Jacobian. ``"sparse"``: assembled by autograd, one JVP per color of a distance-2
        coloring of ``pattern``, solved with :func:`slactl.solve`. ``"matrix-free"``:
        Newton-Krylov (GMRES on JVPs, Eisenstat-Walker forcing). A callable
        ``jacobian(u, *params) -> SparseMatrix`` supplies it. ``"auto"``: sparse when a pattern is
        known (``pattern=`` or an ``n x n`` SparseMatrix in ``params``), else matrix-free.
    pattern : SparseMatrix or Pattern, optional
        Superset of the Jacobian's structure. Without it, the union of the ``n x n`` SparseMatrix
        parameters' patterns and the diagonal is used; the first assembled Jacobian is checked
        against an exact JVP and :class:`StructureError` is raised if the pattern misses entries.
    rtol, atol, maxiter
        Stopping rule and nonlinear iteration limit.
    line_search : bool
        Backtracking (Armijo) on ``||F||`` for Newton steps.
    linear_method, preconditioner, linear_rtol
        Passed to :func:`slactl.solve` for assembled Jacobians (``method=``, ``preconditioner=``,
        ``rtol=``; default rtol 1e-10). Matrix-free: ``linear_rtol`` fixes the forcing term
        (default: Eisenstat-Walker) and ``preconditioner`` may be a callable or object.
    damping, memory
        Fixed-point step ``G(u) = u - damping F(u)``; Anderson's history length.
    return_result : bool
        Return a :class:`NonlinearResult` (``.u`` differentiable) instead of ``u``.
    callback : callable, optional
        ``callback(iteration, ||F(u)||)`` after each iteration.

    Raises
    ------
    ConvergenceError
        When the stopping rule is not met; ``err.result`` is the partial :class:`NonlinearResult`.

    Examples
    --------
    >>> import torch, slactl
    >>> from slactl.io.gallery import generate
    >>> A = slactl.SparseMatrix.from_scipy(generate("poisson2d", 8).matrix)
    >>> f = torch.ones(64, dtype=torch.float64, requires_grad=True)
    >>> u = slactl.nonlinear_solve(lambda u, A, f: A @ u + u**3 - f, torch.zeros(64, dtype=torch.float64), A, f)
    >>> float((A @ u + u**3 - f).norm()) < 1e-9
    True
    >>> u.sum().backward()            # one transposed linear solve
    >>> f.grad.shape
    torch.Size([64])
    """
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not torch.is_tensor(u0) or u0.dim() != 1:
        raise ShapeError(f"u0 must be a 1-D tensor [n], got {tuple(u0.shape) if torch.is_tensor(u0) else type(u0).__name__}")
    if int(maxiter) < 0:
        raise UsageError(f"maxiter must be non-negative, got {maxiter}")
    params_l = list(params)
    linear = dict(method=linear_method, preconditioner=preconditioner, rtol=linear_rtol)
    system = _system(residual, params_l, u0, jacobian, pattern, linear)
    if method == "newton":
        result = newton(system, u0, rtol=rtol, atol=atol, maxiter=int(maxiter), line_search_on=line_search,
                        callback=callback)
    else:
        result = fixed_point(system.fn, u0, method=method, rtol=rtol, atol=atol, maxiter=int(maxiter),
                             damping=damping, memory=memory, callback=callback)
    if not result.converged:
        raise ConvergenceError(result.message, result=result)
    result.u = _attach_gradients(residual, params_l, system, result)
    return result if return_result else result.u


def _attach_gradients(residual: Callable, params: list, system: System, result: NonlinearResult) -> torch.Tensor:
    """``u*`` as the output of :class:`ImplicitSolve` when anything it depends on requires grad."""
    u = result.u.detach()
    if not torch.is_grad_enabled():
        return u
    spec = ParamSpec.of(params)
    tensors = spec.tensors()
    with torch.enable_grad():
        F = residual(u, *spec.detached())
    closed = closed_over_leaves(F) if torch.is_tensor(F) and F.requires_grad else []
    if not closed and not any(t.requires_grad for t in tensors):
        return u
    info = AdjointContext(residual, spec, len(tensors), system, result)
    return ImplicitSolve.apply(info, u, *tensors, *closed)


__all__ = ["nonlinear_solve"]
