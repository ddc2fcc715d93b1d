"""Auto-dispatch: pick backend, method and preconditioner from device, dtype, size, structure and
what is installed, and say why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from slactl.engine.linear.backends import BACKENDS, get_backend
from slactl.engine.linear.structure import Structure
from slactl.errors import BackendUnavailableError, UsageError

# Below this many rows a sparse direct solve beats any iterative method on the CPU (fill stays
# small and there is no tolerance to meet).
CPU_DIRECT_MAX_ROWS = 50_000
# Nonsymmetric CPU problems go to SuperLU up to this size (robust); above it, GMRES + ILU(0).
CPU_NONSYMMETRIC_DIRECT_MAX_ROWS = 400_000
KRYLOV_METHODS = ("cg", "bicgstab", "gmres", "minres")


@dataclass
class Choice:
    backend: str
    method: str
    preconditioner: Any
    reasons: list[str] = field(default_factory=list)

    def explain(self) -> str:
        pre = self.preconditioner if isinstance(self.preconditioner, str) else type(self.preconditioner).__name__
        lines = [f"chose backend={self.backend} method={self.method} preconditioner={pre}"]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def _spd_preconditioner(n: int, reasons: list[str], device: str = "cpu", dtype: torch.dtype | None = None) -> str:
    if dtype is not None and dtype.is_complex:
        # the AMG hierarchies and IC(0) take real matrices; Jacobi on a real positive diagonal
        # is hermitian positive definite, as CG needs
        reasons.append("complex hermitian with a positive diagonal: CG with Jacobi (sa-amg and IC(0) take real matrices)")
        return "jacobi"
    # Measured (benchmarks/RESULTS.md, 2D Poisson, 1M unknowns, rtol 1e-8): CG + sa-amg takes
    # ~0.07 s on an H100 (pyamg set-up + the same cycle 2.7 s, Jacobi-CG 0.5 s) and 1.7 s on the
    # 2-core CPU (pyamg SA-CG 2.8 s, CG + the pyamg hierarchy 3.1 s).
    reasons.append("SPD evidence: CG with smoothed-aggregation AMG set up by torch on the matrix's device (sa-amg)")
    return "sa-amg"


def _first_available_direct(device: str, reasons: list[str]) -> str | None:
    order = ["superlu"] if device == "cpu" else ["cudss", "cupyx"]
    for name in order:
        ok, why = BACKENDS[name].availability()
        if ok:
            return name
        reasons.append(f"{name} unavailable: {why}")
    return None


def select(n: int, device: torch.device, dtype: torch.dtype, structure: Structure | None, *,
           method: str = "auto", backend: str = "auto", preconditioner: Any = "auto") -> Choice:
    """Choose what solves ``A x = b``; ``Choice.reasons`` records each decision."""
    reasons: list[str] = []
    dev = device.type
    if method not in ("auto", "direct") + KRYLOV_METHODS:
        raise UsageError(f"unknown method {method!r}; choose auto, direct, {', '.join(KRYLOV_METHODS)}")
    named = _named_preconditioner(preconditioner)
    if named and (method == "direct" or (backend != "auto" and get_backend(backend).kind == "direct")):
        raise UsageError(
            f"a preconditioner ({named}) serves iterative methods, and this solve is direct; drop the "
            "preconditioner or choose an iterative method (cg, gmres, bicgstab, minres)"
        )
    if named and method == "auto" and backend == "auto":
        # a preconditioner asked for means an iterative solve, whatever the size
        reasons.append(f"preconditioner {named} requested: an iterative method")
        m = _krylov_for(structure, reasons)
        return Choice("torch", m, _preconditioner_for(m, structure, preconditioner, n, reasons, dev, dtype), reasons)
    if backend != "auto":
        b = get_backend(backend)
        if dev not in b.devices:
            raise BackendUnavailableError(f"backend {backend!r} runs on {', '.join(b.devices)}, but A is on {dev}; move A with A.to(...) or pick another backend")
        b.require()
        if method == "auto":
            method = "direct" if b.kind == "direct" else _krylov_for(structure, reasons)
        elif method not in b.methods:
            raise UsageError(f"backend {backend!r} offers methods {', '.join(b.methods)}, not {method!r}")
        reasons.append(f"backend {backend} requested")
        pre = _preconditioner_for(method, structure, preconditioner, n, reasons, dev, dtype)
        return Choice(backend, method, pre, reasons)

    if method in KRYLOV_METHODS:
        reasons.append(f"method {method} requested: slactl's Krylov methods on torch")
        return Choice("torch", method, _preconditioner_for(method, structure, preconditioner, n, reasons, dev, dtype), reasons)

    if method == "direct":
        name = _first_available_direct(dev, reasons)
        if name is None:
            raise BackendUnavailableError(
                "no direct solver is available on this device: " + "; ".join(reasons)
                + ". Install nvmath-python with cuDSS (pip install 'slactl[cuda]') or use an iterative method"
            )
        reasons.append(f"direct solve requested: {name}")
        return Choice(name, "direct", "none", reasons)

    # ---- auto
    symmetric = structure is not None and structure.symmetric
    spd = structure is not None and structure.spd_likely
    if dev == "cpu":
        if n <= CPU_DIRECT_MAX_ROWS:
            reasons.append(f"n = {n} <= {CPU_DIRECT_MAX_ROWS}: a sparse LU is fastest and needs no tolerance")
            return Choice("superlu", "direct", "none", reasons)
        if spd:
            reasons.append(f"n = {n} is large and A is symmetric with a positive diagonal ({structure.spd_evidence} SPD)")
            return Choice("torch", "cg", _preconditioner_for("cg", structure, preconditioner, n, reasons, dev, dtype), reasons)
        if n <= CPU_NONSYMMETRIC_DIRECT_MAX_ROWS:
            reasons.append(f"{'symmetric indefinite' if symmetric else 'nonsymmetric'} and n = {n} <= {CPU_NONSYMMETRIC_DIRECT_MAX_ROWS}: SuperLU is the robust choice")
            return Choice("superlu", "direct", "none", reasons)
        m = "minres" if symmetric else "gmres"
        reasons.append(f"{'symmetric indefinite' if symmetric else 'nonsymmetric'} and large: {m}")
        return Choice("torch", m, _preconditioner_for(m, structure, preconditioner, n, reasons, dev, dtype), reasons)

    # CUDA
    if spd:
        reasons.append(f"A is on {dev} and symmetric with a positive diagonal ({structure.spd_evidence} SPD): CG keeps everything on the device")
        return Choice("torch", "cg", _preconditioner_for("cg", structure, preconditioner, n, reasons, dev, dtype), reasons)
    name = _first_available_direct(dev, reasons)
    if name is not None:
        reasons.append(f"{'symmetric indefinite' if symmetric else 'nonsymmetric'} on {dev}: direct solve with {name}")
        return Choice(name, "direct", "none", reasons)
    m = "minres" if symmetric else "gmres"
    reasons.append(f"no GPU direct solver: {m}")
    return Choice("torch", m, _preconditioner_for(m, structure, preconditioner, n, reasons, dev, dtype), reasons)


def _named_preconditioner(preconditioner: Any) -> str | None:
    """The preconditioner the caller asked for, or None for "auto" / "none" / None; an unknown
    name is refused here, before any set-up."""
    if preconditioner is None:
        return None
    if not isinstance(preconditioner, str):
        return type(preconditioner).__name__
    key = preconditioner.lower()
    if key in ("auto", "none"):
        return None
    from slactl.engine.preconditioners import PRECONDITIONERS

    if key not in PRECONDITIONERS:
        raise UsageError(f"unknown preconditioner {preconditioner!r}; choose one of auto, {', '.join(sorted(PRECONDITIONERS))}")
    return key


def _krylov_for(structure: Structure | None, reasons: list[str]) -> str:
    if structure is not None and structure.spd_likely:
        reasons.append("SPD evidence: cg")
        return "cg"
    if structure is not None and structure.symmetric:
        reasons.append("symmetric, not known to be definite: minres")
        return "minres"
    reasons.append("nonsymmetric: gmres")
    return "gmres"


def _preconditioner_for(method: str, structure: Structure | None, requested: Any, n: int, reasons: list[str],
                        device: str = "cpu", dtype: torch.dtype | None = None) -> Any:
    if method == "direct":
        return "none"
    if not (isinstance(requested, str) and requested == "auto"):
        reasons.append(f"preconditioner {requested if isinstance(requested, str) else type(requested).__name__} requested")
        return requested
    if method == "cg" and structure is not None and structure.spd_likely:
        return _spd_preconditioner(n, reasons, device, dtype)
    if method in ("cg", "minres"):
        # MINRES serves indefinite matrices, where AMG or IC(0) need not be positive definite;
        # Jacobi on a positive diagonal always is.
        if structure is not None and structure.positive_diagonal:
            reasons.append(f"{method}: Jacobi (SPD because the diagonal is positive)")
            return "jacobi"
        reasons.append(f"{method} needs an SPD preconditioner and the diagonal is not positive: none")
        return "none"
    if device != "cpu":
        reasons.append("nonsymmetric Krylov method on the GPU: Jacobi (torch's CUDA triangular solves make ILU(0) slow)")
        return "jacobi"
    reasons.append("nonsymmetric Krylov method: ILU(0)")
    return "ilu0"
