"""LinearOperator.dots: several inner products with one reduction (one all-reduce when distributed)."""

import torch

from slactl.engine.krylov import cg
from slactl.engine.krylov.operator import MatrixOperator
from slactl.io.gallery import generate
import slactl


class CountingOperator(MatrixOperator):
    """A single-process operator whose reduce is not the identity's: counts the reductions."""

    def __init__(self, A):
        super().__init__(A)
        self.reductions = 0

    def reduce(self, local):
        self.reductions += 1
        return local


def test_dots_match_dot_and_use_one_reduction():
    A = slactl.SparseMatrix.from_scipy(generate("poisson2d", 8).matrix)
    op = CountingOperator(A)
    g = torch.Generator().manual_seed(0)
    x, y, z = (torch.randn(64, dtype=torch.float64, generator=g) for _ in range(3))
    a, b = op.dots((x, y), (y, z))
    assert op.reductions == 1
    assert torch.equal(a, torch.vdot(x, y)) and torch.equal(b, torch.vdot(y, z))
    X, Y = torch.randn(64, 3, dtype=torch.float64, generator=g), torch.randn(64, 3, dtype=torch.float64, generator=g)
    (c,) = op.dots((X, Y))
    assert torch.allclose(c, (X * Y).sum(0))
    plain = MatrixOperator(A).dots((x, y), (y, z))  # identity reduce: unstacked, same values
    assert torch.equal(plain[0], a) and torch.equal(plain[1], b)


def test_cg_reduces_twice_per_iteration():
    A = slactl.SparseMatrix.from_scipy(generate("poisson2d", 12).matrix)
    op = CountingOperator(A)
    res = cg(op, torch.ones(144, dtype=torch.float64), rtol=1e-10, check_every=1)
    assert res.converged
    # per iteration: (p, A p) and [||r||^2, (r, M r)] together; plus a handful at set-up and the end
    assert 2 * res.iterations <= op.reductions <= 2 * res.iterations + 8
