"""What the eigensolvers return, and the detection of (near-)degenerate eigenvalues."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# Two eigenvalues whose distance is below this times the spectral scale are treated as one
# (degenerate) cluster: their eigenvectors are not individually defined.
GAP_RTOL = 1e-8


class DegenerateEigenvaluesWarning(UserWarning):
    """Eigenvalues closer than the degeneracy threshold: eigenvectors (and the gradients of single
    eigenvalues or eigenvectors) inside such a cluster are not uniquely defined."""


def find_clusters(values: torch.Tensor, scale: float, gap_rtol: float = GAP_RTOL) -> list[tuple[int, ...]]:
    """Groups (of size >= 2) of indices into ``values`` whose sorted neighbours are within
    ``gap_rtol * scale`` of each other. ``values`` is real, any order."""
    vals = values.detach().cpu().double()
    if vals.numel() < 2:
        return []
    order = torch.argsort(vals).tolist()
    thr = gap_rtol * max(scale, torch.finfo(torch.float64).tiny)
    clusters: list[tuple[int, ...]] = []
    current = [order[0]]
    for a, b in zip(order[:-1], order[1:]):
        if float(vals[b] - vals[a]) <= thr:
            current.append(b)
        else:
            if len(current) > 1:
                clusters.append(tuple(sorted(current)))
            current = [b]
    if len(current) > 1:
        clusters.append(tuple(sorted(current)))
    return clusters


@dataclass
class EigenResult:
    """The outcome of :func:`slactl.eigsh` / :func:`slactl.eigs` / :func:`slactl.svds`.

    Attributes
    ----------
    eigenvalues : Tensor ``[k]``
        (Singular values for ``svds``.) Carries gradients like the plain return value.
    eigenvectors : Tensor ``[n, k]``
        (Right singular vectors ``V`` for ``svds``; ``left_vectors`` holds ``U``.)
    residual_norms : Tensor ``[k]``
        ``||A v_i - lambda_i v_i||`` recomputed from the returned pairs (for ``svds``:
        ``sqrt(||A v - s u||^2 + ||A^T u - s v||^2)``).
    tolerance : Tensor ``[k]``
        The threshold each residual had to meet.
    converged : bool
    method : str
        ``"lobpcg"``, ``"arpack"``, ``"arpack-shift-invert"`` or ``"dense"``.
    which : str
    sigma : float or None
    iterations : int
        Outer iterations (LOBPCG), Arnoldi restarts are not reported by SciPy (``-1``), 0 for dense.
    preconditioner : str
    clusters : list of tuple of int
        Groups of returned eigenvalues closer than ``gap_rtol`` times the spectral scale.
    next_eigenvalue : float or None
        The eigenvalue (estimate) just beyond the returned ones in the order of ``which``, when the
        solver computed one.
    gap : float or None
        Relative gap ``|lambda_k - next| / scale`` between the last returned eigenvalue and
        ``next_eigenvalue``; below ``gap_rtol`` the last cluster crosses the boundary of the
        returned set and its eigenvectors are not unique.
    history : Tensor or None
        Residual norms per iteration (LOBPCG).
    timings : dict
    info : dict
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residual_norms: torch.Tensor
    tolerance: torch.Tensor
    converged: bool
    method: str
    which: str
    sigma: float | None = None
    iterations: int = 0
    preconditioner: str = "none"
    clusters: list = field(default_factory=list)
    next_eigenvalue: Any = None
    gap: float | None = None
    history: torch.Tensor | None = None
    left_vectors: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def degenerate(self) -> bool:
        """True when some returned eigenvalues form a cluster or the last one touches the next."""
        return bool(self.clusters) or (self.gap is not None and self.gap < GAP_RTOL)

    @property
    def message(self) -> str:
        worst = float((self.residual_norms / self.tolerance.clamp_min(torch.finfo(self.tolerance.dtype).tiny)).max()) if self.residual_norms.numel() else 0.0
        state = "converged" if self.converged else "did not converge"
        # ARPACK does not report its restart count: iterations is -1 there.
        after = f" after {self.iterations} iterations" if self.iterations >= 0 else ""
        return (
            f"{self.method} ({self.which}{'' if self.sigma is None else f', sigma={self.sigma:g}'}, preconditioner "
            f"{self.preconditioner}) {state}{after}: worst residual / tolerance "
            f"= {worst:.3g}. Raise maxiter, loosen tol, use a preconditioner (amg) or shift-invert (sigma)."
        )

    def summary(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {
            "method": self.method, "which": self.which, "sigma": self.sigma, "iterations": self.iterations,
            "preconditioner": self.preconditioner, "converged": self.converged,
            "eigenvalues": [v if isinstance(v, float) else str(v) for v in self.eigenvalues.detach().cpu().tolist()],
            "residual_norms": self.residual_norms.detach().cpu().tolist(),
            "clusters": [list(c) for c in self.clusters],
            "next_eigenvalue": None if self.next_eigenvalue is None else (
                str(self.next_eigenvalue) if isinstance(self.next_eigenvalue, complex) else float(self.next_eigenvalue)),
            "gap": self.gap, "timings": self.timings,
        }

    def __repr__(self) -> str:
        return (f"EigenResult(method={self.method!r}, which={self.which!r}, k={self.eigenvalues.numel()}, "
                f"converged={self.converged}, iterations={self.iterations}, clusters={self.clusters})")
