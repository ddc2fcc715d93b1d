"""Distributed eigsh on 2 and 4 Gloo ranks against the single-process slactl.eigsh: eigenvalues,
eigenvectors (up to sign) and the adjoint gradient of a loss of both."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from slactl.io.gallery import generate

K = 3
WEIGHTS = (1.0, 2.0, 3.0)


def _matrix():
    # Poisson plus a random diagonal: no degenerate eigenvalues, so eigenvectors have gradients
    P = generate("poisson2d", 10).matrix
    return (P + sp.diags(np.random.default_rng(0).uniform(0, 0.5, P.shape[0]))).tocsr()


def _loss(lam, V, c):
    # sign-invariant in the eigenvectors
    return (lam * torch.tensor(WEIGHTS, dtype=lam.dtype)).sum() + (V**2 * c[:, None]).sum()


def _work(pmethod):
    import torch.distributed as dist

    import slactl.dist as sd
    from slactl.errors import NotImplementedFeatureError

    M = _matrix()
    A = sd.DistSparseMatrix.scatter(M, method=pmethod, coordinates=generate("poisson2d", 10).coordinates)
    c = A.distribute(torch.from_numpy(np.random.default_rng(1).standard_normal(M.shape[0])))
    out = {}
    for which, pre in (("SA", "ic0"), ("LA", None)):
        values = A.values.detach().clone().requires_grad_(True)
        res = sd.eigsh(A.with_values(values), K, which, preconditioner=pre, tol=1e-10, return_result=True)
        _loss(res.eigenvalues, res.eigenvectors, c).backward()  # every rank: the backward is collective
        row, col = A.global_coo()
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (row.numpy(), col.numpy(), values.grad.numpy()))
        out[which] = (res.eigenvalues.detach().numpy(), A.gather(res.eigenvectors.detach(), root=None).numpy(),
                      parts, res.converged, res.preconditioner)
    with pytest.raises(NotImplementedFeatureError, match="which='SA' or 'LA'"):
        sd.eigsh(A, K, "LM")
    return out


def test_eigsh_agrees_with_single_process(launched):
    from test_dist_solve import _check_entries

    M = _matrix()
    c = torch.from_numpy(np.random.default_rng(1).standard_normal(M.shape[0]))
    for rank_results in launched[2][1:]:  # eigenvalues replicated identically on every rank
        np.testing.assert_array_equal(rank_results["test_dist_eigen:_work"]["SA"][0],
                                      launched[2][0]["test_dist_eigen:_work"]["SA"][0])
    out = launched[2][0]["test_dist_eigen:_work"]
    for which in ("SA", "LA"):
        A = slactl.SparseMatrix.from_scipy(M).requires_grad_(True)
        lam, V = slactl.eigsh(A, K, which, method="dense")
        _loss(lam, V, c).backward()
        got_lam, got_V, parts, converged, pre = out[which]
        assert converged and pre == ("block-ic0" if which == "SA" else "none")
        np.testing.assert_allclose(got_lam, lam.detach().numpy(), rtol=1e-10)
        # eigenvectors to solver accuracy, and the same sign convention
        assert np.abs(got_V - V.detach().numpy()).max() <= 1e-7, which
        _check_entries(A, parts, A.values.grad.numpy(), rtol=1e-6)
