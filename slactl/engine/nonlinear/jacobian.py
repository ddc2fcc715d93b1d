"""Jacobians of a residual ``F(u)`` by reverse-mode autograd: products, colored sparse assembly,
and the sparsity pattern a residual's sparse parameters imply.

Jacobian-vector products use the double-backward trick: with ``w`` a dummy vector,
``g(w) = J^T w = autograd.grad(F, u, w, create_graph=True)`` is linear in ``w``, and
``autograd.grad(g, w, v) = J v``. It needs only reverse mode, so it works through every slactl
kernel (whose backward passes are themselves differentiable), where ``torch.func.jvp`` would need a
forward-mode rule for each custom autograd Function.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.engine.nonlinear.coloring import distance2_coloring
from slactl.engine.pattern import Pattern
from slactl.errors import StructureError, UsageError


class Linearization:
    """``F`` evaluated once at ``u`` with its graph kept: ``J v`` and ``J^T v`` by autograd.

    Parameters
    ----------
    fn : callable
        ``u -> F(u)``, a torch function of ``u`` (``[n]``) returning ``[n]``.
    u : Tensor
        The point of linearization (detached internally).

    Attributes
    ----------
    F : Tensor
        ``F(u)``, detached.
    jvps, vjps : int
        Products computed so far.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor):
        with torch.enable_grad():
            self.u = u.detach().requires_grad_(True)
            self._F = fn(self.u)
        if not torch.is_tensor(self._F) or self._F.shape != u.shape:
            got = tuple(self._F.shape) if torch.is_tensor(self._F) else type(self._F).__name__
            raise UsageError(f"the residual must return a tensor of u's shape {tuple(u.shape)}, got {got}")
        self.F = self._F.detach()
        self._JTw: torch.Tensor | None = None
        self._w: torch.Tensor | None = None
        self.jvps = self.vjps = 0

    def vjp(self, v: torch.Tensor) -> torch.Tensor:
        """``J^T v``."""
        self.vjps += 1
        if not self._F.requires_grad:
            return torch.zeros_like(v)
        (g,) = torch.autograd.grad(self._F, self.u, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if g is None else g

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` (double backward through one kept graph of ``J^T w``)."""
        self.jvps += 1
        if self._JTw is None:
            with torch.enable_grad():
                self._w = torch.zeros_like(self.F, requires_grad=True)
                if self._F.requires_grad:
                    (self._JTw,) = torch.autograd.grad(self._F, self.u, self._w, create_graph=True, allow_unused=True)
            if self._JTw is None or not self._JTw.requires_grad:
                self._JTw = torch.zeros(0)  # F does not depend on u (or only through constants)
        if self._JTw.numel() == 0:
            return torch.zeros_like(v)
        (out,) = torch.autograd.grad(self._JTw, self._w, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if out is None else out


def coloring_of(pattern: Pattern) -> torch.Tensor:
    """The distance-2 coloring of ``pattern``'s columns (cached on the pattern), on its device."""
    return pattern.cached(
        ("distance2_coloring", 0),
        lambda: torch.from_numpy(distance2_coloring(pattern)).to(pattern.device),
    )


def assemble(lin: Linearization, pattern: Pattern) -> SparseMatrix:
    """The Jacobian on ``pattern``: one JVP per color, scattered into the stored entries.

    Exact (no finite differences) whenever every nonzero of ``J`` lies on ``pattern``; entries
    outside it would be added to others of their row, which :func:`check_pattern` detects.
    """
    colors = coloring_of(pattern)
    ncolors = int(colors.max()) + 1 if colors.numel() else 0
    dtype = lin.F.dtype
    compressed = torch.stack([lin.jvp((colors == c).to(dtype)) for c in range(ncolors)]) if ncolors else None
    if compressed is None:
        return SparseMatrix.from_pattern(pattern, lin.F.new_zeros(0))
    row, col = pattern.row.to(torch.int64), pattern.col.to(torch.int64)
    return SparseMatrix.from_pattern(pattern, compressed[colors[col], row])


def check_pattern(lin: Linearization, J: SparseMatrix, seed: int = 0) -> None:
    """Raise :class:`StructureError` unless ``J v`` equals the autograd ``J v`` for a random ``v``."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(J.shape[1], generator=g, dtype=torch.float64).to(device=J.device, dtype=J.dtype)
    exact = lin.jvp(v)
    with torch.no_grad():
        err = torch.linalg.vector_norm(J @ v - exact)
        scale = torch.linalg.vector_norm(exact) + torch.linalg.vector_norm(J.values) + 1e-300
    tol = 1e3 * torch.finfo(J.dtype).eps
    if float(err) > tol * float(scale):
        raise StructureError(
            f"the Jacobian has nonzeros outside the sparsity pattern used to assemble it (||J v - "
            f"J_assembled v|| / scale = {float(err / scale):.2e}); pass pattern= with the Jacobian's "
            f"full structure, or jacobian='matrix-free'"
        )


def _with_diagonal(pattern: Pattern) -> Pattern:
    def build() -> Pattern:
        n = pattern.shape[0]
        idx = torch.arange(n, device=pattern.device)
        diag, _ = Pattern.from_coo(idx, idx, (n, n))
        return pattern.union(diag)[0]

    return pattern.cached("with_diagonal", build)


def resolve_pattern(pattern: Any, params: Sequence[Any], n: int) -> Pattern | None:
    """The pattern to assemble on: ``pattern`` if given, else the union of the ``n x n``
    SparseMatrix parameters' patterns and the diagonal; ``None`` when there is nothing to use."""
    if pattern is not None:
        pat = pattern.pattern if isinstance(pattern, SparseMatrix) else pattern
        if not isinstance(pat, Pattern):
            raise UsageError(f"pattern must be a SparseMatrix or a Pattern, got {type(pattern).__name__}")
        if pat.shape != (n, n):
            raise UsageError(f"pattern is {pat.shape[0]}x{pat.shape[1]} but u has {n} entries; it must be {n}x{n}")
        return pat
    found = [p.pattern for p in params if isinstance(p, SparseMatrix) and p.shape == (n, n)]
    if not found:
        return None
    union = found[0]
    for other in found[1:]:
        if not other.same_as(union):
            union = union.union(other)[0]
    return _with_diagonal(union)


def count_colors(pattern: Pattern) -> int:
    colors = coloring_of(pattern)
    return int(colors.max()) + 1 if colors.numel() else 0


__all__ = ["Linearization", "assemble", "check_pattern", "resolve_pattern", "coloring_of", "count_colors"]
