"""Distributed smoothed-aggregation AMG on 2 and 4 Gloo ranks: every coarse matrix equals the
Galerkin product P^T A P of the gathered global P and A (SciPy), CG iterations stay at the
single-process AMG's count (block Jacobi with local AMG needs several times more), the solutions
and gradients agree with single-process references, the cycle is symmetric positive definite
for SPD A, and its transpose is exact for a nonsymmetric A."""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import slactl
from slactl.io.gallery import generate

RTOL = 1e-10
MAX_COARSE = 40  # small, so that 1,024 unknowns make a 3-level hierarchy


def _gathered_levels(M):
    """Every level's global A and P (COO pieces of every rank), on every rank."""
    import torch.distributed as dist

    levels = []
    for l, lv in enumerate(M.levels):
        row, col = lv.A.global_coo()
        piece = {"A": (row.numpy(), col.numpy(), lv.A.local.values.numpy()), "n": lv.A.shape[0]}
        if lv.P is not None:
            coo = lv.P.P.to_scipy().tocoo()
            cols = torch.cat([M.levels[l + 1].A.owned, lv.P.ghost_ids])
            piece["P"] = (lv.A.owned[torch.from_numpy(coo.row).long()].numpy(),
                          cols[torch.from_numpy(coo.col).long()].numpy(), coo.data)
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, piece)
        levels.append(parts)
    return levels


def _assemble(parts, key, shape):
    cat = lambda i: np.concatenate([p[key][i] for p in parts])  # noqa: E731
    return sp.csr_matrix((cat(2), (cat(0), cat(1))), shape=shape)


def _work(pmethod):
    import torch.distributed as dist

    import slactl.dist as sd
    from slactl.dist.multigrid import DistSmoothedAggregation

    out = {}
    for name in ("poisson2d", "anisotropic2d"):
        problem = generate(name, 32)
        A = sd.DistSparseMatrix.scatter(problem.matrix, method=pmethod, coordinates=problem.coordinates)
        M = DistSmoothedAggregation(A, max_coarse=MAX_COARSE)
        b = torch.ones(A.n_owned, dtype=torch.float64)
        res = sd.solve(A, b, method="cg", preconditioner=M, rtol=RTOL, return_result=True)
        block = sd.solve(A, b, method="cg", preconditioner=sd.BlockJacobi(A, "sa-amg", max_coarse=MAX_COARSE),
                         rtol=RTOL, return_result=True)
        out[name] = {"levels": _gathered_levels(M), "x": A.gather(res.x.detach(), root=None).numpy(),
                     "iterations": res.iterations, "block_iterations": block.iterations,
                     "symmetric": M.symmetric, "positive_definite": M.positive_definite}
        if name == "poisson2d":
            # <M x, y> = <x, M y> and <M x, x> > 0, summed over ranks
            gen = torch.Generator().manual_seed(dist.get_rank())
            x, y = (torch.randn(A.n_owned, dtype=torch.float64, generator=gen) for _ in range(2))
            pair = torch.stack([(M.apply(x) * y).sum(), (x * M.apply(y)).sum(), (M.apply(x) * x).sum()])
            dist.all_reduce(pair)
            out["spd_pair"] = pair.tolist()
            # the adjoint gradient of a CG solve preconditioned by the distributed AMG
            values = A.values.detach().clone().requires_grad_(True)
            w = A.distribute(torch.from_numpy(np.random.default_rng(5).standard_normal(A.shape[0])))
            xs = sd.solve(A.with_values(values), b, method="cg", preconditioner=M, rtol=1e-12)
            (xs * w).sum().backward()
            row, col = A.global_coo()
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (row.numpy(), col.numpy(), values.grad.numpy()))
            out["grad"] = parts
            # the preconditioner by name, as `slactl solve STORE --preconditioner dist-amg` passes it
            named = sd.solve(A, b, method="cg", preconditioner="dist-amg", rtol=RTOL, return_result=True)
            out["named"] = (A.gather(named.x.detach(), root=None).numpy(), named.iterations)
    # nonsymmetric: GMRES, and the transpose the adjoint solve uses
    problem = generate("convdiff2d", 32)
    A = sd.DistSparseMatrix.scatter(problem.matrix, method=pmethod, coordinates=problem.coordinates)
    M = DistSmoothedAggregation(A, max_coarse=MAX_COARSE)
    bn = A.distribute(torch.from_numpy(np.random.default_rng(4).standard_normal(A.shape[0])))
    res = sd.solve(A, bn, method="gmres", preconditioner=M, rtol=RTOL, return_result=True)
    gen = torch.Generator().manual_seed(10 + dist.get_rank())
    x, y = (torch.randn(A.n_owned, dtype=torch.float64, generator=gen) for _ in range(2))
    pair = torch.stack([(M.apply(x) * y).sum(), (x * M.transpose().apply(y)).sum()])
    dist.all_reduce(pair)
    out["convdiff2d"] = {"x": A.gather(res.x.detach(), root=None).numpy(), "symmetric": M.symmetric,
                         "pair": pair.tolist(), "levels": len(M.levels)}
    return out


def _single_process_iterations(matrix):
    from slactl.engine.krylov import cg
    from slactl.engine.preconditioners import SmoothedAggregation

    A = slactl.SparseMatrix.from_scipy(matrix)
    b = torch.ones(matrix.shape[0], dtype=torch.float64)
    return cg(A, b, rtol=RTOL, preconditioner=SmoothedAggregation(A, max_coarse=MAX_COARSE)).iterations


