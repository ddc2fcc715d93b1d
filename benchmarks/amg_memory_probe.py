"""Where the set-up of sa-amg holds device memory (issue 7 memory target): allocated MB after each step."""
import numpy as np, scipy.sparse as sp, torch, slactl
from slactl.engine.krylov.operator import MatrixOperator
from slactl.engine.preconditioners.smoothed_aggregation import _symmetric, _inverse_diagonal, _spectral_radius
side = 1000
T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(side, side), format="csr"); I = sp.identity(side, format="csr")
S = (sp.kron(T, I) + sp.kron(I, T)).tocsr()
dev = torch.device("cuda")
mb = lambda: round(torch.cuda.memory_allocated() / 2**20, 1)
A = slactl.SparseMatrix.from_csr(torch.from_numpy(S.indptr.astype(np.int32)).to(dev), torch.from_numpy(S.indices.astype(np.int32)).to(dev), torch.from_numpy(S.data).to(dev), S.shape, check=False)
print("matrix", mb())
x = torch.ones(S.shape[0], dtype=torch.float64, device=dev)
op = MatrixOperator(A); print("operator", mb())
y = op.matvec(x); torch.cuda.synchronize(); print("one torch.mv", mb())
y = op.matvec(x); torch.cuda.synchronize(); print("two torch.mv", mb())
b = A @ x; torch.cuda.synchronize(); print("A @ x (slactl spmm)", mb())
_ = A.row; print("pattern.row", mb())
s = _symmetric(A); print("symmetric", s, mb())
d = _inverse_diagonal(A); print("inverse diagonal", mb())
lam = _spectral_radius(A, d, True); print("spectral radius", lam, mb())
print(torch.cuda.memory_summary(abbreviated=True)[:1500])
