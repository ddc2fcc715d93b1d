"""Preconditioners: ``setup(A)`` once, ``apply(r)`` per iteration, ``transpose()`` for the adjoint.

============ ================================================ ============ ===================
name         algorithm                                        symmetric    suits
============ ================================================ ============ ===================
``none``     identity                                         yes          all methods
``jacobi``   inverse diagonal                                 yes          all (CG if diag>0)
``ilu0``     incomplete LU, zero fill (exact ILU(0))          no           GMRES, BiCGStab
``ic0``      incomplete Cholesky, zero fill (exact IC(0))     yes (SPD)    CG, MINRES
``amg``      pyamg smoothed aggregation, torch V-cycle        if A is      CG (SPD A), all
``sa-amg``   smoothed aggregation set up on the device (torch) if A is      CG (SPD A), all
============ ================================================ ============ ===================
"""

from __future__ import annotations

from typing import Any

from slactl.engine.matrix import SparseMatrix
from slactl.engine.preconditioners.amg import AMG
from slactl.engine.preconditioners.base import Identity, Preconditioner
from slactl.engine.preconditioners.incomplete import IC0, ILU0
from slactl.engine.preconditioners.jacobi import Jacobi
from slactl.engine.preconditioners.smoothed_aggregation import SmoothedAggregation
from slactl.errors import UsageError

PRECONDITIONERS: dict[str, type[Preconditioner]] = {
    "none": Identity,
    "jacobi": Jacobi,
    "ilu0": ILU0,
    "ic0": IC0,
    "amg": AMG,
    "sa-amg": SmoothedAggregation,
}


def make_preconditioner(name_or_obj: Any, A: SparseMatrix, **options: Any) -> Any:
    """A set-up preconditioner for ``A``.

    Parameters
    ----------
    name_or_obj : str, Preconditioner class or instance, object with ``apply``, or None
        A name from ``PRECONDITIONERS`` (``"none"``, ``"jacobi"``, ``"ilu0"``, ``"ic0"``,
        ``"amg"``) or a class is built with ``options`` and set up on ``A``; a
        :class:`Preconditioner` instance not yet set up is set up on ``A``; any other object with
        ``apply(r)`` is returned as it is. ``None`` means ``"none"``.
    A : SparseMatrix
    **options
        Keywords of the preconditioner's constructor (``shift=`` for ilu0/ic0, ``smoother=``...).

    Examples
    --------
    >>> import torch, slactl
    >>> A = slactl.SparseMatrix.from_dense(torch.diag(torch.tensor([2.0, 4.0])))
    >>> make_preconditioner("jacobi", A).apply(torch.ones(2))
    tensor([0.5000, 0.2500])
    """
    if name_or_obj is None:
        name_or_obj = "none"
    if isinstance(name_or_obj, str):
        key = name_or_obj.lower()
        if key not in PRECONDITIONERS:
            raise UsageError(f"unknown preconditioner {name_or_obj!r}; choose one of {sorted(PRECONDITIONERS)}")
        return PRECONDITIONERS[key](A, **options)
    if isinstance(name_or_obj, type) and issubclass(name_or_obj, Preconditioner):
        return name_or_obj(A, **options)
    if isinstance(name_or_obj, Preconditioner):
        return name_or_obj if name_or_obj.shape is not None else name_or_obj.setup(A)
    if hasattr(name_or_obj, "apply"):
        return name_or_obj
    raise UsageError(
        f"a preconditioner must be a name, a Preconditioner or an object with apply(r), got "
        f"{type(name_or_obj).__name__}"
    )


__all__ = [
    "Preconditioner",
    "Identity",
    "Jacobi",
    "ILU0",
    "IC0",
    "AMG",
    "SmoothedAggregation",
    "PRECONDITIONERS",
    "make_preconditioner",
]
