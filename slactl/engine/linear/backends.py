"""The backend registry: what each backend can do, whether it is available here, and why not.

Availability is probed lazily (importing CuPy or nvmath-python is slow) and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from slactl.engine.linear.base import Prepared
from slactl.engine.matrix import SparseMatrix
from slactl.errors import BackendUnavailableError


@dataclass(frozen=True)
class Backend:
    """One way to solve: capabilities, an availability probe and a constructor of prepared solvers."""

    name: str
    kind: str  # "direct" or "iterative"
    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    methods: tuple[str, ...]
    description: str
    probe: Callable[[], str | None] = field(repr=False, compare=False)  # None when available
    build: Callable[..., Prepared] = field(repr=False, compare=False)
    batched: str = "block-diagonal assembly"
    transpose_solve: str = "same factorization"

    def availability(self) -> tuple[bool, str]:
        reason = _probe(self.name, self.probe)
        return reason is None, reason or "available"

    def require(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailableError(f"backend {self.name!r} is unavailable: {reason}")


@functools.lru_cache(maxsize=None)
def _probe_cached(name: str, probe: Callable[[], str | None]) -> str | None:
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - a broken optional install is "unavailable", with why
        return f"{type(exc).__name__}: {exc}"


def _probe(name: str, probe: Callable[[], str | None]) -> str | None:
    return _probe_cached(name, probe)


# ------------------------------------------------------------------------------------- probes
def _no_cuda() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    return None


def _probe_cudss() -> str | None:
    from slactl.engine.linear import cudss

    return _no_cuda() or cudss.unavailable_reason()


def _probe_cupyx() -> str | None:
    if (why := _no_cuda()) is not None:
        return why
    try:
        import cupyx.scipy.sparse.linalg  # noqa: F401
    except ImportError:
        return "CuPy is not installed: pip install 'slactl[cuda]' (cupy-cuda12x)"
    return None


# ----------------------------------------------------------------------------------- builders
def _build_superlu(A: SparseMatrix, method: str, preconditioner: Any, structure: Any, **_: Any) -> Prepared:
    from slactl.engine.linear.superlu import SuperLUFactorization

    return SuperLUFactorization(A, symmetric_mode=bool(structure is not None and structure.symmetric and structure.positive_diagonal))


def _build_cudss(A: SparseMatrix, method: str, preconditioner: Any, structure: Any, **_: Any) -> Prepared:
    from slactl.engine.linear.cudss import CuDSSFactorization

    return CuDSSFactorization(A, structure=structure)


def _build_cupyx(A: SparseMatrix, method: str, preconditioner: Any, structure: Any, **_: Any) -> Prepared:
    from slactl.engine.linear.cupyx_lu import CupyxFactorization

    return CupyxFactorization(A)


def _build_krylov(A: SparseMatrix, method: str, preconditioner: Any, structure: Any, **kw: Any) -> Prepared:
    from slactl.engine.linear.iterative import KrylovPrepared

    options = {}
    if preconditioner in ("amg", "sa-amg") and structure is not None:
        options["symmetry"] = "symmetric" if structure.symmetric else "nonsymmetric"
    return KrylovPrepared(A, method, preconditioner, restart=kw.get("restart"), preconditioner_options=options)


_FLOATS = (torch.float32, torch.float64)
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in [
        Backend("superlu", "direct", ("cpu",), _FLOATS + (torch.complex64, torch.complex128), ("direct",),
                "SciPy SuperLU sparse LU with partial pivoting (CPU)", lambda: None, _build_superlu),
        Backend("cudss", "direct", ("cuda",), _FLOATS, ("direct",),
                "NVIDIA cuDSS through nvmath-python: Cholesky (SPD), LDL^T (symmetric), LU; analysis reused across values-only changes",
                _probe_cudss, _build_cudss,
                transpose_solve="same factorization (symmetric); A^T factorized once, its analysis cached (nonsymmetric: cuDSS 0.8 has no transposed solve)"),
        Backend("cupyx", "direct", ("cuda",), _FLOATS, ("direct",),
                "cupyx.scipy.sparse.linalg.splu: SuperLU factorization on the host, triangular solves on the GPU (fallback when cuDSS is absent)",
                _probe_cupyx, _build_cupyx),
        Backend("torch", "iterative", ("cpu", "cuda"), _FLOATS + (torch.complex64, torch.complex128),
                ("cg", "bicgstab", "gmres", "minres"),
                "slactl's Krylov methods on torch tensors with Jacobi, ILU(0), IC(0) or AMG preconditioning",
                lambda: None, _build_krylov, transpose_solve="transposed operator and preconditioner"),
    ]
}


def get_backend(name: str) -> Backend:
    from slactl.errors import UsageError

    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} (`slactl backends` lists them)")
    return BACKENDS[name]


def backend_table() -> list[dict[str, Any]]:
    """One row per backend, for `slactl backends`."""
    rows = []
    for b in BACKENDS.values():
        ok, reason = b.availability()
        rows.append(dict(name=b.name, kind=b.kind, devices=",".join(b.devices), methods=",".join(b.methods),
                         dtypes=",".join(str(d).replace("torch.", "") for d in b.dtypes), batched=b.batched,
                         transpose=b.transpose_solve, available=ok, reason=reason, description=b.description))
    return rows
