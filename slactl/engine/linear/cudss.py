"""NVIDIA cuDSS through nvmath-python: sparse Cholesky / LDL^T / LU on the GPU.

cuDSS splits a solve into analysis (reordering + symbolic factorization; depends only on the
pattern and is the expensive part), numeric factorization and solve. The analysed solver is cached
on the pattern, so a training loop that changes values but not the pattern re-runs only the
numeric factorization (values copied into the analysed buffer, then ``factorize``). Several prepared factorizations may
share one cached solver: each remembers its values, and the shared solver is re-factorized (never
re-analysed) when a different one last used it.

Hybrid memory (factors larger than the GPU): after the analysis, cuDSS's memory estimate is compared
with the device memory available (free plus what torch's allocator holds unused); where the peak would
not fit, the analysis is redone in cuDSS's hybrid memory mode, which keeps the factors in host memory
and streams parts through the device within a limit (80% of what is available). Setting
``SLACTL_CUDSS_DEVICE_MEMORY_LIMIT`` (bytes, or with a K/M/G[iB] suffix) forces hybrid mode with
that limit. Hybrid solves are slower (host-device traffic) but reach sizes the default mode cannot.

Symmetric matrices need no transposed solve (A^T = A; a complex hermitian one is its own adjoint,
A^H = A). For a nonsymmetric A the adjoint uses cuDSS's transposed solve mode with the forward
factors, verified once per analysed solver; where the installed cuDSS ignores the mode, the adjoint
factorizes A^T once instead (its analysis cached). A complex A's adjoint A^H is that transposed
solve between two conjugations (:meth:`Prepared.adjoint`).
"""

from __future__ import annotations

import glob
import os
import time
from typing import Any

import torch

from slactl.engine.linear.base import DirectPrepared, Prepared, conjugated
from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import Pattern
from slactl.errors import BackendUnavailableError, StructureError, UsageError


def unavailable_reason() -> str | None:
    """None when nvmath-python and the cuDSS library load, else what to install."""
    try:
        import nvmath.sparse.advanced  # noqa: F401
        from nvmath.bindings import cudss  # noqa: F401
    except ImportError as exc:
        return f"nvmath-python with cuDSS is not installed ({exc}): pip install 'slactl[cuda]'"
    try:
        from nvmath.bindings import cudss as _c

        _c.get_property(0)  # loads libcudss
    except Exception as exc:  # noqa: BLE001
        return f"the cuDSS library did not load ({type(exc).__name__}: {exc}); put it on LD_LIBRARY_PATH"
    return None


def _threading_layer() -> str | None:
    """cuDSS's GNU OpenMP threading layer, if installed: multithreaded host reordering."""
    for root in (os.environ.get("SLACTL_CUDSS_MTLAYER_DIR"), *__import__("sys").path):
        if not root:
            continue
        hits = glob.glob(os.path.join(root, "nvidia", "cu1*", "lib", "libcudss_mtlayer_gomp.so*"))
        if hits:
            return hits[0]
    return None


def _make_current(device: torch.device) -> None:
    """cuda.core tracks the current device per thread, and autograd runs backward on its own
    thread: make the solver's device current there before every cuDSS call."""
    try:
        from cuda.core import Device
    except ImportError:  # older cuda-core
        from cuda.core.experimental import Device
    Device(device.index if device.index is not None else torch.cuda.current_device()).set_current()


_ESTIMATES = ("permanent_device_memory", "peak_device_memory", "permanent_host_memory", "peak_host_memory",
              "hybrid_min_device_memory", "hybrid_max_device_memory")


def forced_device_memory_limit() -> int | None:
    """``SLACTL_CUDSS_DEVICE_MEMORY_LIMIT`` in bytes (``"2GiB"``, ``"512M"``, ``"1000000"``), or None."""
    text = os.environ.get("SLACTL_CUDSS_DEVICE_MEMORY_LIMIT", "").strip()
    if not text:
        return None
    units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    number = text.rstrip("bB").rstrip("iI")
    suffix = number[-1].lower() if number and number[-1].isalpha() else ""
    try:
        value = float(number[: len(number) - len(suffix)]) * units[suffix]
    except (KeyError, ValueError):
        raise UsageError(f"SLACTL_CUDSS_DEVICE_MEMORY_LIMIT={text!r}: give bytes, optionally with K, M or G (e.g. 2GiB)") from None
    if value <= 0:
        raise UsageError(f"SLACTL_CUDSS_DEVICE_MEMORY_LIMIT={text!r} must be positive")
    return int(value)


def hybrid_limit_for(peak_device_bytes: int, available_bytes: int) -> int | None:
    """The device memory limit of cuDSS's hybrid mode when the default mode's estimated peak does
    not fit in 90% of the available device memory (None: the default mode fits)."""
    if peak_device_bytes <= 0.9 * available_bytes:
        return None
    return int(0.8 * available_bytes)


