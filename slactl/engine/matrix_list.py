"""`SparseMatrixList`: a batch of sparse matrices with different patterns, handled as one.

The list is assembled into one block-diagonal :class:`SparseMatrix` whose values are the
concatenation of the members' values (so gradients flow back to each member), solved in one call,
and split again. Use a batched ``SparseMatrix`` (values ``[B, nnz]``) when the patterns are equal.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.pattern import Pattern, index_dtype_for
from slactl.errors import DeviceError, DtypeError, ShapeError, UsageError


class SparseMatrixList:
    """Matrices of any sizes and patterns, one dtype and device.

    Examples
    --------
    >>> import torch, slactl
    >>> L = slactl.SparseMatrixList([slactl.SparseMatrix.from_dense(torch.eye(2, dtype=torch.float64) * 2),
    ...                              slactl.SparseMatrix.from_dense(torch.eye(3, dtype=torch.float64) * 4)])
    >>> [x.tolist() for x in slactl.solve(L, [torch.ones(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64)])]
    [[0.5, 0.5], [0.25, 0.25, 0.25]]
    """

    def __init__(self, matrices: Sequence[SparseMatrix]):
        matrices = list(matrices)
        if not matrices:
            raise UsageError("SparseMatrixList needs at least one matrix")
        for i, A in enumerate(matrices):
            if not isinstance(A, SparseMatrix) or A.is_batched:
                raise UsageError(f"member {i} must be an unbatched SparseMatrix, got {A!r}")
            if A.dtype != matrices[0].dtype:
                raise DtypeError(f"member {i} is {A.dtype} but member 0 is {matrices[0].dtype}; convert with .to(dtype=...)")
            if A.device != matrices[0].device:
                raise DeviceError(f"member {i} is on {A.device} but member 0 is on {matrices[0].device}; move with .to(device)")
        self.matrices = matrices
        self._pattern: Pattern | None = None

    def __len__(self) -> int:
        return len(self.matrices)

    def __getitem__(self, i: int) -> SparseMatrix:
        return self.matrices[i]

    def __iter__(self) -> Iterator[SparseMatrix]:
        return iter(self.matrices)

    @property
    def dtype(self) -> torch.dtype:
        return self.matrices[0].dtype

    @property
    def device(self) -> torch.device:
        return self.matrices[0].device

    def block_pattern(self) -> Pattern:
        """The block-diagonal pattern (built once)."""
        if self._pattern is None:
            rows = sum(A.shape[0] for A in self)
            cols = sum(A.shape[1] for A in self)
            nnz = sum(A.nnz for A in self)
            idx = index_dtype_for(rows + 1, cols, nnz)
            crows, colss = [], []
            r_off = c_off = e_off = 0
            for A in self:
                crows.append(A.pattern.crow[:-1].to(torch.int64) + e_off)
                colss.append(A.pattern.col.to(torch.int64) + c_off)
                r_off, c_off, e_off = r_off + A.shape[0], c_off + A.shape[1], e_off + A.nnz
            crows.append(torch.tensor([e_off], device=self.device))
            self._pattern = Pattern(torch.cat(crows).to(idx), torch.cat(colss).to(idx), (rows, cols))
        return self._pattern

    def block_diagonal(self) -> SparseMatrix:
        """``diag(A_0, A_1, ...)``, differentiable in every member's values."""
        return SparseMatrix.from_pattern(self.block_pattern(), torch.cat([A.values for A in self]))

    def _split(self, x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        return list(torch.split(x, sizes, dim=0))

    def __matmul__(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        xs = self._check_vectors(xs, [A.shape[1] for A in self], "x")
        return self._split(self.block_diagonal() @ torch.cat(xs), [A.shape[0] for A in self])

    def _check_vectors(self, bs: Sequence[torch.Tensor], sizes: list[int], name: str) -> list[torch.Tensor]:
        bs = list(bs)
        if len(bs) != len(self):
            raise ShapeError(f"{len(self)} matrices need {len(self)} {name} tensors, got {len(bs)}")
        for i, (b, n) in enumerate(zip(bs, sizes)):
            if not torch.is_tensor(b) or b.dim() not in (1, 2) or b.shape[0] != n:
                raise ShapeError(f"{name}[{i}] must have shape [{n}] or [{n}, k], got {tuple(getattr(b, 'shape', ()))}")
        if len({b.shape[1:] for b in bs}) != 1:
            raise ShapeError(f"every {name}[i] needs the same number of columns")
        return bs

    def solve(self, bs: Sequence[torch.Tensor], *, rtol: float = 1e-8, **options: Any) -> list[torch.Tensor] | Any:
        """Solve ``A_i x_i = b_i`` for every member in one call (see :func:`slactl.solve`).

        ``rtol`` holds for each member: the stacked system is solved to ``rtol * min_i ||b_i|| / ||b||``.
        With ``return_result=True`` the result's ``x`` is the list of solutions.
        """
        from slactl.engine.linear.api import solve

        bs = self._check_vectors(bs, [A.shape[0] for A in self], "b")
        if any(A.shape[0] != A.shape[1] for A in self):
            raise ShapeError("solve needs square matrices")
        norms = torch.stack([torch.linalg.vector_norm(b.detach()) for b in bs])
        total = torch.linalg.vector_norm(norms)
        scaled = rtol * float(norms.min() / total) if float(total) > 0 else rtol
        out = solve(self.block_diagonal(), torch.cat(bs), rtol=scaled, **options)
        sizes = [A.shape[0] for A in self]
        if options.get("return_result"):
            out.x = self._split(out.x, sizes)
            return out
        return self._split(out, sizes)

    def __repr__(self) -> str:
        return f"SparseMatrixList({len(self)} matrices, dtype={self.dtype}, device={self.device})"
