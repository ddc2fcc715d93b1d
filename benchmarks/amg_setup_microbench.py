"""Micro-benchmark of the MIS(2) aggregation kernels on the GPU (issue 7): rounds, and the
neighbour-max sweep as scatter_reduce (int32 / int64 keys) vs segment_reduce over CSR rows."""
import time
import numpy as np
import scipy.sparse as sp
import torch
import slactl
from slactl.engine.preconditioners._aggregation import aggregate, strength_graph


def t(f, reps=5):
    f(); torch.cuda.synchronize(); s = time.perf_counter()
    for _ in range(reps):
        f()
    torch.cuda.synchronize()
    return (time.perf_counter() - s) / reps * 1e3


for side in (1000, 4000):
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(side, side), format="csr")
    I = sp.identity(side, format="csr")
    S = (sp.kron(T, I) + sp.kron(I, T)).tocsr()
    dev = torch.device("cuda")
    A = slactl.SparseMatrix.from_csr(torch.from_numpy(S.indptr.astype(np.int32)).to(dev), torch.from_numpy(S.indices.astype(np.int32)).to(dev),
                                     torch.from_numpy(S.data).to(dev), S.shape, check=False)
    n = S.shape[0]
    _ = A.row
    print(f"n={n}: strength {t(lambda: strength_graph(A, 0.08, 1, True)):.2f} ms")
    G = strength_graph(A, 0.08, 1, True)
    print(f"  aggregate {t(lambda: aggregate(G), 2):.2f} ms")
    k32 = torch.randint(0, 3 * n, (n,), device=dev, dtype=torch.int32)
    k64 = k32.long()
    kf = k32.double()
    print(f"  scatter amax int32 {t(lambda: G.neighbour_max(k32)):.3f} ms, int64 {t(lambda: G.neighbour_max(k64)):.3f} ms, f64 {t(lambda: G.neighbour_max(kf)):.3f} ms")
    crow = A.pattern.crow.long(); col = A.col
    print(f"  segment_reduce max f64 {t(lambda: torch.segment_reduce(kf[col], 'max', offsets=crow)):.3f} ms")
    print(f"  gather only {t(lambda: k32[G.src]):.3f} ms")
    # rounds
    import slactl.engine.preconditioners._aggregation as ag
    calls = [0]
    orig = ag.Graph.neighbour_max
    def counting(self, v):
        calls[0] += 1
        return orig(self, v)
    ag.Graph.neighbour_max = counting
    aggregate(G)
    ag.Graph.neighbour_max = orig
    print(f"  neighbour_max calls in aggregate: {calls[0]} (rounds ~ {(calls[0] - 2) // 2})")
    print(f"  is_symmetric (transpose) {t(lambda: slactl.SparseMatrix.from_pattern(slactl.engine.pattern.Pattern(A.pattern.crow, A.col, A.shape), A.values).is_symmetric(1e-10), 1):.2f} ms")
    from slactl.engine.preconditioners.smoothed_aggregation import _symmetric, _spectral_radius
    print(f"  randomized symmetric {t(lambda: _symmetric(A)):.2f} ms; spectral radius {t(lambda: _spectral_radius(A, 1 / A.diagonal(), True)):.2f} ms")
