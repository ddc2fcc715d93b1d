"""Distributed Krylov solves with block-Jacobi preconditioning and adjoint gradients.

The Krylov methods are the engine's (:data:`slactl.engine.krylov.METHODS`), run unchanged on a
:class:`~slactl.dist.matrix.DistOperator`. Preconditioning is block Jacobi, i.e. additive Schwarz
without overlap: every rank applies any local preconditioner (``jacobi``, ``ilu0``, ``ic0``,
``amg``, through :func:`~slactl.engine.preconditioners.make_preconditioner`, or ``lu``) built on
its owned diagonal block; no communication. ``BlockJacobi(A, local, overlap=k)`` with ``k >= 1`` is
overlapping additive Schwarz (:mod:`slactl.dist.schwarz`: restricted by default, symmetric with
``restricted=False``).

Gradients follow :mod:`slactl.engine.linear.adjoint`: one autograd Function whose backward runs the
adjoint distributed solve ``A^H lam = g`` (the transposed operator and transposed local
preconditioners between two conjugations: nothing is set up again) and returns ``dL/db = lam`` and
``dL/dA[i, j] = -lam[i] conj(x[j])`` on this rank's local pattern, ``x`` including its ghosts.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from slactl.dist import profile as _profile
from slactl.dist.matrix import DistOperator, DistSparseMatrix
from slactl.engine.krylov import METHODS
from slactl.engine.ops.spmm import sampled_product
from slactl.dist.schwarz import AdditiveSchwarz, local_solver
from slactl.errors import UsageError


class BlockJacobi:
    """Block-Jacobi (non-overlapping additive Schwarz) preconditioner of a :class:`DistSparseMatrix`.

    Parameters
    ----------
    A : DistSparseMatrix
    local : str or Preconditioner class
        The preconditioner of each owned diagonal block: ``"none"``, ``"jacobi"``, ``"ilu0"``,
        ``"ic0"`` or ``"amg"``.
    overlap : int
        0: block Jacobi (no communication). ``>= 1``: overlapping additive Schwarz with that many
        layers of neighbouring rows (:class:`~slactl.dist.schwarz.AdditiveSchwarz`; the local
        solver may then also be ``"lu"``).
    restricted : bool
        With ``overlap >= 1``: restricted additive Schwarz (True, nonsymmetric: GMRES, BiCGStab)
        or symmetric additive Schwarz (False: CG with a symmetric local solver).
    **options
        Keywords of the local preconditioner.

    Examples
    --------
    >>> M = BlockJacobi(A, "ic0")        # doctest: +SKIP
    >>> z = M.apply(r)                   # r: this rank's owned entries
    """

    def __init__(self, A: DistSparseMatrix | None, local: Any = "jacobi", *, overlap: int = 0, restricted: bool = True,
                 _inner: Any = None, **options: Any):
        if int(overlap) < 0:
            raise UsageError(f"overlap must be non-negative, got {overlap}")
        if _inner is not None:
            self.inner = _inner
        elif overlap > 0:
            self.inner = AdditiveSchwarz(A, local, overlap=int(overlap), restricted=restricted, **options)
        else:
            self.inner = local_solver(local, A.owned_block(), **options)
        name = getattr(self.inner, "name", type(self.inner).__name__)
        self.name = name if isinstance(self.inner, AdditiveSchwarz) else f"block-{name}"

    @property
    def symmetric(self) -> bool:
        return bool(getattr(self.inner, "symmetric", False))

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """``M r`` on this rank's owned entries (purely local)."""
        return self.inner.apply(r)

    def transpose(self) -> "BlockJacobi":
        """The block-Jacobi preconditioner of ``A^T`` (each local block transposed)."""
        inner = self.inner.transpose() if hasattr(self.inner, "transpose") else self.inner
        return self if inner is self.inner else BlockJacobi(None, _inner=inner)


def block_jacobi(A: DistSparseMatrix, preconditioner: Any) -> Any:
    """``preconditioner`` as a distributed preconditioner: ``"dist-amg"`` becomes the distributed
    AMG hierarchy (:class:`~slactl.dist.multigrid.DistSmoothedAggregation`), any other name
    :class:`BlockJacobi` with that local preconditioner."""
    if isinstance(preconditioner, str) and preconditioner.lower() == "dist-amg":
        from slactl.dist.multigrid import DistSmoothedAggregation

        return DistSmoothedAggregation(A)
    if preconditioner is None or isinstance(preconditioner, str):
        return BlockJacobi(A, preconditioner or "none")
    if hasattr(preconditioner, "apply"):
        return preconditioner
    raise UsageError(f"preconditioner must be a name or an object with apply(r), got {type(preconditioner).__name__}")


