"""A small catalog of sparse test problems and dense references written with plain torch.

Every problem is stored as COO data (``values``, ``row``, ``col``, ``shape``) in float64 on the CPU.
The dense references below never call slactl: ``dense_coo`` scatters COO values with
``index_put(accumulate=True)``, so a test that compares a slactl result with a dense torch
computation built from the same leaf values checks slactl's forward *and* its gradient (torch
autograd of ``index_put`` gathers the dense gradient at the pattern positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from slactl import SparseMatrix

@dataclass(frozen=True)
class Problem:
    name: str
    values: torch.Tensor  # [nnz] float64, COO order (duplicates allowed)
    row: torch.Tensor  # [nnz] int64
    col: torch.Tensor  # [nnz] int64
    shape: tuple[int, int]
    symmetric: bool = False

    @property
    def square(self) -> bool:
        return self.shape[0] == self.shape[1]

    def coo_values(self, batched: bool, device: torch.device | str = "cpu") -> torch.Tensor:
        """Leaf COO values ``[nnz]`` or, for a batch of two matrices, ``[2, nnz]`` (float64, requires grad).

        The second matrix of a batch is a perturbation of the first that keeps a symmetric problem
        symmetric (the perturbation is read from a symmetric dense matrix at each coordinate).
        """
        v = self.values
        if batched:
            g = torch.Generator().manual_seed(1)
            r = torch.randn(self.shape, generator=g, dtype=torch.float64)
            if self.symmetric:
                r = r + r.T
            v = torch.stack([v, 0.5 * v + 0.3 * r[self.row, self.col]])
        return v.to(device).clone().requires_grad_()

    def matrix(self, values: torch.Tensor) -> SparseMatrix:
        """slactl's matrix over COO ``values`` (the object under test)."""
        return SparseMatrix(values, self.row.to(values.device), self.col.to(values.device), self.shape)

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """Plain-torch dense matrix (or batch) over COO ``values``."""
        return dense_coo(values, self.row.to(values.device), self.col.to(values.device), self.shape)


