"""Sparse x sparse products by cuSPARSE's ``SpGEMM_ALG2``, called through ctypes (no gradient).

``torch.sparse.mm`` multiplies two CSR tensors on CUDA with cuSPARSE's default SpGEMM algorithm,
whose work space is ~23 bytes per scalar product: the sa-amg set-up therefore multiplies in row
chunks (six for the finest Galerkin product of 2D Poisson at 1M unknowns), and each chunk costs a
fixed ~0.35 ms of cuSPARSE set-up and host waits whatever its size (H200: the unchunked product
takes 1.3 ms, the six chunks ~7 ms). ``CUSPARSE_SPGEMM_ALG2`` needs ~8.5 bytes per product for the
same sorted, deterministic result (2.0 ms unchunked at 1M, 171 instead of 462 MB), so the set-up
can take a few large chunks. torch gives no way to choose the algorithm, hence this module: it
loads the libcusparse that torch itself uses (the one mapped into the process) and follows
cuSPARSE's documented sequence (workEstimation, estimateMemory, compute, copy).

:func:`available` says whether it applies (CUDA tensors, 32-bit indices, float32/float64; the
library found); callers fall back to ``torch.sparse.mm`` otherwise.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading

import torch

# cuSPARSE enums (cusparse.h, CUDA 12/13)
_OP_NON_TRANSPOSE = 0
_INDEX_32I = 2
_INDEX_BASE_ZERO = 0
_CUDA_R_32F, _CUDA_R_64F = 0, 1
_SPGEMM_ALG2 = 4
_STATUS_INSUFFICIENT_RESOURCES = 11
_VALUE_TYPES = {torch.float32: _CUDA_R_32F, torch.float64: _CUDA_R_64F}

_lock = threading.RLock()  # one handle per device: a product holds it from set-stream to copy
_library: ctypes.CDLL | None | bool = False  # False: not looked up yet; None: not usable
_handles: dict[int, ctypes.c_void_p] = {}
_MAJOR_VERSION = 0  # libraryPropertyType MAJOR_VERSION


def _mapped_libraries() -> list[str]:
    """Paths of the libcusparse files mapped into this process, torch's own first."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                found = re.search(r"(/\S*libcusparse\.so[.\d]*)", line)
                if found and found.group(1) not in paths:
                    paths.append(found.group(1))
    except OSError:
        return []
    site = os.path.dirname(os.path.dirname(torch.__file__))  # torch's site-packages (its CUDA wheels)
    return sorted(paths, key=lambda p: not p.startswith(site))


def _load() -> ctypes.CDLL | None:
    """The libcusparse mapped into this process by torch, if it has ALG2 (cuSPARSE 12 and later:
    CUDA 11 builds of torch ship 11, without it), else None."""
    global _library
    if _library is False:
        _library = None
        for path in _mapped_libraries():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            major = ctypes.c_int(0)
            if (hasattr(lib, "cusparseSpGEMM_estimateMemory") and hasattr(lib, "cusparseGetProperty")
                    and lib.cusparseGetProperty(_MAJOR_VERSION, ctypes.byref(major)) == 0 and major.value >= 12):
                _library = lib
                break
    return _library


