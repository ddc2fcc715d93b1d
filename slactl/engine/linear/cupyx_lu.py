"""cupyx.scipy.sparse.linalg.splu: the fallback direct solver on CUDA when cuDSS is absent.

CuPy factorizes with SciPy's SuperLU on the host and runs the triangular solves on the GPU
(cuSPARSE), so set-up costs a device-host round trip; the solves stay on the device.
"""

from __future__ import annotations

import time

import torch

from slactl.engine.linear.base import DirectPrepared
from slactl.engine.matrix import SparseMatrix, resolved
from slactl.errors import BackendUnavailableError, StructureError


class CupyxFactorization(DirectPrepared):
    backend = "cupyx"

    def __init__(self, A: SparseMatrix, *, _lu=None, _transposed: bool = False, _seconds: float = 0.0):
        try:
            import cupy as cp
            import cupyx.scipy.sparse as csp
            import cupyx.scipy.sparse.linalg as cspla
        except ImportError as exc:
            raise BackendUnavailableError(f"CuPy is not installed ({exc}): pip install 'slactl[cuda]'") from exc
        self._cp = cp
        t0 = time.perf_counter()
        if _lu is None:
            if A.shape[0] != A.shape[1]:
                raise StructureError(f"a direct solve needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
            csr = csp.csr_matrix(
                (cp.asarray(resolved(A.values)), cp.asarray(A.pattern.col), cp.asarray(A.pattern.crow)),
                shape=A.shape,
            )
            try:
                _lu = cspla.splu(csr.tocsc())
            except RuntimeError as exc:
                raise StructureError(f"the matrix is singular to working precision ({exc})") from exc
            _seconds = time.perf_counter() - t0
        super().__init__(A, _seconds, transposed=_transposed)
        self._lu = _lu

    def _apply_inverse(self, b: torch.Tensor) -> torch.Tensor:
        x = self._lu.solve(self._cp.asarray(resolved(b).contiguous()), trans="T" if self.transposed else "N")
        return torch.as_tensor(x, device=b.device)

    def transpose(self) -> "CupyxFactorization":
        return CupyxFactorization(self.A.T, _lu=self._lu, _transposed=not self.transposed, _seconds=self.setup_seconds)
