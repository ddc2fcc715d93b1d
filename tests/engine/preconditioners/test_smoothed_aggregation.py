"""SmoothedAggregation: AMG set up on the device (MIS(2) aggregation, Galerkin products in torch).

References: SciPy graph distances for the aggregation, SciPy products for the Galerkin matrices,
spsolve for the solutions, dense torch autograd for the gradients, pyamg for iteration counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch

import slactl
from problems import convection_diffusion2d, poisson2d, random_sparse
from slactl.engine.krylov import cg, gmres
from slactl.engine.preconditioners import PRECONDITIONERS, SmoothedAggregation
from slactl.engine.preconditioners._aggregation import aggregate, strength_graph, tentative_prolongator
from slactl.errors import StructureError
from slactl.io.gallery import generate


def _graph_distances(S: sp.csr_matrix) -> np.ndarray:
    return csgraph.shortest_path(S, unweighted=True, directed=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mis2_aggregation_roots_are_independent_and_cover_every_connected_node(seed):
    S = random_sparse(300, 0.01, seed=seed, symmetric=True)
    S = (S + sp.identity(300) * 10).tocsr()
    A = slactl.SparseMatrix.from_scipy(S)
    G = strength_graph(A, 0.0, 1, symmetric=True)
    ids, count, roots = aggregate(G, seed)
    ids, roots = ids.numpy(), np.flatnonzero(roots.numpy())
    off = abs(S).tocsr()
    off.setdiag(0)
    off.eliminate_zeros()
    dist = _graph_distances(off)
    connected = np.asarray((off != 0).sum(axis=1)).ravel() > 0
    assert set(ids[connected]) == set(range(count)) and (ids[~connected] == -1).all()
    assert len(roots) == count and (ids[roots] == np.arange(count)).all()
    for a in range(count):  # every member lies within distance 2 of its root
        assert dist[roots[a], ids == a].max() <= 2
    d = dist[np.ix_(roots, roots)]
    np.fill_diagonal(d, np.inf)
    assert d.min() > 2  # a distance-2 independent set


@pytest.mark.parametrize("k", [1, 3])
def test_tentative_prolongator_has_orthonormal_aggregate_columns_and_interpolates_b(k):
    pr = generate("elasticity2d", 6)
    A = slactl.SparseMatrix.from_scipy(pr.matrix)
    B = torch.from_numpy(pr.near_nullspace) if k == 3 else torch.ones(A.shape[0], 1, dtype=torch.float64)
    ids, count, _ = aggregate(strength_graph(A, 0.0, 2, symmetric=True), 0)
    tent = tentative_prolongator(ids, count, B, 2)
    T = tent.T.to_dense()
    assert T.shape == (A.shape[0], count * k)
    torch.testing.assert_close(T.T @ T, torch.eye(count * k, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(T @ tent.coarse_nullspace, B, atol=1e-12, rtol=1e-12)


def test_galerkin_levels_equal_scipy_triple_products(device):
    S = poisson2d(40)
    A = slactl.SparseMatrix.from_scipy(S, device=device)
    M = SmoothedAggregation(A, max_coarse=20)
    assert len(M.levels) >= 3 and M.levels[-1].A.shape[0] <= 20
    for fine, coarse in zip(M.levels, M.levels[1:]):
        Af, P, R = (m.to_scipy() for m in (fine.A, fine.P, fine.R))
        np.testing.assert_allclose((R - P.T).toarray(), 0, atol=1e-14)
        ref = (P.T @ Af @ P).toarray()
        np.testing.assert_allclose(coarse.A.to_scipy().toarray(), ref, atol=1e-12 * abs(ref).max())
        # P = (I - omega D^-1 A) T: P - T is D^-1 A T up to the scalar omega
        assert fine.lambda_max > 0
    for lv in M.levels:
        assert lv.A.device.type == device.type


@pytest.mark.parametrize("symmetric", [True, False])
def test_dense_galerkin_product_equals_scipy_triple_product(symmetric, device):
    from slactl.engine.preconditioners._aggregation import galerkin_product

    S = poisson2d(30) if symmetric else convection_diffusion2d(30)
    A = slactl.SparseMatrix.from_scipy(S, device=device)
    M = SmoothedAggregation(A, max_coarse=20)
    fine = M.levels[0]
    ref = (fine.R.to_scipy() @ S @ fine.P.to_scipy()).toarray()
    dense = galerkin_product(fine.R, fine.A, fine.P, dense_entries=2**30, symmetric=symmetric)
    sparse = galerkin_product(fine.R, fine.A, fine.P, dense_entries=0)
    for C in (dense, sparse):
        assert C.device.type == device.type
        np.testing.assert_allclose(C.to_scipy().toarray(), ref, atol=1e-13 * abs(ref).max())
    if symmetric:  # averaged with its transpose: symmetric to the last bit, pattern included
        D = dense.to_scipy()
        assert (D != D.T).nnz == 0


def test_setup_with_dense_galerkin_products_matches_the_sparse_one(device):
    A = slactl.SparseMatrix.from_scipy(poisson2d(40), device=device)
    M_sparse = SmoothedAggregation(A, max_coarse=20)
    M_dense = SmoothedAggregation(max_coarse=20)
    M_dense._dense_galerkin_entries = 2**30
    M_dense.setup(A)
    assert [lv.A.shape for lv in M_dense.levels] == [lv.A.shape for lv in M_sparse.levels]
    for a, b in zip(M_dense.levels, M_sparse.levels):
        ref = b.A.to_scipy().toarray()
        np.testing.assert_allclose(a.A.to_scipy().toarray(), ref, atol=1e-12 * abs(ref).max())
    b = torch.ones(A.shape[0], dtype=A.dtype, device=device)
    x = cg(A, b, preconditioner=M_dense, rtol=1e-10).x
    ref = sp.linalg.spsolve(poisson2d(40).tocsc(), np.ones(A.shape[0]))
    np.testing.assert_allclose(x.cpu().numpy(), ref, rtol=1e-8)


def test_a_small_dense_level_is_the_coarsest_by_default():
    rng = np.random.default_rng(0)
    n = 1500  # more than max_coarse on the CPU (1000), 30% of the entries stored
    R = sp.random(n, n, density=0.15, random_state=rng, format="csr")
    S = (R + R.T + sp.diags(np.asarray(abs(R + R.T).sum(1)).ravel() + 1.0)).tocsr()
    assert S.nnz >= 0.2 * n * n
    A = slactl.SparseMatrix.from_scipy(S)
    M = SmoothedAggregation(A, theta=0.0)  # every connection strong: the level could be coarsened
    assert len(M.levels) == 1  # the dense factorization is the whole preconditioner: an exact solve
    b = torch.from_numpy(rng.standard_normal(n))
    res = cg(A, b, preconditioner=M, rtol=1e-10)
    assert res.iterations <= 2
    np.testing.assert_allclose(res.x.numpy(), sp.linalg.spsolve(S.tocsc(), b.numpy()), rtol=1e-8)
    assert len(SmoothedAggregation(A, max_coarse=1000, theta=0.0).levels) > 1  # an explicit max_coarse is kept


@pytest.mark.parametrize(
    "name,size,limit",
    [("poisson2d", 64, 15), ("poisson3d", 16, 15), ("anisotropic2d", 64, 20), ("highcontrast2d", 64, 20),
     ("elasticity2d", 24, 30), ("rgg_laplacian", 3000, 45)],
)
def test_pcg_converges_on_the_gallery_and_matches_spsolve(name, size, limit, device):
    pr = generate(name, size)
    A = slactl.SparseMatrix.from_scipy(pr.matrix, device=device)
    opts = {}
    if pr.near_nullspace is not None:
        opts = dict(near_nullspace=torch.from_numpy(pr.near_nullspace), block_size=2)
    b_np = np.random.default_rng(1).standard_normal(A.shape[0])
    M = SmoothedAggregation(A, **opts)
    res = cg(A, torch.from_numpy(b_np).to(device), rtol=1e-10, preconditioner=M, maxiter=300)
    assert res.converged and res.iterations <= limit, (res.iterations, [lv.A.shape[0] for lv in M.levels])
    x_ref = sp.linalg.spsolve(pr.matrix.tocsc(), b_np)
    cond_guess = 1e6 if name in ("highcontrast2d", "elasticity2d") else 1e4
    assert np.linalg.norm(res.x.cpu().numpy() - x_ref) <= 1e-10 * cond_guess * np.linalg.norm(x_ref)
    assert M.operator_complexity < 4


def test_iterations_are_close_to_pyamg_on_poisson():
    pyamg = pytest.importorskip("pyamg")
    S = poisson2d(96)
    A = slactl.SparseMatrix.from_scipy(S)
    b = np.ones(S.shape[0])
    ours = cg(A, torch.from_numpy(b), rtol=1e-8, preconditioner=SmoothedAggregation(A)).iterations
    residuals: list[float] = []
    pyamg.smoothed_aggregation_solver(S).solve(b, tol=1e-8, accel="cg", residuals=residuals)
    assert ours <= 1.5 * (len(residuals) - 1) + 2


def test_v_cycle_is_symmetric_positive_definite():
    A = slactl.SparseMatrix.from_scipy(poisson2d(12))
    M = SmoothedAggregation(A, max_coarse=10)
    D = M.apply(torch.eye(144, dtype=torch.float64))
    torch.testing.assert_close(D, D.T, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(D).min() > 0 and M.positive_definite and M.transpose() is M


def test_numeric_resetup_reuses_the_aggregation_and_equals_a_fresh_setup():
    S = poisson2d(48)
    A = slactl.SparseMatrix.from_scipy(S)
    first = SmoothedAggregation(A, theta=0.0)
    assert not first.reused_aggregates
    A2 = slactl.SparseMatrix.from_pattern(A.pattern, A.values * torch.linspace(1, 3, A.nnz, dtype=torch.float64))
    A2 = slactl.SparseMatrix.from_pattern(A.pattern, 0.5 * (A2.values + A2.T.values))  # keep it symmetric
    again = SmoothedAggregation(A2, theta=0.0)
    fresh = SmoothedAggregation(A2, theta=0.0, reuse_aggregates=False)
    assert again.reused_aggregates and not fresh.reused_aggregates
    r = torch.randn(A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.apply(r), fresh.apply(r), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(again.apply(r), first.apply(r))  # the values did change


def test_registered_and_usable_through_solve_with_adjoint_gradients():
    assert PRECONDITIONERS["sa-amg"] is SmoothedAggregation
    S = poisson2d(10)
    A0 = slactl.SparseMatrix.from_scipy(S)
    values = A0.values.clone().requires_grad_(True)
    b = torch.linspace(0.5, 1.5, S.shape[0], dtype=torch.float64, requires_grad=True)
    A = slactl.SparseMatrix.from_pattern(A0.pattern, values)
    x = slactl.solve(A, b, method="cg", preconditioner="sa-amg", rtol=1e-12)
    (x * torch.arange(S.shape[0], dtype=torch.float64)).sum().backward()
    dense_values = values.detach().clone().requires_grad_(True)
    b_ref = b.detach().clone().requires_grad_(True)
    Ad = slactl.SparseMatrix.from_pattern(A0.pattern, dense_values).to_dense()
    x_ref = torch.linalg.solve(Ad, b_ref)
    (x_ref * torch.arange(S.shape[0], dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(b.grad, b_ref.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(values.grad, dense_values.grad, rtol=1e-8, atol=1e-10)


def test_gmres_with_sa_amg_on_a_nonsymmetric_matrix():
    S = convection_diffusion2d(32, wind=10.0)
    A = slactl.SparseMatrix.from_scipy(S)
    b = np.ones(S.shape[0])
    M = SmoothedAggregation(A)
    assert not M.symmetric
    res = gmres(A, torch.from_numpy(b), rtol=1e-10, preconditioner=M, maxiter=200)
    plain = gmres(A, torch.from_numpy(b), rtol=1e-10, maxiter=2000)
    assert res.converged and res.iterations < plain.iterations / 3
    x_ref = sp.linalg.spsolve(S.tocsc(), b)
    assert np.linalg.norm(res.x.numpy() - x_ref) <= 1e-7 * np.linalg.norm(x_ref)
    # the transposed hierarchy is exactly M^T
    E = torch.eye(S.shape[0], dtype=torch.float64)
    torch.testing.assert_close(M.transpose().apply(E), M.apply(E).T, rtol=1e-10, atol=1e-12)


def test_stalled_coarsening_is_a_clear_error():
    T = sp.diags([-1.0, 6.0, -1.0], [-1, 0, 1], shape=(9000, 9000), format="csr")
    with pytest.raises(StructureError, match="lower theta"):
        SmoothedAggregation(slactl.SparseMatrix.from_scipy(T), theta=0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_equals_the_eager_cycle():
    A = slactl.SparseMatrix.from_scipy(poisson2d(64), device="cuda")
    graphed = SmoothedAggregation(A)
    eager = SmoothedAggregation(A, cuda_graph=False)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(3):  # replays reuse the static buffers: each answer must still be its own
        r = torch.randn(A.shape[0], dtype=torch.float64, device="cuda", generator=gen)
        torch.testing.assert_close(graphed.apply(r), eager.apply(r), rtol=1e-12, atol=1e-12)
    assert graphed._graphs and all(entry is not False for entry in graphed._graphs.values())
    R = torch.randn(A.shape[0], 3, dtype=torch.float64, device="cuda", generator=gen)
    for _ in range(2):  # the first application of a shape is eager, the second a replay
        torch.testing.assert_close(graphed.apply(R), eager.apply(R), rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_failed_capture_leaves_the_cycle_eager(monkeypatch):
    from slactl.engine.preconditioners import smoothed_aggregation as sa

    def refuse(fn, device, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(sa, "capture", refuse)
    A = slactl.SparseMatrix.from_scipy(poisson2d(48), device="cuda")
    M, eager = SmoothedAggregation(A), SmoothedAggregation(A, cuda_graph=False)
    r = torch.randn(A.shape[0], dtype=torch.float64, device="cuda")
    for _ in range(2):
        torch.testing.assert_close(M.apply(r), eager.apply(r), rtol=1e-12, atol=1e-12)
    assert list(M._graphs.values()) == [False]


def test_memory_budgeted_chunks_cover_the_rows_and_follow_the_room(monkeypatch):
    """The chunks of a memory-budgeted product (the device's allocation faked): contiguous, their
    entry bounds those of the rows, at most what the room holds at the prior bytes per product,
    then at the measured ones (with the margin), aimed at no fewer products than the floor."""
    from slactl.engine.preconditioners import _aggregation

    S = poisson2d(40)
    A = slactl.SparseMatrix.from_scipy(S)
    R = SmoothedAggregation(A, max_coarse=20).levels[0].R
    per_row_end, total = _aggregation._products_per_row(R, A)
    ends = per_row_end.tolist()
    crow = R.pattern.crow.tolist()
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)

    def products(r0, r1):
        return ends[r1 - 1] - (ends[r0 - 1] if r0 else 0)

    def run(ceiling, floor, measured_bytes, cap=2**24):
        memory = _aggregation.MemoryBudget(ceiling, max_products=cap)
        chunks = []
        for r0, r1, (e0, e1), peaks in _aggregation._adaptive_chunks(R, per_row_end, total, floor, memory):
            assert (e0, e1) == (crow[r0], crow[r1]) and r1 > r0
            assert not chunks or chunks[-1][1] == r0
            chunks.append((r0, r1, products(r0, r1), memory.bytes_per_product))
            peaks.append(measured_bytes * products(r0, r1))
        assert chunks[0][0] == 0 and chunks[-1][1] == R.shape[0]
        return chunks, memory

    chunks, memory = run(24 * 1000, 100, 12)
    assert chunks[0][3] == 24.0 and chunks[0][2] <= 1000 < chunks[0][2] + ends[chunks[0][1]] - ends[chunks[0][1] - 1]
    assert all(bpp == pytest.approx(13.2) for *_, bpp in chunks[1:])
    assert all(p <= 24 * 1000 / 13.2 for _, _, p, _ in chunks[1:])
    assert len(chunks) > 2 and memory.bytes_per_product == pytest.approx(13.2)
    floor = total // 5
    chunks, _ = run(0, floor, 12)  # no room: the floor's chunks
    assert all(p <= floor + 20 for _, _, p, _ in chunks) and 5 <= len(chunks) <= 6
    chunks, _ = run(10**9, 100, 12)  # room for all of it
    assert len(chunks) == 1
    chunks, _ = run(10**9, 100, 12, cap=total // 3)  # room for all of it, but chunks of at most a third
    assert all(p <= total // 3 for _, _, p, _ in chunks) and 3 <= len(chunks) <= 4


def test_memory_budget_keeps_the_largest_bytes_per_product_of_full_chunks(monkeypatch):
    """Synthetic products per row (one row above any chunk, empty rows) and a different measured
    figure per chunk: every chunk makes progress, the figure is the largest per-product one so far
    (of that chunk's own products) with the 10% margin, and a remainder smaller than a quarter of
    the floor does not count."""
    from slactl.engine.preconditioners import _aggregation

    per_row = [30, 0, 40, 5000, 0, 30, 30, 60, 0, 10] * 6 + [5000, 3]  # products of each row
    m = len(per_row)
    S = sp.csr_matrix((np.ones(m), (np.arange(m), np.zeros(m, dtype=int))), shape=(m, 1))
    A = slactl.SparseMatrix.from_scipy(S)
    per_row_end = torch.cumsum(torch.tensor(per_row, dtype=torch.int64), 0)
    total = int(per_row_end[-1])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    memory = _aggregation.MemoryBudget(24 * 300)  # room for 300 products at the prior
    figures = iter([20, 50, 10, 30] * 10)
    largest, seen = None, []
    for r0, r1, (e0, e1), peaks in _aggregation._adaptive_chunks(A, per_row_end, total, 100, memory):
        assert r1 > r0 and (e0, e1) == (r0, r1) and (not seen or seen[-1][1] == r0) and len(seen) < m
        # (the chunks measured so far: the largest figure, with the margin)
        assert memory.bytes_per_product == pytest.approx(24.0 if largest is None else 1.1 * largest)
        products = sum(per_row[r0:r1])
        assert products <= max(memory.products(A.device, 100), max(per_row[r0:r1]))  # whole rows
        figure = 1000 if products < 100 // 4 else next(figures)  # (a remainder's overhead)
        peaks += [figure * products // 2, figure * products]  # the chunk's largest counts
        if largest is None or products >= 100 // 4:
            largest = figure if largest is None else max(largest, figure)
        seen.append((r0, r1))
    assert seen[0][0] == 0 and seen[-1][1] == m
    assert memory.bytes_per_product == pytest.approx(1.1 * largest)
    assert any(per_row[r0:r1] == [5000] for r0, r1 in seen)  # the large row alone
    assert per_row[seen[-1][0]:] == [3] and largest < 1000  # the remainder, not counted


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_ceiling_takes_fewer_galerkin_chunks_for_the_same_hierarchy(monkeypatch):
    """The Galerkin chunks grow to what the memory under the set-up's ceiling holds: fewer cuSPARSE
    ALG2 calls, the same coarse operators as the floor's many small chunks."""
    from slactl.engine.ops import cusparse_spgemm
    from slactl.engine.preconditioners import _aggregation
    from slactl.engine.preconditioners import smoothed_aggregation as sa

    A = slactl.SparseMatrix.from_scipy(poisson2d(120), device="cuda")
    if not cusparse_spgemm.available_for(A, A):
        pytest.skip("no cuSPARSE ALG2 here")
    calls = [0]
    real = cusparse_spgemm.spgemm

    def counted(a, b, *stats):
        calls[0] += 1
        return real(a, b, *stats)

    monkeypatch.setattr(cusparse_spgemm, "spgemm", counted)
    monkeypatch.setattr(_aggregation, "_CHUNK_PRODUCTS", 1000)
    monkeypatch.setattr(sa, "_GALERKIN_PRODUCTS_PER_UNKNOWN", 0.1)
    hierarchies, counts = [], []
    for ceiling in (0, 10**5):
        monkeypatch.setattr(sa, "_GALERKIN_CEILING_PER_UNKNOWN", ceiling)
        calls[0] = 0
        hierarchies.append(SmoothedAggregation(A, max_coarse=50))
        counts.append(calls[0])
    small, large = hierarchies
    assert counts[1] < counts[0]
    assert [lv.A.shape for lv in small.levels] == [lv.A.shape for lv in large.levels]
    for a, b in zip(small.levels[1:], large.levels[1:]):
        torch.testing.assert_close(a.A.to_dense(), b.A.to_dense(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("max_products", [None, 500, 10_000])
def test_chunked_torch_triple_product_equals_scipy(max_products, device):
    """The CUDA path (row chunks through torch.sparse.mm) against SciPy, also exercised on the CPU."""
    from slactl.engine.preconditioners._aggregation import sparse_product

    S = poisson2d(30)
    A = slactl.SparseMatrix.from_scipy(S, device=device)
    M = SmoothedAggregation(A, max_coarse=20)
    P, R = M.levels[0].P, M.levels[0].R
    got = sparse_product(R, A, P, max_products=max_products, engine="torch")
    ref = (R.to_scipy() @ S @ P.to_scipy()).tocsr()
    ref.sort_indices()
    C = got.to_scipy()
    assert (C.indptr == ref.indptr).all() and (C.indices == ref.indices).all()
    np.testing.assert_allclose(C.data, ref.data, rtol=1e-13, atol=1e-13)
    two = sparse_product(A, P, max_products=max_products, engine="torch").to_scipy()
    np.testing.assert_allclose(two.toarray(), (S @ P.to_scipy()).toarray(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("fail_above", [0, 40, 400])
def test_products_that_cusparse_refuses_are_halved_then_expanded(fail_above, device, monkeypatch):
    """cuSPARSE's "insufficient resources" (seen on H200) is simulated for every chunk of more than
    ``fail_above`` rows: the product falls back to halving and to expand-sort-compress, and still
    equals SciPy's, entry for entry (also for a chain of three factors)."""
    from slactl.engine.preconditioners import _aggregation

    real = _aggregation._product_rows

    def refuse(A, right, r0, r1, bounds=None, unsorted=None, alg2=False, peaks=None):
        if r1 - r0 > fail_above:
            raise RuntimeError("CUDA error: insufficient resources when calling `cusparseSpGEMM_compute(...)`")
        return real(A, right, r0, r1, bounds, unsorted, alg2=alg2, peaks=peaks)

    monkeypatch.setattr(_aggregation, "_product_rows", refuse)
    monkeypatch.setattr(_aggregation, "_EXPAND_PRODUCTS", 300)
    S = poisson2d(30)
    A = slactl.SparseMatrix.from_scipy(S, device=device)
    M = SmoothedAggregation(A, max_coarse=20)
    P, R = M.levels[0].P, M.levels[0].R
    for factors, ref in (((R, A, P), R.to_scipy() @ S @ P.to_scipy()), ((A, P), S @ P.to_scipy())):
        got = _aggregation.sparse_product(*factors, max_products=2000, engine="torch").to_scipy()
        ref = ref.tocsr()
        ref.sort_indices()
        assert (got.indptr == ref.indptr).all() and (got.indices == ref.indices).all()
        np.testing.assert_allclose(got.data, ref.data, rtol=1e-13, atol=1e-13)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the sortedness check is deferred there)")
def test_an_unsorted_cusparse_product_is_recomputed_sorted(monkeypatch):
    """On CUDA the products' sortedness is checked once at the end; a product reported unsorted
    makes the whole product recompute with each piece sorted, and it still equals SciPy's."""
    from slactl.engine.preconditioners import _aggregation

    real, calls = _aggregation._unsorted, []

    def first_unsorted(crow, col):
        calls.append(1)
        flag = real(crow, col)
        return flag | True if len(calls) == 1 else flag

    monkeypatch.setattr(_aggregation, "_unsorted", first_unsorted)
    S = poisson2d(40)
    A = slactl.SparseMatrix.from_scipy(S, device="cuda")
    got = _aggregation.sparse_product(A, A, max_products=3000).to_scipy()
    ref = (S @ S).tocsr()
    ref.sort_indices()
    assert len(calls) > 1  # checked at the end, then again product by product
    assert (got.indptr == ref.indptr).all() and (got.indices == ref.indices).all()
    np.testing.assert_allclose(got.data, ref.data, rtol=1e-13, atol=1e-13)


def test_tentative_of_one_vector_normalizes_it_per_aggregate():
    """The one-vector path against a loop over aggregates (numpy) and against the general sweep's
    first column (k = 2): unaggregated rows are empty, a zero aggregate gives zero entries."""
    from slactl.engine.preconditioners._aggregation import tentative_prolongator

    rng = np.random.default_rng(3)
    ids = torch.from_numpy(rng.integers(-1, 7, 60))
    b = torch.from_numpy(rng.standard_normal(60))
    b[ids == 2] = 0.0  # a zero-norm aggregate
    one = tentative_prolongator(ids, 7, b[:, None])
    T = one.T.to_scipy().toarray()
    for a in range(7):
        members = (ids == a).numpy()
        norm = np.linalg.norm(b.numpy()[members])
        np.testing.assert_allclose(one.coarse_nullspace[a, 0], norm, rtol=1e-14)
        want = b.numpy()[members] / norm if norm > 0 else 0.0
        np.testing.assert_allclose(T[members, a], want, rtol=1e-14)
    assert one.T.nnz == int((ids >= 0).sum()) and (T[(ids < 0).numpy()] == 0).all()
    two = tentative_prolongator(ids, 7, torch.stack([b, torch.from_numpy(rng.standard_normal(60))], 1))
    np.testing.assert_allclose(two.T.to_scipy().toarray()[:, 0::2], T, rtol=1e-13, atol=1e-15)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the sort-based transpose)")
def test_transpose_on_cuda_equals_scipy():
    from slactl.engine.preconditioners.smoothed_aggregation import _transpose

    M = SmoothedAggregation(slactl.SparseMatrix.from_scipy(poisson2d(60), device="cuda"), max_coarse=50)
    for lv in M.levels[:-1]:
        R = _transpose(lv.P)
        want = lv.P.to_scipy().T.tocsr()
        want.sort_indices()
        got = R.to_scipy()
        assert (got.indptr == want.indptr).all() and (got.indices == want.indices).all()
        assert (got.data == want.data).all()


def test_other_product_errors_are_not_swallowed(monkeypatch):
    from slactl.engine.preconditioners import _aggregation

    def broken(A, right, r0, r1, bounds=None, unsorted=None, alg2=False, peaks=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(_aggregation, "_product_rows", broken)
    A = slactl.SparseMatrix.from_scipy(poisson2d(10))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _aggregation.sparse_product(A, A, engine="torch")


def test_a_stalled_setup_can_be_repeated_and_reused_with_new_values():
    T = sp.diags([-1.0, 30.0, -1.0], [-1, 0, 1], shape=(3000, 3000), format="csr")  # no strong connection
    A = slactl.SparseMatrix.from_scipy(T)
    b = torch.ones(3000, dtype=torch.float64)
    ref = sp.linalg.spsolve(T.tocsc(), b.numpy())
    for values in (A.values, A.values, A.values * 1.01):
        Ai = slactl.SparseMatrix.from_pattern(A.pattern, values)
        x = slactl.solve(Ai, b, method="cg", preconditioner="sa-amg", rtol=1e-12)
        scale = float(values[0] / A.values[0])
        assert np.linalg.norm(x.numpy() * scale - ref) <= 1e-9 * np.linalg.norm(ref)


def test_rank_deficient_near_nullspace_gives_decoupled_coarse_unknowns_not_a_singular_level():
    pr = generate("anisotropic2d", 32)  # line aggregates: [1, x, y] has rank 2 on each of them
    A = slactl.SparseMatrix.from_scipy(pr.matrix)
    xy = torch.from_numpy(pr.coordinates)
    B = torch.cat([torch.ones(A.shape[0], 1, dtype=torch.float64), xy], 1)
    M = SmoothedAggregation(A, near_nullspace=B, max_coarse=50)
    res = cg(A, torch.ones(A.shape[0], dtype=torch.float64), preconditioner=M, rtol=1e-10, maxiter=300)
    assert res.converged
    # T is orthonormal where nonzero: every column is a unit vector or zero (dependent on the aggregate)
    ids, count, _ = aggregate(strength_graph(A, M.theta, 1, symmetric=True), M.seed)
    tent = tentative_prolongator(ids, count, B)
    G = tent.T.to_dense()
    norms = G.norm(dim=0)
    assert bool(((norms - 1).abs() < 1e-12).logical_or(norms == 0).all()) and bool((norms == 0).any())


def test_float32_symmetric_matrix_is_recognised_as_symmetric():
    A = slactl.SparseMatrix.from_scipy(poisson2d(30), dtype=torch.float32)
    M = SmoothedAggregation(A)
    assert M.symmetric and M.positive_definite and M.transpose() is M


def test_a_one_sided_entry_makes_the_strength_graph_symmetric_again():
    S = poisson2d(20).tolil()
    S[0, 57] = -1e-9  # no mirror entry: the pattern is not symmetric, the values almost are
    A = slactl.SparseMatrix.from_scipy(S.tocsr())
    from slactl.engine.preconditioners.smoothed_aggregation import _symmetric_pattern

    assert not _symmetric_pattern(A) and _symmetric_pattern(slactl.SparseMatrix.from_scipy(poisson2d(20)))
    M = SmoothedAggregation(A, theta=0.0)
    assert cg(A, torch.ones(400, dtype=torch.float64), preconditioner=M).converged


def test_near_nullspace_cache_is_keyed_by_value():
    pr = generate("elasticity2d", 8)
    A = slactl.SparseMatrix.from_scipy(pr.matrix)
    B = torch.from_numpy(pr.near_nullspace)
    SmoothedAggregation(A, near_nullspace=B, block_size=2)
    assert SmoothedAggregation(A, near_nullspace=B.clone(), block_size=2).reused_aggregates
    B2 = B.clone()
    B2[:, 2] *= 2.0
    assert not SmoothedAggregation(A, near_nullspace=B2, block_size=2).reused_aggregates


def test_invalid_options_are_usage_errors():
    from slactl.errors import ShapeError, UsageError

    A = slactl.SparseMatrix.from_scipy(poisson2d(8))
    with pytest.raises(UsageError, match="symmetry"):
        SmoothedAggregation(A, symmetry="SPD")
    with pytest.raises(ShapeError, match="k >= 1"):
        SmoothedAggregation(A, near_nullspace=torch.zeros(64, 0, dtype=torch.float64))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_re_setup_drops_the_graphs_of_the_previous_hierarchy():
    A = slactl.SparseMatrix.from_scipy(poisson2d(40), device="cuda")
    M = SmoothedAggregation(A)
    r = torch.ones(A.shape[0], dtype=torch.float64, device="cuda")
    M.apply(r)  # captures a graph on the first hierarchy
    A2 = slactl.SparseMatrix.from_pattern(A.pattern, 2.0 * A.values)
    M.setup(A2)
    torch.testing.assert_close(M.apply(r), SmoothedAggregation(A2, cuda_graph=False).apply(r), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk", [1000, 1 << 22])
def test_strength_graph_matches_the_definition_in_any_chunking(monkeypatch, chunk):
    """|a_ij| >= theta sqrt(|a_ii a_jj|), off the diagonal, against SciPy/NumPy, whether the test
    runs over all entries at once or in chunks of entries."""
    from slactl.engine.preconditioners import _aggregation

    monkeypatch.setattr(_aggregation, "_STRENGTH_CHUNK", chunk)
    S = (poisson2d(60) + 0.3 * sp.random(3600, 3600, density=1e-3, random_state=1, format="csr")).tocsr()
    S = (S + S.T).tocsr()
    G = strength_graph(slactl.SparseMatrix.from_scipy(S), 0.25, 1, symmetric=True)
    coo, d = S.tocoo(), np.abs(S.diagonal())
    strong = (coo.row != coo.col) & (np.abs(coo.data) >= 0.25 * np.sqrt(d[coo.row] * d[coo.col])) & (coo.data != 0)
    want = sorted(zip(coo.row[strong].tolist(), coo.col[strong].tolist()))
    assert sorted(zip(G.dst.tolist(), G.col.tolist())) == want


def test_filtered_smoothing_keeps_anisotropic_prolongators_on_their_grid_lines():
    """On ``-u_xx - 1e-3 u_yy`` the prolongator smoothed with the filtered matrix never reaches
    across a grid line (every P[i, J] has a node of aggregate J on i's line): complexity falls
    well below the unfiltered hierarchy's, at no more CG iterations."""
    N = 96
    S = generate("anisotropic2d", N).matrix
    A = slactl.SparseMatrix.from_scipy(S)
    b = torch.from_numpy(np.random.default_rng(0).standard_normal(N * N))
    plain, filtered = SmoothedAggregation(A, filter_weak=False), SmoothedAggregation(A)
    its = [cg(A, b, rtol=1e-10, preconditioner=M).iterations for M in (plain, filtered)]
    assert its[1] <= its[0] + 1
    assert filtered.operator_complexity < 0.7 * plain.operator_complexity
    line = np.arange(N * N) // N  # the grid line (y index) of every unknown: x is the strong direction
    for M, crosses in ((filtered, False), (plain, True)):
        P = M.levels[0].P.to_scipy().tocoo()
        ids, count, _ = aggregate(strength_graph(A, M.theta, 1, symmetric=True), M.seed)
        lines_of = [set() for _ in range(count)]
        for i, a in enumerate(ids.tolist()):
            if a >= 0:
                lines_of[a].add(line[i])
        assert any(line[i] not in lines_of[J] for i, J in zip(P.row, P.col)) == crosses


def test_numeric_resetup_with_filtering_equals_a_fresh_setup(monkeypatch):
    """The filtered matrix is rebuilt from the new values and each level's own near-nullspace when
    the aggregates are reused (new values 2.5 A: the same strong couplings, so a fresh set-up
    aggregates alike and is the reference)."""
    S = generate("anisotropic2d", 40).matrix
    A = slactl.SparseMatrix.from_scipy(S)
    SmoothedAggregation(A, max_coarse=50)
    A2 = slactl.SparseMatrix.from_pattern(A.pattern, A.values * 2.5)
    from slactl.engine.preconditioners import smoothed_aggregation as sa_module

    seen = []  # the near-nullspace vector each level's filter lumps against
    real = sa_module.filtered_matrix
    monkeypatch.setattr(sa_module, "filtered_matrix", lambda Al, theta, b: seen.append(b) or real(Al, theta, b))
    again, fresh = SmoothedAggregation(A2, max_coarse=50), SmoothedAggregation(A2, max_coarse=50, reuse_aggregates=False)
    assert again.reused_aggregates and len(again.levels) == len(fresh.levels) > 2
    # level 1's vector is the coarse constant: sqrt(aggregate size) per aggregate (a normalized T)
    ids, count, _ = aggregate(strength_graph(A, 0.08, 1, symmetric=True), 0)
    sizes = torch.bincount(ids[ids >= 0], minlength=count).double()
    levels = len(seen) // 2
    assert seen[0] is None and seen[levels] is None  # the constant: row sums
    for b in (seen[1], seen[levels + 1]):  # reused, fresh
        torch.testing.assert_close(b.abs(), sizes.sqrt(), rtol=1e-14, atol=0)
    r = torch.randn(A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.apply(r), fresh.apply(r), rtol=1e-11, atol=1e-12)
    unfiltered = SmoothedAggregation(A2, max_coarse=50, filter_weak=False)
    assert not torch.allclose(again.apply(r), unfiltered.apply(r))  # the filter is at work


def test_without_weak_couplings_on_the_finest_level_no_level_is_filtered(monkeypatch):
    """Poisson has no weak coupling: its hierarchy is the unfiltered one, exactly, and the filter
    is tried on the finest level only (the Galerkin operators' small entries are left alone)."""
    from slactl.engine.preconditioners import smoothed_aggregation as sa_module

    A = slactl.SparseMatrix.from_scipy(poisson2d(40))
    calls = []
    real = sa_module.filtered_matrix
    monkeypatch.setattr(sa_module, "filtered_matrix", lambda Al, theta, b: calls.append(Al.shape[0]) or real(Al, theta, b))
    filtered, plain = SmoothedAggregation(A, max_coarse=20), SmoothedAggregation(A, max_coarse=20, filter_weak=False)
    assert calls == [A.shape[0]] and len(filtered.levels) > 2
    r = torch.randn(A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(filtered.apply(r), plain.apply(r), rtol=0, atol=0)
