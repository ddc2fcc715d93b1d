"""Benchmark problems: a gallery problem at (about) a number of unknowns, with b = A @ ones.

``--sizes`` counts unknowns (DOF), the unit of the issue's targets (1M, 4M, 16M); the gallery's
own ``size`` parameter (grid points per side, elements per side, nodes) is derived from it: the
size whose DOF count is nearest, so 1,000,000 DOF of poisson2d is a 1000 x 1000 grid and of
poisson3d a 100^3 grid. The row reports the exact DOF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import Pattern
from slactl.errors import UsageError
from slactl.io import gallery

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
MAX_DOF = 1e12  # a sparse matrix of 10^12 unknowns needs tens of terabytes


def parse_sizes(text: str) -> list[int]:
    """``"250000,1M,4e6,16M"`` -> DOF counts (k, M, G suffixes; scientific notation)."""
    sizes = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"(\d+(?:\.\d*)?(?:[eE]\d+)?)([kKmMgG]?)", item)
        if m is None:
            raise UsageError(f"--sizes: {item!r} is not a DOF count (examples: 250000, 1M, 4e6)")
        value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
        if value < 1:
            raise UsageError(f"--sizes: {item!r} must be at least 1 DOF")
        if not value <= MAX_DOF:  # also inf, from "1e400"
            raise UsageError(f"--sizes: {item!r} is more than {MAX_DOF:.0e} DOF, beyond what any machine can hold")
        sizes.append(int(round(value)))
    if not sizes:
        raise UsageError("--sizes: give at least one DOF count, e.g. --sizes 1M,4M")
    return sizes


def dof_function(name: str) -> Callable[[int], int]:
    """Unknowns of gallery problem ``name`` at gallery size ``s``, from its documented size meaning."""
    meaning = gallery.GALLERY[name].size_meaning
    if "2 n (n + 1)" in meaning:
        return lambda s: 2 * s * (s + 1)
    if "n^3" in meaning:
        return lambda s: s**3
    if "n^2" in meaning:
        return lambda s: s**2
    return lambda s: s  # "nodes": the size is the DOF count


def size_for_dof(name: str, dof: int) -> int:
    """The gallery size whose DOF count is nearest to ``dof`` (at least 1)."""
    f = dof_function(name)
    lo, hi = 1, 1
    while f(hi) < dof:
        hi *= 2
    while lo < hi:  # smallest s with f(s) >= dof
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if f(mid) < dof else (lo, mid)
    if lo > 1 and dof - f(lo - 1) <= f(lo) - dof:
        return lo - 1
    return lo


def check_problem(name: str) -> None:
    if name not in gallery.GALLERY:
        raise UsageError(f"unknown problem {name!r}; choose one of {', '.join(gallery.names())}")


@dataclass
class Case:
    """One matrix at one size, ready for every solver.

    ``a`` is the canonical SciPy CSR in the benchmark dtype (what host peers get); ``check`` the
    same values in float64 for the independent residual; ``b`` is ``A @ ones`` in the benchmark
    dtype on the host (``b_host``, NumPy) and on the device (``b_device``).
    """

    problem: str
    size: int
    requested_dof: int
    device: str
    dtype: torch.dtype
    a: sp.csr_array
    check: sp.csr_array
    b_host: np.ndarray
    b_device: torch.Tensor
    crow: torch.Tensor
    col: torch.Tensor
    values: torch.Tensor
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.a.shape[0]

    @property
    def nnz(self) -> int:
        return int(self.a.nnz)

    @property
    def value_bytes(self) -> int:
        return self.values.element_size()

    @property
    def index_bytes(self) -> int:
        return self.col.element_size()

    def matrix_bytes(self) -> int:
        """Bytes of the CSR arrays (values, column indices, row offsets)."""
        return self.nnz * (self.value_bytes + self.index_bytes) + (self.n + 1) * self.index_bytes

    def vector_bytes(self) -> int:
        return self.n * self.value_bytes

    def fresh_matrix(self, device: str | None = None) -> SparseMatrix:
        """A new SparseMatrix on ``device`` (default: the benchmark's) with a new pattern object, so no
        pattern cache (cuDSS analysis, SpGEMM structure, CSR views) survives from an earlier run."""
        dev = device or self.device
        if dev == "cpu":
            pattern = Pattern(self.crow, self.col, (self.n, self.n))  # shares the host arrays
            return SparseMatrix.from_pattern(pattern, self.values)
        pattern = Pattern(self.crow.to(dev), self.col.to(dev), (self.n, self.n))
        return SparseMatrix.from_pattern(pattern, self.values.to(dev))


def build_case(problem: str, dof: int, device: str, dtype: torch.dtype) -> Case:
    """Generate ``problem`` at about ``dof`` unknowns; b = A @ ones (computed in float64, then cast)."""
    check_problem(problem)
    size = size_for_dof(problem, dof)
    matrix = gallery.generate(problem, size).matrix
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    a = sp.csr_array(matrix, dtype=np_dtype)
    a.sum_duplicates()
    a.sort_indices()
    check = a if np_dtype == np.float64 else sp.csr_array(a, dtype=np.float64)
    b_host = (matrix @ np.ones(a.shape[0])).astype(np_dtype)
    host = SparseMatrix.from_scipy(a, dtype=dtype)
    return Case(problem=problem, size=size, requested_dof=dof, device=device, dtype=dtype, a=a, check=check,
                b_host=b_host, b_device=torch.from_numpy(b_host).to(device), crow=host.pattern.crow,
                col=host.pattern.col, values=host.values)
