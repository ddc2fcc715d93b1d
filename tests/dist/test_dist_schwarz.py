"""Overlapping additive Schwarz on 2 and 4 Gloo ranks: fewer Krylov iterations than block Jacobi on
2D Poisson, the single-process solution, an exact transpose, and adjoint gradients through it."""

import numpy as np
import scipy.sparse.linalg as spla
import torch

import slactl
from slactl.io.gallery import generate

RTOL = 1e-10


def _work(pmethod):
    import torch.distributed as dist

    import slactl.dist as sd

    P = generate("poisson2d", 16)
    A = sd.DistSparseMatrix.scatter(P.matrix, method=pmethod, coordinates=P.coordinates)
    b = torch.ones(A.n_owned, dtype=torch.float64)
    out = {}
    for overlap in (0, 1, 2):
        # RAS with exact subdomain solves: GMRES and BiCGStab
        M = sd.BlockJacobi(A, "lu", overlap=overlap)
        for method in ("gmres", "bicgstab"):
            res = sd.solve(A, b, method=method, preconditioner=M, rtol=RTOL, return_result=True)
            out[(method, overlap)] = (A.gather(res.x.detach(), root=None).numpy(), res.iterations, M.name)
    # symmetric ASM with IC(0) on the extended subdomains, for CG
    M = sd.BlockJacobi(A, "ic0", overlap=1, restricted=False)
    res = sd.solve(A, b, method="cg", preconditioner=M, rtol=RTOL, return_result=True)
    out["cg-asm"] = (A.gather(res.x.detach(), root=None).numpy(), M.symmetric, M.name)
    # <M x, y> = <x, M^T y> summed over ranks: the transpose (used by the adjoint) is exact
    M = sd.BlockJacobi(A, "ilu0", overlap=2)
    gen = torch.Generator().manual_seed(dist.get_rank())
    x, y = (torch.randn(A.n_owned, 2, dtype=torch.float64, generator=gen) for _ in range(2))
    pair = torch.stack([(M.apply(x) * y).sum(), (x * M.transpose().apply(y)).sum()])
    dist.all_reduce(pair)
    out["pair"] = pair.tolist()
    # gradients of a GMRES solve preconditioned by RAS (the backward uses RAS^T)
    values = A.values.detach().clone().requires_grad_(True)
    Ad = A.with_values(values)
    w = Ad.distribute(torch.from_numpy(np.random.default_rng(5).standard_normal(A.shape[0])))
    x = sd.solve(Ad, b, method="gmres", preconditioner=sd.BlockJacobi(A, "ilu0", overlap=1), rtol=1e-12)
    (x * w).sum().backward()
    row, col = A.global_coo()
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (row.numpy(), col.numpy(), values.grad.numpy()))
    out["grad"] = parts
    return out


def test_schwarz_overlap_cuts_iterations_and_matches_single_process(launched):
    from test_dist_solve import _check_entries

    out = launched[2][0]["test_dist_schwarz:_work"]
    P = generate("poisson2d", 16).matrix
    ones = np.ones(P.shape[0])
    x_ref = spla.spsolve(P.tocsc(), ones)
    for key in [(m, o) for m in ("gmres", "bicgstab") for o in (0, 1, 2)] + ["cg-asm"]:
        x = out[key][0]
        assert np.linalg.norm(ones - P @ x) <= RTOL * np.linalg.norm(ones) * (1 + 1e-6), key
        assert np.linalg.norm(x - x_ref) <= 1e3 * RTOL * np.linalg.norm(x_ref), key
    its = {k: v[1] for k, v in out.items() if isinstance(k, tuple)}
    assert its[("gmres", 1)] < its[("gmres", 0)] and its[("gmres", 2)] < its[("gmres", 1)], its
    assert its[("bicgstab", 2)] < its[("bicgstab", 0)], its
    assert out[("gmres", 0)][2] == "block-lu" and out[("gmres", 2)][2] == "ras(2)-lu"
    assert out["cg-asm"][1] and out["cg-asm"][2] == "asm(1)-ic0"
    a, c = out["pair"]
    assert abs(a - c) <= 1e-12 * abs(a) and a != 0
    Aref = slactl.SparseMatrix.from_scipy(P).requires_grad_(True)
    w = torch.from_numpy(np.random.default_rng(5).standard_normal(P.shape[0]))
    (slactl.solve(Aref, torch.from_numpy(ones), rtol=1e-14) * w).sum().backward()
    _check_entries(Aref, out["grad"], Aref.values.grad.numpy(), rtol=1e-7)


def test_negative_overlap_is_a_usage_error():
    import pytest

    from slactl.dist import BlockJacobi
    from slactl.errors import UsageError

    with pytest.raises(UsageError, match="overlap must be non-negative"):
        BlockJacobi(None, "ilu0", overlap=-1)
