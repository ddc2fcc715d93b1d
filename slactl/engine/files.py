"""`read_matrix` / `write_matrix`: files <-> :class:`SparseMatrix`, and what a file's matrix looks like.

The formats live in :mod:`slactl.io` (plain arrays); this module only bridges them to torch and
computes the properties ``slactl info`` reports (symmetry, diagonal dominance, evidence of
positive definiteness, memory). It never imports zarr itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from slactl.engine.matrix import SparseMatrix
from slactl.errors import UsageError
from slactl.io import MatrixData, detect_symmetry, has_symmetry
from slactl.io import read as _read
from slactl.io import write as _write


def to_sparse_matrix(data: MatrixData, *, dtype: torch.dtype | None = None, device: Any = None) -> SparseMatrix:
    """The :class:`SparseMatrix` of ``data``: integer and pattern values become float64."""
    csr = data.csr
    if dtype is None and csr.dtype.kind in "iub":
        dtype = torch.float64
    return SparseMatrix.from_scipy(csr, dtype=dtype, device=device)


def read_matrix(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: Any = None,
    allow_nonfinite: bool = False,
) -> SparseMatrix:
    """Read a sparse matrix from ``.mtx``, ``.mtx.gz``, ``.zarr`` or ``.npz``.

    Parameters
    ----------
    path : path-like
        The format is chosen from the suffix.
    dtype : torch.dtype, optional
        Value dtype; default keeps the file's (float32/float64/complex), integer and pattern
        matrices become float64.
    device : torch device, optional
        Where to put the matrix (default CPU).
    allow_nonfinite : bool
        Accept NaN/Inf values (refused by default: they poison every solver silently).

    Returns
    -------
    SparseMatrix
        The full matrix (symmetric files are expanded; duplicate entries summed).

    Raises
    ------
    FormatError
        Missing, malformed, foreign or damaged file; the message names the file and line.

    Examples
    --------
    >>> import slactl
    >>> A = slactl.read_matrix("datasets/poisson2d_32.mtx")   # doctest: +SKIP
    >>> A.shape
    (1024, 1024)
    """
    return to_sparse_matrix(_read(path, allow_nonfinite=allow_nonfinite), dtype=dtype, device=device)


def _as_scipy(A: Any) -> sp.csr_array:
    if isinstance(A, SparseMatrix):
        if A.is_batched:
            raise UsageError("write_matrix needs an unbatched matrix; write A[i] for each batch member")
        if A.dtype in (torch.float16, torch.bfloat16):
            A = A.to(dtype=torch.float32)
        return sp.csr_array(A.detach().to_scipy())
    if sp.issparse(A):
        return sp.csr_array(A)
    raise UsageError(f"write_matrix expects a SparseMatrix or a scipy.sparse matrix, got {type(A).__name__}")


def write_matrix(
    A: Any,
    path: str | os.PathLike,
    *,
    force: bool = False,
    symmetry: str | None = None,
    source: str | None = None,
) -> Path:
    """Write ``A`` to ``path`` (format from the suffix), atomically.

    Parameters
    ----------
    A : SparseMatrix or scipy.sparse matrix
        Values are detached from autograd.
    force : bool
        Replace an existing file or store; otherwise :class:`~slactl.errors.StoreExistsError`.
    symmetry : str, optional
        Declared symmetry; by default the exact symmetry of ``A`` is detected (a symmetric
        Matrix Market file stores only the lower triangle).
    source : str, optional
        Provenance kept in the file's metadata.

    Examples
    --------
    >>> slactl.write_matrix(A, "A.zarr")   # doctest: +SKIP
    """
    csr = _as_scipy(A)
    csr.sum_duplicates()
    field = "complex" if csr.dtype.kind == "c" else "integer" if csr.dtype.kind in "iu" else "real"
    if symmetry is None:
        symmetry = detect_symmetry(csr, field)
    return _write(MatrixData(csr, field, symmetry, source=source), path, force=force)


# ----------------------------------------------------------------------------- properties
def _dominance(csr: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    """(|a_ii|, sum_{j != i} |a_ij|) per row."""
    diag = np.abs(csr.diagonal()) if csr.shape[0] == csr.shape[1] else np.zeros(csr.shape[0])
    rowsum = np.asarray(abs(csr).sum(axis=1)).ravel()
    return diag, rowsum - diag


def _lanczos_min(csr: sp.csr_array, steps: int, seed: int) -> float:
    """Smallest Ritz value after ``steps`` Lanczos steps (full reorthogonalization).

    Ritz values lie in [lambda_min, lambda_max], so a negative one proves A is not positive
    definite; a positive one is only evidence.
    """
    n = csr.shape[0]
    rng = np.random.default_rng(seed)
    dtype = np.result_type(csr.dtype, np.float64)
    q = rng.standard_normal(n).astype(dtype)
    q /= np.linalg.norm(q)
    basis, alphas, betas = [q], [], []
    for _ in range(min(steps, n)):
        w = csr @ basis[-1]
        alphas.append(float(np.real(np.vdot(basis[-1], w))))
        for v in basis:  # full reorthogonalization: k <= a few dozen vectors
            w = w - np.vdot(v, w) * v
        beta = float(np.linalg.norm(w))
        if beta <= 1e-12 * max(1.0, abs(alphas[-1])):
            break  # invariant subspace: the Ritz values are eigenvalues
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    t = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    return float(np.linalg.eigvalsh(t)[0])


def _components_all_strict(csr: sp.csr_array, strict: np.ndarray) -> bool:
    """Every connected block has a strictly dominant row (irreducible diagonal dominance per block)."""
    from scipy.sparse.csgraph import connected_components

    ncomp, labels = connected_components(csr, directed=False)
    return bool((np.bincount(labels[strict], minlength=ncomp) > 0).all())


def spd_evidence(csr: sp.csr_array, *, lanczos_steps: int = 30, seed: int = 0) -> dict:
    """Whether ``csr`` is symmetric (hermitian) positive definite, and why we think so.

    Returns ``{"verdict": "yes" | "no" | "likely", "reason": str}``. "yes" is a proof (Gershgorin
    or irreducible diagonal dominance with a positive diagonal); "no" is a proof (a structural
    defect, or a negative Ritz value); "likely" means a few Lanczos steps found no negative
    eigenvalue.
    """
    m, n = csr.shape
    if m != n or m == 0:
        return {"verdict": "no", "reason": "not square" if m != n else "empty"}
    kind = "hermitian" if csr.dtype.kind == "c" else "symmetric"
    if not has_symmetry(csr, kind):
        return {"verdict": "no", "reason": f"not {kind}"}
    d = np.real(csr.diagonal())
    if (d <= 0).any():
        i = int(np.flatnonzero(d <= 0)[0])
        return {"verdict": "no", "reason": f"diagonal entry a[{i},{i}] = {d[i]:.3g} is not positive"}
    diag, off = _dominance(csr)
    strict, weak = diag > off, diag >= off
    if strict.all():
        return {"verdict": "yes", "reason": "Gershgorin: positive diagonal, strictly diagonally dominant"}
    if weak.all() and _components_all_strict(csr, strict):
        return {"verdict": "yes", "reason": "irreducibly diagonally dominant with positive diagonal"}
    theta = _lanczos_min(csr.astype(np.result_type(csr.dtype, np.float64)), lanczos_steps, seed)
    scale = float(np.max(diag + off))
    if theta < -1e-10 * scale:
        return {"verdict": "no", "reason": f"Lanczos found a negative Ritz value {theta:.3g} (so lambda_min < 0)"}
    return {
        "verdict": "likely",
        "reason": f"no negative eigenvalue in {lanczos_steps} Lanczos steps (smallest Ritz value {theta:.3g}); not a proof",
    }


def memory_estimates(shape: tuple[int, int], nnz: int) -> dict:
    """Bytes for CSR in float64/float32 (index width as the engine chooses it) and dense float64."""
    m, n = shape
    idx = 4 if max(m + 1, n, nnz) <= np.iinfo(np.int32).max else 8
    pattern = (m + 1) * idx + nnz * idx
    return {"csr_float64": pattern + 8 * nnz, "csr_float32": pattern + 4 * nnz, "dense_float64": 8 * m * n}


def matrix_properties(data: MatrixData, *, lanczos_steps: int = 30) -> dict:
    """What ``slactl info`` reports about a matrix, as a JSON-ready dict."""
    csr = data.csr
    m, n = data.shape
    diag, off = _dominance(csr) if csr.nnz else (np.zeros(m), np.zeros(m))
    dominant = float((diag >= off).mean()) if m else 1.0
    kind = "hermitian" if csr.dtype.kind == "c" else "symmetric"
    return {
        "shape": [m, n],
        "nnz": data.nnz,
        "density": data.nnz / (m * n) if m * n else 0.0,
        "field": data.field,
        "dtype": str(csr.dtype),
        "declared_symmetry": data.symmetry,
        f"numerically_{kind}": has_symmetry(csr, kind),
        "zero_diagonal_entries": int((csr.diagonal() == 0).sum()) if m == n else None,
        "diagonal_dominance": "strict" if (diag > off).all() else "weak" if dominant == 1.0 else "no",
        "diagonally_dominant_rows": dominant,
        "spd": spd_evidence(csr, lanczos_steps=lanczos_steps),
        "memory_bytes": memory_estimates((m, n), data.nnz),
    }