class _DistAdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, b, A, method, M, options, sink, profile):  # type: ignore[override]
        prof = _profile.DistProfile(A.device) if profile else None
        attach = getattr(M, "attach_profile", None) if prof is not None else None
        if prof is not None:
            prof.start()
            if attach is not None:  # the preconditioner's own exchanges (dist-amg) are charged too
                attach(prof)
        try:
            result = METHODS[method](DistOperator(A, profile=prof), b.detach(), preconditioner=M, **options)
        finally:
            if attach is not None:
                attach(None)
        if prof is not None:
            prof.stop()
            result.info["dist_profile"] = prof.summary()
        sink.append(result)
        result.raise_if_failed()
        ctx.A, ctx.method, ctx.M = A, method, M
        ctx.options = {k: v for k, v in options.items() if k not in ("x0", "callback")}
        ctx.save_for_backward(values, result.x)
        return result.x

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        values, x = ctx.saved_tensors
        A = ctx.A
        M = ctx.M.transpose() if hasattr(ctx.M, "transpose") else ctx.M
        complex_ = values.is_complex()
        with torch.no_grad():
            # A^H lam = g; for a complex A solved as A^T conj(lam) = conj(g) (the transposed
            # operator and preconditioners, no new set-up), as the engine's Prepared.adjoint does
            rhs = g.detach().conj_physical() if complex_ else g.detach()
            adjoint = METHODS[ctx.method](DistOperator(A, transpose=True), rhs.contiguous(),
                                          preconditioner=M, **ctx.options)
            adjoint.raise_if_failed()
            lam = adjoint.x.conj_physical() if complex_ else adjoint.x
            grad_values = None
            if ctx.needs_input_grad[0]:
                # x with its ghosts: every rank takes part in this exchange (SPMD), so the gradient
                # of the values must be asked for on all ranks or on none.
                xfull = torch.cat([x, A.plan.start(x).wait()])
                grad_values = -sampled_product(A.local.pattern, lam, xfull.conj(), batched=False)
        return grad_values, lam if ctx.needs_input_grad[1] else None, None, None, None, None, None, None


def solve(
    A: DistSparseMatrix,
    b: torch.Tensor,
    *,
    method: str = "cg",
    preconditioner: Any = "jacobi",
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: torch.Tensor | None = None,
    restart: int | None = None,
    return_result: bool = False,
    callback: Callable[[int, float], Any] | None = None,
    profile: bool | None = None,
) -> Any:
    """Solve ``A x = b`` across ranks; differentiable w.r.t. ``b`` and ``A.values`` (adjoint).

    Every rank calls it with its owned entries of ``b`` and gets its owned entries of ``x``.
    Stopping rule: ``||b - A x|| <= max(rtol * ||b||, atol)`` with global norms.

    Parameters
    ----------
    A : DistSparseMatrix
    b : Tensor
        ``[n_owned]`` or ``[n_owned, k]``.
    method : {"cg", "bicgstab", "gmres", "minres"}
        An engine Krylov method (CG/MINRES need a symmetric positive definite preconditioner).
    preconditioner : {"dist-amg", "none", "jacobi", "ilu0", "ic0", "amg", "sa-amg"} or object with ``apply(r)``
        ``"dist-amg"``: smoothed-aggregation AMG with global coarse levels
        (:class:`~slactl.dist.multigrid.DistSmoothedAggregation`, the choice for CG on large
        elliptic problems); any other name means block Jacobi with that local preconditioner on
        each owned diagonal block.
    rtol, atol, maxiter, x0
        Stopping rule, iteration limit (default ``10 * n`` with the global ``n``, the same on every
        rank) and initial guess (owned entries).
    restart : int, optional
        GMRES restart length.
    return_result : bool
        Return the engine's :class:`~slactl.engine.krylov.result.KrylovResult` (whose ``x`` carries
        the gradient) instead of ``x``.
    profile : bool, optional
        Time the forward solve's phases on this rank (:mod:`slactl.dist.profile`: compute, halo,
        all-reduce; synchronizes at every boundary, so the solve is slower) and put them in
        ``result.info["dist_profile"]``. Default: on when ``SLACTL_DIST_PROFILE=1``.

    Raises
    ------
    ConvergenceError
        On every rank alike (the status comes from global norms) when the tolerance is not met.

    Examples
    --------
    >>> A = DistSparseMatrix.from_store("poisson.parts.zarr")             # doctest: +SKIP
    >>> x = solve(A, torch.ones(A.n_owned, dtype=A.dtype), preconditioner="ic0")  # doctest: +SKIP
    """
    if not isinstance(A, DistSparseMatrix):
        raise UsageError(f"A must be a DistSparseMatrix, got {type(A).__name__}")
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r} for a distributed solve; choose one of {sorted(METHODS)}")
    M = block_jacobi(A, preconditioner)
    options: dict[str, Any] = dict(x0=x0, rtol=rtol, atol=atol, callback=callback,
                                   maxiter=10 * A.shape[0] if maxiter is None else int(maxiter))
    if restart is not None:
        if method != "gmres":
            raise UsageError("restart applies to method='gmres' only")
        options["restart"] = restart
    sink: list = []
    profile = _profile.enabled() if profile is None else bool(profile)
    x = _DistAdjointSolve.apply(A.values, b, A.detach(), method, M, options, sink, profile)
    if return_result:
        result = sink[0]
        result.x = x
        return result
    return x
