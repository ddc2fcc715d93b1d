"""Cheap structural evidence about a matrix, used by auto-dispatch and `slactl info`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slactl.engine.matrix import SparseMatrix


@dataclass(frozen=True)
class Structure:
    """What a solver needs to know about ``A`` (one matrix; a batch reports its worst member).

    For complex matrices ``symmetric`` means hermitian (and SPD hermitian positive definite).

    ``spd_evidence`` is ``"proven"`` (symmetric, positive diagonal, weakly diagonally dominant:
    SPD by Gershgorin when also nonsingular), ``"likely"`` (symmetric with a positive diagonal: CG
    is tried and falls back on indefiniteness) or ``"none"``.
    """

    square: bool
    symmetric: bool
    positive_diagonal: bool
    diagonally_dominant: bool
    spd_evidence: str

    @property
    def spd_likely(self) -> bool:
        return self.spd_evidence in ("proven", "likely")


def analyze(A: SparseMatrix, symmetry_tol: float = 1e-12) -> Structure:
    """Symmetry (complex: hermitian-ness), diagonal sign and diagonal dominance of ``A`` in O(nnz).

    For a complex ``A``, ``symmetric`` means hermitian and ``positive_diagonal`` a real positive
    diagonal: the evidence of hermitian positive definiteness CG and Cholesky need."""
    m, n = A.shape
    if m != n:
        return Structure(False, False, False, False, "none")
    pattern = A.pattern
    had = {"transpose": "transpose" in pattern._cache, "diagonal": "diagonal" in pattern._cache, "row": pattern._row is not None}
    with torch.no_grad():
        diag = A.diagonal()
        if A.dtype.is_complex:
            # Complex: the structure CG and Cholesky need is hermitian (A = A^H) with a real
            # positive diagonal; "symmetric" means hermitian here.
            symmetric = A.is_symmetric(symmetry_tol, conj=True)
            positive = bool(((diag.real > 0) & (diag.imag.abs() <= symmetry_tol * diag.real)).all()) if diag.numel() else False
        else:
            symmetric = A.is_symmetric(symmetry_tol)
            positive = bool((diag > 0).all()) if diag.numel() else False
        off = A.abs().sum(dim=1) - diag.abs()
        dominant = bool((diag.abs() >= off * (1 - 1e-12)).all()) if diag.numel() else False
    if symmetric:
        # The tests may cache the diagonal positions, the COO rows and, where the symmetry test
        # falls back to forming the transpose (a pattern not structurally symmetric), the
        # transposed pattern with its permutations: ~100 bytes per unknown on a 5-point stencil. A symmetric
        # matrix is its own transpose and the solvers rebuild the rest on demand, so they are
        # dropped unless they were there before: an auto-dispatched sa-amg solve of 2D Poisson at
        # 1M DOF peaked at 393 B/DOF with them, 273 without (issue 7, H200).
        for key in ("transpose", "diagonal"):
            if not had[key]:
                pattern._cache.pop(key, None)
        if not had["row"]:
            pattern._row = None
    evidence = "none"
    if symmetric and positive:
        evidence = "proven" if dominant else "likely"
    return Structure(True, symmetric, positive, dominant, evidence)
