"""The linear operator and inner product that every Krylov method is written against.

A Krylov method touches the matrix only through ``matvec`` and the vectors only through ``dot``
(and ``dot_many``, ``norm``, which default to ``dot``'s reduction). The single-process operator sums
over local rows; the distributed layer overrides :meth:`LinearOperator.reduce` with an all-reduce
(or ``dot`` itself), and its ``matvec`` exchanges halos, so the algorithms are written once.

Vectors are ``[n]`` or ``[n, k]``; a block ``[n, k]`` holds ``k`` independent right-hand sides and
every inner product then returns ``k`` values (one per column).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.errors import DeviceError, DtypeError, ShapeError, UsageError


class LinearOperator:
    """A square or rectangular linear map ``x -> A x`` with an inner product.

    Subclasses implement :meth:`matvec`. The inner product is ``dot(x, y) = sum_i conj(x_i) y_i``
    over dimension 0, so ``[n, k]`` blocks give ``k`` values. To make every reduction global (a
    distributed vector), override :meth:`reduce` (called on each locally summed result), or
    override :meth:`dot` and :meth:`dot_many` together.

    Parameters
    ----------
    shape : (int, int)
    dtype : torch.dtype
    device : torch.device
    """

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, device: Any):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.device = torch.device(device)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for ``x`` of shape ``[n]`` or ``[n, k]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement matvec(x)")

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return self.matvec(x)

    def residual(self, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``b - A x`` (a new tensor). Subclasses whose ``matvec`` returns a fresh tensor may
        subtract in place (:class:`MatrixOperator`): one vector of memory instead of two."""
        return b - self.matvec(x)

    def reduce(self, local: torch.Tensor) -> torch.Tensor:
        """Turn a sum over this process's rows into the global sum (identity here)."""
        return local

    def dot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``sum_i conj(x_i) * y_i`` over dimension 0: a scalar for ``[n]``, ``[k]`` for ``[n, k]``."""
        # One fused kernel each (BLAS dot / vecdot), no elementwise temporary.
        local = torch.vdot(x, y) if x.dim() == 1 else torch.linalg.vecdot(x, y, dim=0)
        return self.reduce(local)

    def dots(self, *pairs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``dot(x, y)`` for every pair ``(x, y)``, with one reduction for all of them (one
        all-reduce per call on a distributed operator instead of one per pair)."""
        if type(self).dot is not LinearOperator.dot:  # a subclass with its own dot: honour it
            return tuple(self.dot(x, y) for x, y in pairs)
        local = [torch.vdot(x, y) if x.dim() == 1 else torch.linalg.vecdot(x, y, dim=0) for x, y in pairs]
        if type(self).reduce is LinearOperator.reduce:  # nothing to reduce: no stacking either
            return tuple(local)
        return tuple(self.reduce(torch.stack(local)).unbind(0))

    def dot_many(self, V: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Inner products of ``w`` (``[n]`` or ``[n, k]``) with every ``V[j]`` (``V``: ``[j, n]`` or
        ``[j, n, k]``) in one reduction: ``[j]`` or ``[j, k]``. Used by GMRES's Gram-Schmidt."""
        if w.dim() == 1:
            local = torch.mv(V.conj(), w)
        else:
            local = torch.einsum("jnk,nk->jk", V.conj(), w)
        return self.reduce(local)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean norm of each column (real), from :meth:`dot`."""
        return torch.sqrt(self.dot(x, x).real)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"


class MatrixOperator(LinearOperator):
    """A :class:`~slactl.engine.matrix.SparseMatrix` (unbatched) as an operator.

    The values are detached: Krylov iterations are not differentiated through (the adjoint solve
    in ``slactl.solve`` supplies the gradients).
    """

    def __init__(self, A: SparseMatrix):
        if A.is_batched:
            raise UsageError(
                "Krylov methods take one matrix; solve each matrix of the batch A[i] in turn"
            )
        super().__init__(A.shape, A.dtype, A.device)
        self.matrix = A
        self._csr = A.pattern.torch_csr(A.values.detach())

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        # torch's CSR kernels directly (MKL / cuSPARSE): no autograd bookkeeping per iteration.
        return torch.mv(self._csr, x) if x.dim() == 1 else torch.mm(self._csr, x)

    def residual(self, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # torch.mv / torch.mm return a new tensor: b - A x is written over it (the same
        # subtraction, bit for bit), so the true-residual check after a solve holds one vector
        # beside the solver's, not two (issue 7: the peak of a plain CG solve).
        ax = self.matvec(x)
        if ax.shape != b.shape or ax.dtype != b.dtype or ax.requires_grad or b.requires_grad:
            return b - ax
        return torch.sub(b, ax, out=ax)


class DenseOperator(LinearOperator):
    """A dense ``[m, n]`` tensor as an operator."""

    def __init__(self, A: torch.Tensor):
        if A.dim() != 2:
            raise ShapeError(f"a dense operator must be a 2-D tensor, got shape {tuple(A.shape)}")
        super().__init__(tuple(A.shape), A.dtype, A.device)
        self.matrix = A.detach()

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix @ x


class FunctionOperator(LinearOperator):
    """A callable ``fn(x) -> A x`` (``x``: ``[n]`` or ``[n, k]``) of known shape, dtype and device."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int], dtype: torch.dtype, device: Any):
        super().__init__(shape, dtype, device)
        self.fn = fn

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def as_operator(A: Any, *, like: torch.Tensor | None = None) -> LinearOperator:
    """Wrap ``A`` as a :class:`LinearOperator`.

    Parameters
    ----------
    A : LinearOperator, SparseMatrix, torch tensor (dense or sparse), scipy.sparse matrix or callable
        A callable needs ``like`` (the right-hand side) to take its dtype, device and (square) shape.
        A scipy matrix is converted to ``like``'s dtype and device (float64 on the CPU without it).
    like : Tensor, optional
        A vector of the system (usually ``b``).

    Examples
    --------
    >>> import torch
    >>> op = as_operator(torch.eye(3, dtype=torch.float64))
    >>> op.dot(torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    tensor(3., dtype=torch.float64)
    """
    if isinstance(A, LinearOperator):
        return A
    if isinstance(A, SparseMatrix):
        return MatrixOperator(A)
    if torch.is_tensor(A):
        if A.layout == torch.strided:
            return DenseOperator(A)
        return MatrixOperator(SparseMatrix.from_torch(A.detach()))
    if type(A).__module__.startswith("scipy.sparse"):
        dtype = like.dtype if like is not None else torch.float64
        device = like.device if like is not None else None
        return MatrixOperator(SparseMatrix.from_scipy(A, dtype=dtype, device=device))
    if callable(A):
        if like is None:
            raise UsageError("a callable operator needs shape, dtype and device: pass FunctionOperator(fn, shape, dtype, device)")
        n = like.shape[0]
        return FunctionOperator(A, (n, n), like.dtype, like.device)
    raise UsageError(
        f"cannot use a {type(A).__name__} as a linear operator; pass a SparseMatrix, a tensor, "
        "a scipy.sparse matrix, a LinearOperator or a callable"
    )


def check_system(op: LinearOperator, b: torch.Tensor, x0: torch.Tensor | None) -> None:
    """Raise a clear error unless ``op`` is square and ``b`` (and ``x0``) fit it."""
    m, n = op.shape
    if m != n:
        raise ShapeError(f"Krylov methods need a square operator, got {m}x{n}")
    for name, v in (("b", b), ("x0", x0)):
        if v is None:
            continue
        if not torch.is_tensor(v):
            raise UsageError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
        if v.dim() not in (1, 2) or v.shape[0] != n:
            raise ShapeError(f"{name} must have shape [{n}] or [{n}, k], got {tuple(v.shape)}")
        if v.device != op.device:
            raise DeviceError(f"A is on {op.device} but {name} is on {v.device}; move {name} with {name}.to(A.device)")
        if v.dtype != op.dtype:
            raise DtypeError(f"A is {op.dtype} but {name} is {v.dtype}; convert with {name}.to(A.dtype)")
    if x0 is not None and x0.shape != b.shape:
        raise ShapeError(f"x0 must have b's shape {tuple(b.shape)}, got {tuple(x0.shape)}")