def _available_device_memory(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _analysed_solver(pattern: Pattern, values: torch.Tensor, system_type: str) -> "_SharedSolver":
    """The analysed solver, in hybrid memory mode where the factors would not fit the device (or
    where ``SLACTL_CUDSS_DEVICE_MEMORY_LIMIT`` asks for it)."""
    forced = forced_device_memory_limit()
    if forced is not None:
        shared = _SharedSolver(pattern, values, system_type, hybrid_limit=forced)
        least = shared.memory_estimates.get("hybrid_min_device_memory", 0)
        if forced < least:  # cuDSS would fail the factorization with INVALID_VALUE
            shared.free()
            raise UsageError(f"SLACTL_CUDSS_DEVICE_MEMORY_LIMIT={forced} bytes is below the {least} bytes cuDSS's "
                             "hybrid mode needs on the device for this matrix: raise the limit (or unset it)")
        return shared
    shared = _SharedSolver(pattern, values, system_type)
    available = _available_device_memory(values.device)
    limit = hybrid_limit_for(shared.memory_estimates.get("peak_device_memory", 0), available)
    if limit is None:
        return shared
    least = shared.memory_estimates.get("hybrid_min_device_memory", 0)
    if least > limit:
        shared.free()
        raise StructureError(f"cuDSS needs at least {least} bytes of device memory even with the factors in host "
                             f"memory (hybrid mode), {available} are available: free device memory, or use an "
                             "iterative method (method='cg' / 'gmres' with an AMG preconditioner)")
    t = shared.analysis_seconds
    shared.free()
    shared = _SharedSolver(pattern, values, system_type, hybrid_limit=limit)
    shared.analysis_seconds += t  # both analyses were paid
    return shared


class _SharedSolver:
    """One analysed cuDSS solver per (pattern, dtype, system type): the cached analysis."""

    def __init__(self, pattern: Pattern, values: torch.Tensor, system_type: str, hybrid_limit: int | None = None):
        import nvmath.sparse.advanced as nsa

        T = nsa.DirectSolverMatrixType
        if values.is_complex():  # "symmetric" means hermitian for a complex matrix (structure.analyze);
            # cuDSS's SYMMETRIC would read a complex one as A^T = A and solve the wrong system
            kinds = {"spd": T.HPD, "symmetric": T.HERMITIAN, "general": T.GENERAL}
        else:
            kinds = {"spd": T.SPD, "symmetric": T.SYMMETRIC, "general": T.GENERAL}
        options = dict(sparse_system_type=kinds[system_type], blocking=True)
        mtlib = _threading_layer()
        if mtlib is not None:
            options["multithreading_lib"] = mtlib
        self.pattern = pattern
        # cuDSS keeps pointers to its operands: a new buffer would force a new analysis, so values
        # and right-hand sides are copied into these two buffers in place.
        self.values = values.detach().clone()
        self.b = torch.zeros(pattern.shape[0], dtype=values.dtype, device=values.device)
        self.hybrid_limit = hybrid_limit
        execution = None
        if hybrid_limit is not None:
            execution = nsa.ExecutionCUDA(hybrid_memory_mode_options=nsa.HybridMemoryModeOptions(
                hybrid_memory_mode=True, hybrid_device_memory_limit=int(hybrid_limit)))
        t0 = time.perf_counter()
        self.solver = nsa.DirectSolver(pattern.torch_csr(self.values), self.b, options=nsa.DirectSolverOptions(**options),
                                       execution=execution)
        if mtlib is not None:
            self.solver.plan_config.host_nthreads = os.cpu_count() or 1
        self.solver.plan()
        torch.cuda.synchronize(values.device)
        self.analysis_seconds = time.perf_counter() - t0
        try:
            est = self.solver.plan_info.memory_estimates
            self.memory_estimates = {k: int(est[k]) for k in _ESTIMATES if k in est.dtype.names}
        except Exception:  # noqa: BLE001 - an nvmath without the estimates: no automatic hybrid mode
            self.memory_estimates = {}
        self.owner: Any = None  # the prepared factorization whose values are factorized now

    def free(self) -> None:
        """Release cuDSS's resources now (a solver re-analysed in hybrid mode replaces this one)."""
        free = getattr(self.solver, "free", None)
        if free is not None:
            free()

    def factorize_for(self, owner: "CuDSSFactorization") -> float:
        t0 = time.perf_counter()
        _make_current(self.values.device)
        self.values.copy_(owner.A.values)
        info = self.solver.factorize()
        torch.cuda.synchronize(owner.A.device)
        if getattr(info, "info", 0):
            raise StructureError(f"cuDSS factorization failed (info={info.info}): the matrix is singular or, for a Cholesky, not positive definite")
        self.owner = owner
        return time.perf_counter() - t0

    def solve_column(self, owner: "CuDSSFactorization", b: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if self.owner is not owner:
            self.factorize_for(owner)
        _make_current(self.b.device)
        self.b.copy_(b)
        if not transpose:
            return self.solver.solve().clone()  # the solver reuses its output buffer
        self._set_solve_mode(1)  # cuDSS's solve-mode modifier: A^T x = b with the same factors
        try:
            return self.solver.solve().clone()
        finally:
            self._set_solve_mode(0)

    def _set_solve_mode(self, mode: int) -> None:
        import numpy as np
        from nvmath.bindings import cudss

        value = np.array([mode], dtype=np.int32)
        config = self.solver.solution_config._config_ptr
        cudss.config_set(config, cudss.ConfigParam.SOLVE_MODE, value.ctypes.data, value.itemsize)


class CuDSSFactorization(DirectPrepared):
    """A cuDSS factorization of ``A`` (analysis shared through the pattern)."""

    backend = "cudss"

    def __init__(self, A: SparseMatrix, *, structure: Any = None, _shared: Any = None):
        why = unavailable_reason()
        if why is not None:
            raise BackendUnavailableError(why)
        if A.shape[0] != A.shape[1]:
            raise StructureError(f"a direct solve needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
        if structure is not None and structure.spd_evidence == "proven":
            self.system_type = "spd"
        elif structure is not None and structure.symmetric:
            self.system_type = "symmetric"
        else:
            self.system_type = "general"
        super().__init__(A)
        values = self.A.values.contiguous()
        self.A = SparseMatrix.from_pattern(A.pattern, values)
        key = ("cudss", values.dtype, self.system_type, forced_device_memory_limit())
        had = key in A.pattern._cache
        shared = A.pattern.cached(key, lambda: _analysed_solver(A.pattern, values, self.system_type))
        self._shared = shared
        self.hybrid_memory = shared.hybrid_limit is not None  # factors in host memory, streamed
        self.memory_estimates = shared.memory_estimates
        self.analysis_seconds = 0.0 if had else shared.analysis_seconds
        self.factorization_seconds = shared.factorize_for(self)
        self.setup_seconds = self.analysis_seconds + self.factorization_seconds
        self._transpose: CuDSSFactorization | None = None

    def _apply_inverse(self, b: torch.Tensor) -> torch.Tensor:
        return _columns(lambda col: self._shared.solve_column(self, col), b)

    def adjoint(self) -> Prepared:
        if self.system_type != "general":
            return self  # A^H = A (hermitian or real symmetric): no conjugated copy of A to build
        return super().adjoint()

    def transpose(self) -> Prepared:
        if self.system_type != "general":
            # symmetric (complex: hermitian, A^T = conj(A)); adjoint() conjugates this back to self
            return conjugated(self) if self.A.dtype.is_complex else self
        if self._transpose is None:
            self._transpose = _transposed_solver(self)
        return self._transpose


def _columns(solve, b: torch.Tensor) -> torch.Tensor:
    if b.dim() == 1:
        return solve(b)
    return torch.stack([solve(b[:, j]) for j in range(b.shape[1])], dim=1)


class _TransposedCuDSS(DirectPrepared):
    """``A^T x = b`` with the factors of ``A`` (cuDSS's transposed solve mode)."""

    backend = "cudss"

    def __init__(self, forward: CuDSSFactorization):
        super().__init__(forward.A.T, forward.setup_seconds, transposed=True)
        self.forward = forward

    def _apply_inverse(self, b: torch.Tensor) -> torch.Tensor:
        return _columns(lambda col: self.forward._shared.solve_column(self.forward, col, transpose=True), b)

    def transpose(self) -> CuDSSFactorization:
        return self.forward


def _transposed_solver(F: CuDSSFactorization) -> DirectPrepared:
    """The adjoint solver of a nonsymmetric cuDSS factorization.

    The transposed solve mode reuses the forward factors; it is verified once per analysed solver on
    a random right-hand side (cuDSS versions that ignore the mode would solve with A instead), and
    where it fails, A^T is factorized once with its own analysis cached on the transposed pattern.
    """
    shared = F._shared
    if getattr(shared, "transpose_mode_works", None) is None:
        t = _TransposedCuDSS(F)
        g = torch.Generator(device=F.A.device).manual_seed(0)
        b = torch.randn(F.A.shape[0], dtype=F.A.dtype, device=F.A.device, generator=g)
        try:
            x = t._apply_inverse(b)
            r = torch.linalg.vector_norm(b - t.A @ x) / torch.linalg.vector_norm(b)
            shared.transpose_mode_works = bool(r <= 1e3 * torch.finfo(F.A.dtype).eps * max(1, F.A.shape[0]) ** 0.5)
        except Exception:  # noqa: BLE001 - an unsupported mode is a fallback, not a failure
            shared.transpose_mode_works = False
    return _TransposedCuDSS(F) if shared.transpose_mode_works else CuDSSFactorization(F.A.T)
