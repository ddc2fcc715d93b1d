"""`slactl.gradcheck`: adjoint gradients against central finite differences along random directions.

For each operation and each differentiable input ``p`` (the right-hand side, the matrix values),
the check computes the adjoint gradient ``G = dL/dp`` of a scalar loss ``L`` once, then for random
directions ``d = r * s`` (``r`` standard normal, ``s`` the input's own scale, entrywise for matrix
values so that high-contrast coefficients are perturbed in proportion) compares

    adjoint  = <G, d>
    fd       = (4 D(h/2) - D(h)) / 3,   D(s) = (L(p + s d) - L(p - s d)) / (2 s)

(central differences with one Richardson extrapolation step: truncation error O(h^4), so
strongly curved losses such as eigenvectors of close eigenvalues are checked accurately;
``h = eps``, by default machine eps ** (1/3); if a direction misses ``rtol``, the steps
``h/10, 10 h, h/100, 100 h, h/1000`` are tried in turn and the best is kept: truncation error
falls with the step, rounding noise grows as ``1/h``, and a wrong gradient errs at every step)

with the relative error ``|adjoint - fd| / max(|adjoint|, |fd|, ||G * s||)`` (the last term is
the typical size of ``<G, d>`` and keeps a direction nearly orthogonal to ``G`` from dividing by
almost zero). A row passes when its worst direction's error is at most ``rtol``.

Losses: ``solve``: ``L = <w, A^{-1} b>``. ``eigsh``: ``L = sum_i a_i lam_i + sum_i c_i ||C^T v_i||^2``
with the ``k`` smallest eigenpairs (sign-invariant; weights equal within a cluster of
equal eigenvalues, so the loss is well defined for degenerate eigenvalues; ``k`` is lowered rather
than cutting a cluster); symmetric directions only. ``nonlinear``: ``A u + u^3 = f`` solved by
:func:`slactl.nonlinear_solve`, ``L = <w, u>``.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from slactl.engine.matrix import SparseMatrix
from slactl.errors import UsageError

OPERATIONS = ("solve", "eigsh", "nonlinear")
STEP_FACTORS = (1.0, 0.1, 10.0, 0.01, 100.0, 0.001)


@dataclass
class GradcheckRow:
    """One operation and input: worst relative error over the directions, and the linear solves
    (``Prepared.solve`` calls) of one forward and one backward evaluation."""

    operation: str
    wrt: str
    relative_error: float | None
    forward_solves: int
    backward_solves: int
    fd_evaluations: int
    passed: bool
    note: str = ""

    @property
    def skipped(self) -> bool:
        return self.relative_error is None


@dataclass
class GradcheckReport:
    """Every row of a check; ``passed`` when no row that ran failed."""

    rows: list[GradcheckRow]
    rtol: float
    eps: float
    directions: int
    dtype: str
    device: str
    shape: tuple[int, int] = (0, 0)
    nnz: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failed_rows(self) -> list[GradcheckRow]:
        return [r for r in self.rows if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def _count_solves() -> Any:
    """Count ``Prepared.solve`` calls (every linear solve of every backend) inside the block."""
    from slactl.engine.linear.base import count_solves

    return count_solves()


def _richardson(loss: Callable[[dict], torch.Tensor], point: dict[str, torch.Tensor], name: str,
                d: torch.Tensor, h: float) -> float:
    """``(4 D(h/2) - D(h)) / 3`` with ``D(h)`` the central difference: truncation error O(h^4),
    which matters where the loss is strongly curved (eigenvectors of close eigenvalues)."""
    base = point[name]

    def central(step: float) -> float:
        with torch.no_grad():
            plus = loss({**point, name: base + step * d})
            minus = loss({**point, name: base - step * d})
        return float((plus - minus) / (2 * step))

    return (4.0 * central(h / 2) - central(h)) / 3.0


def _directional(loss: Callable[[dict], torch.Tensor], point: dict[str, torch.Tensor], name: str,
                 grad: torch.Tensor, scale: torch.Tensor, directions: int, h: float,
                 gen: torch.Generator, project: Callable | None, rtol: float) -> float:
    """Worst relative error of ``<grad, d>`` against central differences over ``directions``."""
    base = point[name]
    typical = float(torch.linalg.vector_norm(grad * scale))
    worst = 0.0
    for _ in range(directions):
        d = torch.randn(base.shape, generator=gen, dtype=torch.float64).to(base.device, base.dtype) * scale
        if project is not None:
            d = project(d)
        adj = float((grad * d).sum())
        best = float("inf")
        for step in (h * f for f in STEP_FACTORS):
            # Other steps only when the first misses rtol: truncation error shrinks with the step
            # (an ill-conditioned matrix is strongly curved along entrywise perturbations), rounding
            # noise (e.g. eps ||A|| in small eigenvalues) grows as 1/step, while a wrong gradient
            # shows the same error at every step.
            fd = _richardson(loss, point, name, d, step)
            denom = max(abs(adj), abs(fd), typical, torch.finfo(base.dtype).tiny)
            best = min(best, abs(adj - fd) / denom)
            if best <= rtol:
                break
        worst = max(worst, best)
    return worst


def _check(operation: str, loss: Callable[[dict], torch.Tensor], point: dict[str, torch.Tensor],
           scales: dict[str, torch.Tensor], *, directions: int, h: float, rtol: float, seed: int,
           project: dict[str, Callable] | None = None, note: str = "") -> list[GradcheckRow]:
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in point.items()}
    with _count_solves() as fwd:
        L = loss(leaves)
    with _count_solves() as bwd:
        grads = torch.autograd.grad(L, list(leaves.values()), allow_unused=True)
    rows = []
    for i, (name, g) in enumerate(zip(leaves, grads)):
        g = torch.zeros_like(point[name]) if g is None else g
        gen = torch.Generator(device="cpu").manual_seed(seed + 7919 * i)
        err = _directional(loss, {k: v.detach() for k, v in point.items()}, name, g, scales[name],
                           directions, h, gen, (project or {}).get(name), rtol)
        rows.append(GradcheckRow(operation, name, err, fwd[0], bwd[0], 4 * directions, err <= rtol, note))
    return rows


def _value_scale(A: SparseMatrix) -> torch.Tensor:
    """Entrywise perturbation scale: ``|a_e|``, or the mean magnitude where an entry is zero."""
    mag = A.values.detach().abs()
    fallback = mag.mean() if mag.numel() else torch.ones((), dtype=A.dtype, device=A.device)
    return torch.where(mag > 0, mag, fallback)


def _vector(n: int, A: SparseMatrix, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, generator=gen, dtype=torch.float64).to(A.device, A.dtype)


def _check_solve(A: SparseMatrix, **kw: Any) -> list[GradcheckRow]:
    from slactl.engine.linear.api import solve

    gen = torch.Generator(device="cpu").manual_seed(kw["seed"])
    n = A.shape[0]
    b, w = _vector(n, A, gen), _vector(n, A, gen)

    def loss(p: dict) -> torch.Tensor:
        return (w * solve(A.with_values(p["values"]), p["b"], rtol=_solve_rtol(A))).sum()

    scales = {"b": b.abs().mean().expand(n), "values": _value_scale(A)}
    return _check("solve", loss, {"b": b, "values": A.values.detach()}, scales, **kw)


def _solve_rtol(A: SparseMatrix) -> float:
    # A direct solve is as accurate as it is whatever the check asks; an iterative one stops here.
    return 1e-10 if A.dtype == torch.float64 else 1e-5


def _check_nonlinear(A: SparseMatrix, **kw: Any) -> list[GradcheckRow]:
    from slactl.engine.nonlinear import nonlinear_solve

    gen = torch.Generator(device="cpu").manual_seed(kw["seed"])
    n = A.shape[0]
    # f of the size of A's rows so that the cubic term matters without dominating.
    f, w = _vector(n, A, gen) * float(A.values.detach().abs().max()), _vector(n, A, gen)
    # An absolute tolerance: the finite-difference solves start at the root, where a relative one
    # would ask for less than rounding error.
    atol = (1e-14 if A.dtype == torch.float64 else 1e-5) * float(torch.linalg.vector_norm(f))
    start = {"u0": torch.zeros(n, dtype=A.dtype, device=A.device)}

    def residual(u: torch.Tensor, M: SparseMatrix, rhs: torch.Tensor) -> torch.Tensor:
        return M @ u + u**3 - rhs

    def loss(p: dict) -> torch.Tensor:
        u = nonlinear_solve(residual, start["u0"], A.with_values(p["values"]), p["f"], rtol=0.0, atol=atol,
                            maxiter=100, linear_rtol=_solve_rtol(A))
        # The first (counted) solve starts from zero; the finite-difference ones from its root.
        start["u0"] = u.detach()
        return (w * u).sum()

    scales = {"f": f.abs().mean().expand(n), "values": _value_scale(A)}
    return _check("nonlinear", loss, {"f": f, "values": A.values.detach()}, scales, **kw,
                  note="A u + u^3 = f, Newton")


def _eigsh() -> Callable | None:
    try:
        import slactl

        return getattr(slactl, "eigsh")
    except (ImportError, AttributeError):
        return None


def _eigsh_call(eigsh: Callable, A: SparseMatrix, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    kwargs: dict[str, Any] = {"which": "SA"}
    params = inspect.signature(eigsh).parameters
    for name in ("tol", "rtol"):
        if name in params:
            kwargs[name] = 1e-11 if A.dtype == torch.float64 else 1e-5  # reachable: ~eps ||A|| / |lambda|
            break
    with warnings.catch_warnings():
        # The loss weighs a cluster of equal eigenvalues uniformly, so its gradient is defined.
        warnings.filterwarnings("ignore", message="near-degenerate eigenvalues")
        vals, vecs = eigsh(A, k, **kwargs)
    return vals, vecs


def _clusters(vals: torch.Tensor, gap: float) -> list[int]:
    """Cluster label of each eigenvalue (consecutive values closer than ``gap`` share one)."""
    labels, current = [0], 0
    for i in range(1, vals.numel()):
        if float(vals[i] - vals[i - 1]) > gap:
            current += 1
        labels.append(current)
    return labels


def _check_eigsh(A: SparseMatrix, k: int, **kw: Any) -> list[GradcheckRow]:
    eigsh = _eigsh()
    skip = lambda why: [GradcheckRow("eigsh", "values", None, 0, 0, 0, True, f"skipped: {why}")]  # noqa: E731
    if eigsh is None:
        return skip("slactl.eigsh is not available in this build")
    pattern_t, perm = A.pattern.transpose()
    if not (pattern_t.same_as(A.pattern) and A.is_symmetric(tol=1e-12)):
        return skip("eigsh needs a symmetric matrix")
    n = A.shape[0]
    k = min(k, n - 2)
    with torch.no_grad():
        probe, _ = _eigsh_call(eigsh, A.detach(), k + 1)
    scale = float(probe.abs().max()) or 1.0
    gap = 1e-8 * scale if A.dtype == torch.float64 else 1e-4 * scale
    labels = _clusters(probe, gap)
    while k > 1 and labels[k] == labels[k - 1]:
        k -= 1  # never cut a cluster of equal eigenvalues: its eigenvectors are not determined
    gen = torch.Generator(device="cpu").manual_seed(kw["seed"])
    per_cluster = torch.rand(labels[k - 1] + 1, generator=gen, dtype=torch.float64) + 0.5
    a = per_cluster[labels[:k]].to(A.device, A.dtype)
    c = (torch.rand(labels[k - 1] + 1, generator=gen, dtype=torch.float64) + 0.5)[labels[:k]].to(A.device, A.dtype)
    C = torch.randn(n, 2, generator=gen, dtype=torch.float64).to(A.device, A.dtype)
    perm = perm.to(torch.int64)

    def loss(p: dict) -> torch.Tensor:
        vals, vecs = _eigsh_call(eigsh, A.with_values(p["values"]), k)
        return (a * vals).sum() + (c * (C.T @ vecs).pow(2).sum(0)).sum()

    def symmetric(d: torch.Tensor) -> torch.Tensor:
        return 0.5 * (d + d[perm])

    rows = _check("eigsh", loss, {"values": A.values.detach()}, {"values": _value_scale(A)}, **kw,
                  project={"values": symmetric}, note=f"k={k}, which=SA, symmetric directions")
    return rows


def gradcheck(op: str = "solve", A: Any = None, *, directions: int = 3, eps: float | None = None,
              seed: int = 0, rtol: float = 1e-6, k: int = 4) -> GradcheckReport:
    """Compare adjoint gradients with central finite differences along random directions.

    Parameters
    ----------
    op : {"solve", "eigsh", "nonlinear", "all"}
        ``solve``: ``L = <w, A^{-1} b>`` w.r.t. ``b`` and ``A.values``. ``eigsh``: eigenvalues and
        eigenvectors of the ``k`` smallest eigenpairs (sign-invariant loss) w.r.t. ``A.values``
        (symmetric ``A`` only; skipped otherwise). ``nonlinear``: ``A u + u^3 = f`` by Newton
        w.r.t. ``f`` and ``A.values``.
    A : SparseMatrix
        A square matrix (its dtype and device are those checked).
    directions : int
        Random directions per input.
    eps : float, optional
        Relative finite-difference step; default ``finfo(dtype).eps ** (1/3)`` (about 6e-6 in
        float64), applied to directions already scaled to each input's magnitude.
    seed : int
        Seed of the directions, right-hand sides and loss weights.
    rtol : float
        Pass threshold on the relative error.
    k : int
        Eigenpairs of the eigsh check.

    Returns
    -------
    GradcheckReport
        One row per operation and input: relative error, linear solves in one forward and one
        backward evaluation, finite-difference evaluations, pass.

    Examples
    --------
    >>> import slactl
    >>> from slactl.io.gallery import generate
    >>> A = slactl.SparseMatrix.from_scipy(generate("convdiff2d", 6).matrix)
    >>> report = slactl.gradcheck("solve", A)
    >>> report.passed, [r.wrt for r in report.rows]
    (True, ['b', 'values'])
    """
    if not isinstance(A, SparseMatrix):
        raise UsageError(f"gradcheck needs a SparseMatrix A, got {type(A).__name__}")
    if A.is_batched or A.shape[0] != A.shape[1] or A.shape[0] < 3:
        raise UsageError(f"gradcheck needs one square matrix of size >= 3, got {A!r}")
    if not A.dtype.is_floating_point:
        raise UsageError(f"gradcheck needs a real floating-point matrix, got {A.dtype}")
    ops = OPERATIONS if op == "all" else (op,)
    if any(o not in OPERATIONS for o in ops):
        raise UsageError(f"op must be one of {', '.join(OPERATIONS)} or all, got {op!r}")
    if int(directions) < 1:
        raise UsageError(f"directions must be at least 1, got {directions}")
    h = float(eps) if eps is not None else float(torch.finfo(A.dtype).eps) ** (1.0 / 3.0)
    A = A.detach()
    kw = dict(directions=int(directions), h=h, rtol=float(rtol), seed=int(seed))
    rows: list[GradcheckRow] = []
    for o in ops:
        if o == "solve":
            rows += _check_solve(A, **kw)
        elif o == "eigsh":
            rows += _check_eigsh(A, int(k), **kw)
        else:
            rows += _check_nonlinear(A, **kw)
    return GradcheckReport(rows, float(rtol), h, int(directions), str(A.dtype).replace("torch.", ""),
                           str(A.device), A.shape, A.nnz)