def test_coarse_matrices_are_galerkin_products_and_cg_keeps_the_single_process_iterations(launched):
    nprocs = launched[0]
    out = launched[2][0]["test_dist_multigrid:_work"]
    for name in ("poisson2d", "anisotropic2d"):
        r = out[name]
        levels = r["levels"]
        assert len(levels) >= 3, [p[0]["n"] for p in levels]
        for fine, coarse in zip(levels[:-1], levels[1:]):
            n0, n1 = fine[0]["n"], coarse[0]["n"]
            A = _assemble(fine, "A", (n0, n0))
            P = _assemble(fine, "P", (n0, n1))
            Ac = _assemble(coarse, "A", (n1, n1))
            ref = (P.T @ A @ P).tocsr()
            assert abs(ref - Ac).max() <= 1e-13 * abs(ref).max(), name
            assert n1 < n0
        matrix = generate(name, 32).matrix
        ones = np.ones(matrix.shape[0])
        x_ref = spla.spsolve(matrix.tocsc(), ones)
        assert np.linalg.norm(ones - matrix @ r["x"]) <= RTOL * np.linalg.norm(ones) * (1 + 1e-6), name
        assert np.linalg.norm(r["x"] - x_ref) <= 1e4 * RTOL * np.linalg.norm(x_ref), name
        # global coarse spaces: the iteration count of one process, not that of block Jacobi
        single = _single_process_iterations(matrix)
        assert r["iterations"] <= single + 2, (name, nprocs, r["iterations"], single)
        assert r["iterations"] < r["block_iterations"], (name, r["iterations"], r["block_iterations"])
        assert r["symmetric"] and r["positive_definite"]


def test_cycle_is_symmetric_positive_definite_and_gradients_match(launched):
    from test_dist_solve import _check_entries

    out = launched[2][0]["test_dist_multigrid:_work"]
    mx_y, x_my, mx_x = out["spd_pair"]
    assert abs(mx_y - x_my) <= 1e-12 * abs(mx_y) and mx_x > 0
    matrix = generate("poisson2d", 32).matrix
    ones = np.ones(matrix.shape[0])
    x, its = out["named"]
    assert np.linalg.norm(ones - matrix @ x) <= RTOL * np.linalg.norm(ones) * (1 + 1e-6)
    assert its == out["poisson2d"]["iterations"]
    Aref = slactl.SparseMatrix.from_scipy(matrix).requires_grad_(True)
    w = torch.from_numpy(np.random.default_rng(5).standard_normal(matrix.shape[0]))
    (slactl.solve(Aref, torch.from_numpy(ones), rtol=1e-12) * w).sum().backward()
    _check_entries(Aref, out["grad"], Aref.values.grad.numpy(), rtol=1e-7)


def test_nonsymmetric_gmres_and_exact_transpose(launched):
    out = launched[2][0]["test_dist_multigrid:_work"]["convdiff2d"]
    matrix = generate("convdiff2d", 32).matrix
    b = np.random.default_rng(4).standard_normal(matrix.shape[0])
    assert not out["symmetric"] and out["levels"] >= 2
    assert np.linalg.norm(b - matrix @ out["x"]) <= RTOL * np.linalg.norm(b) * (1 + 1e-6)
    a, c = out["pair"]
    assert abs(a - c) <= 1e-12 * abs(a) and a != 0


def test_dist_amg_needs_a_distributed_matrix():
    import pytest

    from slactl.dist.multigrid import DistSmoothedAggregation
    from slactl.errors import UsageError

    with pytest.raises(UsageError, match="DistSparseMatrix"):
        DistSmoothedAggregation(slactl.SparseMatrix.from_scipy(sp.eye(4, format="csr")))


def test_column_block_keeps_rows_and_order():
    """The owned block of a rank's rows (what local aggregation sees), taken without a sort."""
    from slactl.dist.matrix import column_block

    rng = np.random.default_rng(0)
    M = sp.random(30, 40, density=0.2, random_state=rng, format="csr")
    M.sort_indices()
    for lo, hi in ((0, 32), (32, 40), (5, 17)):
        out = column_block(slactl.SparseMatrix.from_scipy(M), lo, hi).to_scipy()
        ref = M[:, lo:hi].tocsr()
        ref.sort_indices()
        assert out.shape == ref.shape and (out.indptr == ref.indptr).all() and (out.indices == ref.indices).all()
        assert (out.data == ref.data).all()


def test_add_entries_merges_a_few_coo_entries_into_csr():
    from slactl.dist.multigrid import add_entries

    rng = np.random.default_rng(1)
    X = sp.random(50, 30, density=0.15, random_state=rng, format="csr")
    rows, cols = rng.integers(0, 50, 12), rng.integers(0, 30, 12)
    rows[:3], cols[:3] = X.nonzero()[0][:3], X.nonzero()[1][:3]  # some land on stored entries
    vals = rng.standard_normal(12)
    out = add_entries(slactl.SparseMatrix.from_scipy(X), torch.from_numpy(rows), torch.from_numpy(cols),
                      torch.from_numpy(vals)).to_scipy()
    ref = X + sp.csr_matrix((vals, (rows, cols)), shape=X.shape)
    assert abs(out - ref).max() <= 1e-14
    assert out.has_sorted_indices or np.all(np.diff(out.indices[out.indptr[0]:out.indptr[1]]) > 0)