def available(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether :func:`spgemm` can multiply these two CSR tensors."""
    if not (a.is_cuda and b.is_cuda and a.layout == torch.sparse_csr and b.layout == torch.sparse_csr):
        return False
    if a.dtype not in _VALUE_TYPES or b.dtype != a.dtype:
        return False
    if any(t.dtype != torch.int32 for t in (a.crow_indices(), a.col_indices(), b.crow_indices(), b.col_indices())):
        return False
    return _load() is not None


def available_for(*matrices) -> bool:
    """Whether :func:`spgemm` can form the products of these :class:`SparseMatrix` factors (and
    so of their row chunks): CUDA, one float dtype, 32-bit row offsets and column indices."""
    first = matrices[0]
    if not first.device.type == "cuda" or first.dtype not in _VALUE_TYPES:
        return False
    for M in matrices:
        if M.device != first.device or M.dtype != first.dtype or M.values.dim() != 1:
            return False
        if M.pattern.crow.dtype != torch.int32 or M.pattern.col.dtype != torch.int32:
            return False
    return _load() is not None


def _check(status: int, call: str) -> None:
    if status != 0:
        lib = _load()
        text = ""
        if lib is not None:
            lib.cusparseGetErrorString.restype = ctypes.c_char_p
            text = (lib.cusparseGetErrorString(status) or b"").decode(errors="replace")
        if status == _STATUS_INSUFFICIENT_RESOURCES:
            text = f"{text} (insufficient resources)"
        raise RuntimeError(f"cuSPARSE {call} failed with status {status}: {text}")


def _handle(device: torch.device) -> ctypes.c_void_p:
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _lock:
        if index not in _handles:
            with torch.cuda.device(index):
                handle = ctypes.c_void_p()
                _check(_load().cusparseCreate(ctypes.byref(handle)), "cusparseCreate")
            _handles[index] = handle
        return _handles[index]


def _csr_descriptor(lib, rows: int, cols: int, crow: torch.Tensor, col: torch.Tensor | None,
                    val: torch.Tensor | None, nnz: int, value_type: int) -> ctypes.c_void_p:
    descr = ctypes.c_void_p()
    _check(lib.cusparseCreateCsr(ctypes.byref(descr), ctypes.c_int64(rows), ctypes.c_int64(cols), ctypes.c_int64(nnz),
                                 ctypes.c_void_p(crow.data_ptr()),
                                 ctypes.c_void_p(col.data_ptr() if col is not None else 0),
                                 ctypes.c_void_p(val.data_ptr() if val is not None else 0),
                                 _INDEX_32I, _INDEX_32I, _INDEX_BASE_ZERO, value_type), "cusparseCreateCsr")
    return descr


def spgemm(a: torch.Tensor, b: torch.Tensor, stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a @ b`` of two CUDA CSR tensors (:func:`available`): the product's ``(crow, col, values)``,
    int32 indices, rows sorted. Work buffers come from torch's caching allocator, on the current
    stream. Given ``stats``, its ``"peak_bytes"`` is set to the most device memory the product held
    at once beyond its inputs (work buffers and the result). Raises RuntimeError on a cuSPARSE
    failure ("insufficient resources" where cuSPARSE says so)."""
    lib = _load()
    m, n = a.shape[0], b.shape[1]
    device = a.device
    if m == 0 or n == 0 or a._nnz() == 0 or b._nnz() == 0:  # (cuSPARSE is not asked about empty products)
        if stats is not None:
            stats["peak_bytes"] = 4 * (m + 1)
        return (torch.zeros(m + 1, dtype=torch.int32, device=device), torch.empty(0, dtype=torch.int32, device=device),
                torch.empty(0, dtype=a.dtype, device=device))
    value_type = _VALUE_TYPES[a.dtype]
    with _lock, torch.cuda.device(device):
        return _spgemm(lib, a, b, value_type, stats)


def _spgemm(lib, a: torch.Tensor, b: torch.Tensor, value_type: int,
            stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`spgemm` on ``a``'s device, the handle held."""
    m, n, device = a.shape[0], b.shape[1], a.device
    handle = _handle(device)
    _check(lib.cusparseSetStream(handle, ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)), "cusparseSetStream")
    a_crow, a_col, a_val = a.crow_indices().contiguous(), a.col_indices().contiguous(), a.values().contiguous()
    b_crow, b_col, b_val = b.crow_indices().contiguous(), b.col_indices().contiguous(), b.values().contiguous()
    c_crow = torch.empty(m + 1, dtype=torch.int32, device=device)
    mat_a, mat_b, mat_c, descr = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    scalar = ctypes.c_double if a.dtype == torch.float64 else ctypes.c_float
    alpha, beta = scalar(1.0), scalar(0.0)
    buffers = []
    try:
        mat_a = _csr_descriptor(lib, m, a.shape[1], a_crow, a_col, a_val, a_col.numel(), value_type)
        mat_b = _csr_descriptor(lib, b.shape[0], n, b_crow, b_col, b_val, b_col.numel(), value_type)
        mat_c = _csr_descriptor(lib, m, n, c_crow, None, None, 0, value_type)
        _check(lib.cusparseSpGEMM_createDescr(ctypes.byref(descr)), "cusparseSpGEMM_createDescr")
        args = (handle, _OP_NON_TRANSPOSE, _OP_NON_TRANSPOSE, ctypes.byref(alpha), mat_a, mat_b, ctypes.byref(beta),
                mat_c, value_type, _SPGEMM_ALG2, descr)
        size1 = ctypes.c_size_t(0)
        _check(lib.cusparseSpGEMM_workEstimation(*args, ctypes.byref(size1), None), "cusparseSpGEMM_workEstimation")
        buffers.append(torch.empty(max(1, size1.value), dtype=torch.uint8, device=device))
        _check(lib.cusparseSpGEMM_workEstimation(*args, ctypes.byref(size1), ctypes.c_void_p(buffers[-1].data_ptr())),
               "cusparseSpGEMM_workEstimation")
        size3, size2 = ctypes.c_size_t(0), ctypes.c_size_t(0)
        fraction = ctypes.c_float(1.0)  # (ALG3's chunking only)
        _check(lib.cusparseSpGEMM_estimateMemory(*args, fraction, ctypes.byref(size3), None, None), "cusparseSpGEMM_estimateMemory")
        scratch = torch.empty(max(1, size3.value), dtype=torch.uint8, device=device)
        _check(lib.cusparseSpGEMM_estimateMemory(*args, fraction, ctypes.byref(size3), ctypes.c_void_p(scratch.data_ptr()),
                                                 ctypes.byref(size2)), "cusparseSpGEMM_estimateMemory")
        del scratch
        buffers.append(torch.empty(max(1, size2.value), dtype=torch.uint8, device=device))
        _check(lib.cusparseSpGEMM_compute(*args, ctypes.byref(size2), ctypes.c_void_p(buffers[-1].data_ptr())),
               "cusparseSpGEMM_compute")
        rows, cols, nnz = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
        _check(lib.cusparseSpMatGetSize(mat_c, ctypes.byref(rows), ctypes.byref(cols), ctypes.byref(nnz)), "cusparseSpMatGetSize")
        c_col = torch.empty(nnz.value, dtype=torch.int32, device=device)
        c_val = torch.empty(nnz.value, dtype=a.dtype, device=device)
        _check(lib.cusparseCsrSetPointers(mat_c, ctypes.c_void_p(c_crow.data_ptr()), ctypes.c_void_p(c_col.data_ptr()),
                                          ctypes.c_void_p(c_val.data_ptr())), "cusparseCsrSetPointers")
        _check(lib.cusparseSpGEMM_copy(*args), "cusparseSpGEMM_copy")
        if stats is not None:  # the result's row offsets throughout; the estimate's scratch, or the
            # compute buffer and the result's entries, beside the first buffer
            stats["peak_bytes"] = (4 * (m + 1) + size1.value
                                   + max(size3.value, size2.value + nnz.value * (4 + c_val.element_size())))
    finally:
        if descr.value:
            lib.cusparseSpGEMM_destroyDescr(descr)
        for mat in (mat_a, mat_b, mat_c):
            if mat.value:
                lib.cusparseDestroySpMat(mat)
        # The buffers are released to torch's caching allocator on the current stream: work queued
        # after this reuses them only after the copy above (stream order).
        del buffers
    return c_crow, c_col, c_val
