"""Clocks, memory meters, the independent residual check and the bandwidth model of `slactl bench`.

Stated once, here, and printed with every result:

* **time**: wall clock read after ``torch.cuda.synchronize()`` on CUDA (the whole device, so CuPy
  work on its own stream is included), ``time.perf_counter()`` on the host;
* **peak memory** (:data:`MEMORY_MODELS`): what each basis counts;
* **bandwidth** (:data:`BANDWIDTH_MODEL`): bytes the textbook, unfused CG iteration moves, times the
  iterations, over the solve time;
* **true relative residual**: ``||b - A x|| / ||b||`` recomputed by SciPy on the host in float64
  from the returned ``x``, whatever the solver reported.
"""

from __future__ import annotations

import ctypes
import gc
import time

import numpy as np
import scipy.sparse as sp
import torch

MEMORY_MODELS = {
    "cuda": ("torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus memory_allocated() "
             "before the run's fresh device copy of the matrix was made, plus b: it counts the matrix (CSR values, "
             "column indices, row offsets), every buffer the solver allocates through torch's caching allocator "
             "(CuPy peers are routed through it) and x; not the CUDA context, nor memory a library allocates "
             "outside torch's allocator"),
    "host": ("peak resident set size during the run (VmHWM, reset through /proc/self/clear_refs after "
             "malloc_trim) minus the resident size before it, plus the matrix (CSR arrays) and b, resident "
             "before the run; freed heap the allocator reuses is not seen, so this is a lower bound (and every run "
             "starts with the heap trimmed, its page faults in its time)"),
}
BANDWIDTH_MODEL = (
    "bytes per CG iteration = SpMV (nnz (value + index bytes) + (n + 1) index bytes + 2 n value bytes: "
    "matrix, x read once, y written once) + vector work of the unfused textbook iteration (2 dots and "
    "3 axpys: 12 n values; Jacobi adds z = D^-1 r and reads z in the dot: 16 n values); achieved GB/s = "
    "bytes per iteration x iterations / solve time. Only for CG with no or Jacobi preconditioning; "
    "AMG, direct and other methods get no figure"
)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def clock(device: str) -> float:
    """Seconds, after every queued kernel on the device has finished."""
    synchronize(device)
    return time.perf_counter()


def relative_residual(a: sp.csr_array, x: np.ndarray, b: np.ndarray) -> float:
    """``||b - A x|| / ||b||`` in float64 on the host (SciPy), independent of the solver."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    bn = float(np.linalg.norm(b))
    return float(np.linalg.norm(b - a @ x) / (bn if bn > 0 else 1.0))


def to_host(x) -> np.ndarray:
    """A solution from torch, CuPy or NumPy as a float64 NumPy array."""
    if torch.is_tensor(x):
        return x.detach().to("cpu", torch.float64).numpy()
    if hasattr(x, "get") and not isinstance(x, np.ndarray):  # a CuPy array
        return np.asarray(x.get(), dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def cg_bytes_per_iteration(n: int, nnz: int, value_bytes: int, index_bytes: int, preconditioner: str) -> int | None:
    """Bytes one unfused CG iteration moves (see :data:`BANDWIDTH_MODEL`); None outside the model."""
    if preconditioner not in ("none", "jacobi"):
        return None
    spmv = nnz * (value_bytes + index_bytes) + (n + 1) * index_bytes + 2 * n * value_bytes
    vectors = (12 if preconditioner == "none" else 16) * n * value_bytes
    return spmv + vectors


# ------------------------------------------------------------------------------------ memory
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryMeter:
    """Peak bytes allocated during a run, on the CUDA allocator or as host resident memory.

    ``start()`` before the run (before its fresh matrix copy is made), ``peak()`` after it; the
    result is above the state at ``start()`` (see :data:`MEMORY_MODELS`). ``peak()`` is None where
    the host does not let a process reset its high-water mark.
    """

    def __init__(self, basis: str):
        self.basis = basis
        self._base = 0
        self._ok = True

    def start(self) -> None:
        gc.collect()
        if self.basis == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return
        _malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
        except OSError:
            self._ok = False
            return
        rss = _status_kib("VmRSS")
        self._ok = rss is not None
        self._base = (rss or 0) * 1024

    def peak(self) -> int | None:
        if self.basis == "cuda":
            torch.cuda.synchronize()
            return max(0, torch.cuda.max_memory_allocated() - self._base)
        hwm = _status_kib("VmHWM")
        if not self._ok or hwm is None:
            return None
        return max(0, hwm * 1024 - self._base)
