"""Partitioning and its quality report, checked against brute-force counts."""

import numpy as np
import pytest
import scipy.sparse as sp

from slactl.dist.partition import METHODS, partition, partition_quality, symmetrized_graph
from slactl.errors import PartitionError, UsageError
from slactl.io.gallery import generate


def _brute_quality(A, part):
    A = sp.coo_array(A)
    n, parts = A.shape[0], part.max() + 1
    halo = [set() for _ in range(parts)]
    for i, j in zip(A.row, A.col):
        if part[i] != part[j]:
            halo[part[i]].add(j)
    edges = {(min(i, j), max(i, j)) for i, j in zip(A.row, A.col) if i != j}
    cut = sum(part[i] != part[j] for i, j in edges)
    send = [sum(1 for q in range(parts) for j in halo[q] if part[j] == r) for r in range(parts)]
    return cut, [len(h) for h in halo], send


@pytest.mark.parametrize("method", METHODS)
def test_every_method_balances_and_quality_matches_brute_force(method):
    p = generate("convdiff2d", 12)  # nonsymmetric: the graph must be symmetrized
    part = partition(p.matrix, 4, method, coordinates=p.coordinates)
    assert part.shape == (144,) and set(part.tolist()) == {0, 1, 2, 3}
    q = partition_quality(p.matrix, part, method)
    cut, halo, send = _brute_quality(p.matrix, part)
    assert (q.edge_cut, q.halo, q.send) == (cut, halo, send)
    assert q.volume == sum(halo) and q.imbalance <= 1.05 and sum(q.rank_nnz) == p.matrix.nnz
    assert q.rows == np.bincount(part).tolist()


def test_rcb_and_metis_cut_less_than_a_bad_numbering():
    p = generate("poisson2d", 24)
    perm = np.random.default_rng(0).permutation(576)
    A = p.matrix[perm][:, perm]
    cuts = {m: partition_quality(A, partition(A, 4, m, coordinates=p.coordinates[perm])).edge_cut for m in METHODS}
    assert cuts["metis"] < cuts["contiguous"] / 4 and cuts["rcb"] < cuts["contiguous"] / 4


def test_symmetrized_graph_has_no_diagonal_and_is_symmetric():
    A = sp.csr_array(np.array([[1.0, 2, 0], [0, 1, 0], [3, 0, 1]]))
    g = symmetrized_graph(A)
    assert g.diagonal().sum() == 0 and (g != g.T).nnz == 0 and g.nnz == 4


def test_errors():
    A = sp.eye(4, format="csr")
    with pytest.raises(PartitionError):
        partition(A, 5, "contiguous")
    with pytest.raises(UsageError):
        partition(A, 2, "rcb")
    with pytest.raises(UsageError):
        partition(A, 2, "spectral")
    with pytest.raises(PartitionError):
        partition(sp.random(3, 4, format="csr"), 2)