def dense_coo(values: torch.Tensor, row: torch.Tensor, col: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``[m, n]`` (or ``[B, m, n]``) with COO ``values`` scattered and duplicates summed."""
    m, n = shape
    if values.dim() == 1:
        return values.new_zeros((m, n)).index_put((row, col), values, accumulate=True)
    return torch.stack([dense_coo(v, row, col, shape) for v in values])


def densify(A: SparseMatrix) -> torch.Tensor:
    """Dense copy of a slactl result built from its pattern with plain torch (not ``A.to_dense``)."""
    row = A.pattern.row.to(torch.int64)
    col = A.pattern.col.to(torch.int64)
    return dense_coo(A.values, row, col, A.shape)


# --------------------------------------------------------------------------------- the catalog
def _normal(seed: int) -> Callable[[int], np.ndarray]:
    return np.random.default_rng(seed + 1000).standard_normal


def _from_scipy(name: str, S, symmetric: bool = False) -> Problem:
    S = sp.coo_array(S)
    return Problem(
        name,
        torch.as_tensor(S.data, dtype=torch.float64),
        torch.as_tensor(S.coords[0], dtype=torch.int64),
        torch.as_tensor(S.coords[1], dtype=torch.int64),
        tuple(int(s) for s in S.shape),
        symmetric,
    )


def _random(m: int, n: int, density: float, seed: int):
    return sp.random(m, n, density=density, format="coo", rng=seed, data_rvs=_normal(seed))


def _poisson2d(k: int):
    t = sp.diags_array([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], offsets=[-1, 0, 1])
    eye = sp.eye_array(k)
    return sp.kron(t, eye) + sp.kron(eye, t)


def _nonsymmetric(n: int):
    # 1-D convection-diffusion (upwinded) plus a few random couplings
    c = 0.4
    t = sp.diags_array([(-1 - c) * np.ones(n - 1), 2.5 * np.ones(n), (-1 + c) * np.ones(n - 1)], offsets=[-1, 0, 1])
    return t + 0.5 * _random(n, n, 0.1, seed=2)


def _empty_rows(n: int):
    S = _random(n, n, 0.35, seed=5)
    r, c = S.coords
    keep = ~np.isin(r, [0, 4, n - 1]) & (c != 3)  # empty rows 0, 4, n-1 and an empty column 3
    return sp.coo_array((S.data[keep], (r[keep], c[keep])), shape=S.shape)


def _duplicates() -> Problem:
    S = _random(8, 8, 0.3, seed=6)
    rng = np.random.default_rng(6)
    dup = rng.choice(S.nnz, size=6, replace=False)
    dup = np.concatenate([dup, dup[:2]])  # two coordinates appear three times
    row = np.concatenate([S.coords[0], S.coords[0][dup], [2, 2]])
    col = np.concatenate([S.coords[1], S.coords[1][dup], [5, 5]])  # (2, 5) may be new: twice
    val = np.concatenate([S.data, rng.standard_normal(dup.size + 2)])
    order = rng.permutation(row.size)  # COO order unrelated to CSR order
    return Problem(
        "duplicates",
        torch.as_tensor(val[order]),
        torch.as_tensor(row[order], dtype=torch.int64),
        torch.as_tensor(col[order], dtype=torch.int64),
        (8, 8),
    )


def _build_catalog() -> dict[str, Problem]:
    sym = _random(10, 10, 0.2, seed=1)
    problems = [
        _from_scipy("random_square", _random(12, 12, 0.25, seed=0)),
        _from_scipy("random_symmetric", sym + sym.T + 4 * sp.eye_array(10), symmetric=True),
        _from_scipy("poisson2d", _poisson2d(4), symmetric=True),
        _from_scipy("nonsymmetric", _nonsymmetric(12)),
        _from_scipy("rectangular_wide", _random(7, 13, 0.3, seed=3)),
        _from_scipy("rectangular_tall", _random(14, 6, 0.3, seed=4)),
        _from_scipy("empty_rows", _empty_rows(10)),
        _duplicates(),
    ]
    return {p.name: p for p in problems}


CATALOG: dict[str, Problem] = _build_catalog()
SQUARE = [name for name, p in CATALOG.items() if p.square]


def triangular_problem(base: Problem, lower: bool, with_diagonal: bool = True) -> Problem:
    """The lower (upper) triangle of a square problem, made well conditioned.

    Strictly triangular entries are halved; with ``with_diagonal`` every row also gets a diagonal
    entry larger than the row's off-diagonal sum (so the diagonal is stored and nonzero, and
    possibly summed with a duplicate from ``base``).
    """
    keep = base.col < base.row
    row, col, val = base.row[keep], base.col[keep], 0.5 * base.values[keep]
    n = base.shape[0]
    if with_diagonal:
        off = torch.zeros(n, dtype=torch.float64).index_add(0, row, val.abs())
        sign = torch.where(torch.arange(n) % 3 == 1, -1.0, 1.0).to(torch.float64)
        diag = torch.arange(n)
        row, col = torch.cat([row, diag]), torch.cat([col, diag])
        val = torch.cat([val, sign * (1.0 + off)])
    if not lower:
        row, col = col, row
    return Problem(f"{base.name}_{'lower' if lower else 'upper'}", val, row, col, base.shape)


# ------------------------------------------------------------------------------- comparisons
def assert_matches_dense(
    sparse_fn: Callable[..., torch.Tensor],
    dense_fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    *,
    rtol: float = 1e-10,
    atol: float = 1e-10,
) -> None:
    """Forward results and gradients (for a random cotangent) of two paths over the same leaves.

    ``sparse_fn`` runs slactl, ``dense_fn`` plain torch; both take copies of ``inputs`` and return
    a dense tensor. Every input that requires grad is compared.
    """
    def leaves():
        return [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]

    xs, xd = leaves(), leaves()
    ys, yd = sparse_fn(*xs), dense_fn(*xd)
    torch.testing.assert_close(ys, yd, rtol=rtol, atol=atol)
    wanted = [i for i, t in enumerate(inputs) if t.requires_grad]
    if not wanted:
        return
    cot = torch.randn(yd.shape, dtype=yd.dtype, device=yd.device)
    gs = torch.autograd.grad(ys, [xs[i] for i in wanted], cot, allow_unused=True, materialize_grads=True)
    gd = torch.autograd.grad(yd, [xd[i] for i in wanted], cot, allow_unused=True, materialize_grads=True)
    for i, a, b in zip(wanted, gs, gd):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, i=i: f"gradient of input {i}: {m}")


def complex_leaf(t: torch.Tensor, seed: int = 5) -> torch.Tensor:
    """A complex128 leaf with real part ``t`` and a random imaginary part (``t``'s requires_grad)."""
    g = torch.Generator().manual_seed(seed)
    imag = torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device)
    return torch.complex(t.detach().double(), imag).requires_grad_(t.requires_grad)


def gradcheck(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor]) -> None:
    assert torch.autograd.gradcheck(fn, tuple(inputs), fast_mode=False)


# ------------------------------------------------------------------------- memory watchdog
class LargestAllocation(TorchDispatchMode):
    """Records the largest dense tensor (in elements of its storage) produced by any torch op.

    Sparse-layout results are skipped (their ``numel`` is the dense size; their value and index
    arrays are produced, and recorded, by the ops that build them). Autograd propagates dispatch
    modes to the backward pass, so ``with LargestAllocation() as rec: f().backward()`` sees both.
    """

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.largest_op = ""
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                size = t.untyped_storage().nbytes() // t.element_size()
                if size > self.largest:
                    self.largest, self.largest_op = size, str(func)
        return out
