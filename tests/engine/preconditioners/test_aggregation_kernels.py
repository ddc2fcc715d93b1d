"""The Triton kernels of the MIS(2) aggregation (neighbour maximum, one selection round) against torch.

* the kernel under Triton's CPU interpreter (``interp_`` tests, run by
  ``test_kernel_under_the_triton_interpreter`` in a ``TRITON_INTERPRET=1`` process): equal to
  ``scatter_reduce(amax)`` over the edge list (independent code) on graphs with empty rows, rows
  longer than a tile, int32 and int64 values and the ``-1`` of unaggregated nodes;
* its compilation for sm_90 (no GPU needed);
* on CUDA (``-m gpu``): the same, and a whole aggregation with the kernel equal to one without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slactl
from problems import poisson2d
from triton_interpreter import ptx_for_sm90, require_triton_compiler, run_interpreted_tests
from slactl.engine.krylov import fused_cg
from slactl.engine.preconditioners import _aggregation
from slactl.engine.preconditioners._aggregation import Graph, aggregate, strength_graph

INTERPRETING = fused_cg.interpreting()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 process of test_kernel_under_the_triton_interpreter")


def _graph(n: int, seed: int, device="cpu", long_rows: bool = True) -> Graph:
    """A random symmetric graph with isolated nodes and (optionally) a few rows of ~n/3 neighbours."""
    S = sp.random(n, n, density=4.0 / n, random_state=seed, format="csr")
    if long_rows:
        spokes = np.arange(1, n, 3)
        hubs = sp.csr_matrix((np.ones(spokes.size), (np.zeros(spokes.size, dtype=int), spokes)), shape=(n, n))
        S = S + hubs
    S = ((S + S.T) != 0).astype(np.float64).tolil()
    S.setdiag(0)
    keep = np.ones(n)
    keep[5::7] = 0  # isolated nodes
    S = (sp.diags(keep) @ S.tocsr() @ sp.diags(keep)).tocsr()
    S.eliminate_zeros()
    A = slactl.SparseMatrix.from_scipy(S + sp.eye(n), device=device)  # strength_graph drops the diagonal
    G = strength_graph(A, 0.0, 1, symmetric=True)
    assert (G.crow[1:] == G.crow[:-1]).any()  # some isolated nodes
    return G


def _reference(G: Graph, values: torch.Tensor) -> torch.Tensor:
    return values.scatter_reduce(0, G.dst, values[G.col.to(torch.int64)], reduce="amax", include_self=True)


@pytest.mark.skipif(not fused_cg.triton_available(), reason="needs triton (the interpreter runs the kernel)")
@pytest.mark.skipif(INTERPRETING, reason="already in the interpreter process")
def test_kernel_under_the_triton_interpreter():
    """Run this file's ``interp_`` tests in a process with TRITON_INTERPRET=1."""
    run_interpreted_tests(__file__)


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("seed", [0, 1])
def test_interp_neighbour_max_equals_scatter_max(dtype, seed):
    G = _graph(500, seed)
    G.interpret = True
    assert _aggregation._use_kernel(torch.zeros(1), True)
    values = torch.from_numpy(np.random.default_rng(seed).integers(-1, 3 * G.n, G.n)).to(dtype)
    torch.testing.assert_close(G.neighbour_max(values), _reference(G, values), rtol=0, atol=0)


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_interp_mis_round_equals_the_torch_round(dtype):
    G = _graph(400, 2)
    rng = np.random.default_rng(2)
    state = torch.from_numpy(rng.integers(0, 3, G.n)).to(dtype)  # out, undecided and roots mixed
    priority = torch.from_numpy(rng.permutation(G.n)).to(dtype)
    want = G.mis_round(state, priority)
    G.interpret = True
    got = G.mis_round(state, priority)
    assert torch.equal(got, want) and not torch.equal(want, state)


@needs_interpreter
def test_interp_aggregation_with_the_kernel_equals_the_one_without():
    A = slactl.SparseMatrix.from_scipy(poisson2d(30))
    G = strength_graph(A, 0.08, 1, symmetric=True)
    ids, count, roots = aggregate(G, 3)
    G.interpret = True
    ids_k, count_k, roots_k = aggregate(G, 3)
    assert count_k == count
    assert torch.equal(ids_k, ids) and torch.equal(roots_k, roots)


_SIGNATURES = {
    "_neighbour_max_kernel": {"crow": "*i64", "col": "*i32", "values": "*i32", "out": "*i32", "n": "i32"},
    "_mis_key_max_kernel": {"crow": "*i64", "col": "*i32", "state": "*i32", "priority": "*i32", "out": "*i32", "n": "i32"},
    "_mis_update_kernel": {"crow": "*i64", "col": "*i32", "best1": "*i32", "state": "*i32", "priority": "*i32", "n": "i32"},
}


@pytest.mark.parametrize("kernel", sorted(_SIGNATURES))
def test_kernel_compiles_for_sm90_without_a_gpu(kernel):
    """Triton's whole pipeline (MLIR, LLVM, PTX, ptxas) for an H100/H200, no device needed."""
    require_triton_compiler()
    K = _aggregation._kernels()
    sig = dict(_SIGNATURES[kernel], BS="constexpr", KP="constexpr")
    assert "max.s32" in ptx_for_sm90(getattr(K, kernel), sig, dict(BS=128, KP=8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not fused_cg.triton_available(), reason="needs CUDA and triton")
def test_kernels_on_cuda_equal_the_torch_versions():
    G = _graph(20000, 0, device="cuda")
    assert _aggregation._use_kernel(G.col, False)
    for dtype in (torch.int32, torch.int64):
        values = torch.randint(-1, 3 * G.n, (G.n,), device="cuda", dtype=dtype)
        assert torch.equal(G.neighbour_max(values), _reference(G, values))
        state = torch.randint(0, 3, (G.n,), device="cuda", dtype=dtype)
        priority = torch.randperm(G.n, device="cuda").to(dtype)
        got = G.mis_round(state, priority)
        Gc = Graph(G.n, G.crow.cpu(), G.col.cpu())
        assert torch.equal(got.cpu(), Gc.mis_round(state.cpu(), priority.cpu()))
