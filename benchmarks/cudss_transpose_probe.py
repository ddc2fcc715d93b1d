"""Does cuDSS's CUDSS_CONFIG_SOLVE_MODE give A^T x = b with the factors of A? (one-off probe)

Runs a nonsymmetric convection-diffusion matrix through nvmath's DirectSolver and sets the solve
mode at three points (before analysis, before factorization, before solve), with values 0..3,
printing the residual against A and against A^T for each.
"""
import numpy as np
import scipy.sparse as sp
import torch
import nvmath.sparse.advanced as nsa
from nvmath.bindings import cudss

n1 = 60
T = sp.diags([-1.3, 2.0, -0.7], [-1, 0, 1], shape=(n1, n1))
A = (sp.kron(T, sp.eye(n1)) + sp.kron(sp.eye(n1), T) + sp.diags(np.linspace(0.1, 1, n1 * n1))).tocsr()
n = A.shape[0]
dev = torch.device("cuda")
crow = torch.from_numpy(A.indptr.astype(np.int32)).to(dev)
col = torch.from_numpy(A.indices.astype(np.int32)).to(dev)
vals = torch.from_numpy(A.data).to(dev)
At = A.T.tocsr()
rng = np.random.default_rng(0)
bnp = rng.standard_normal(n)
print("cuDSS version", cudss.get_property(0), cudss.get_property(1), cudss.get_property(2))
print("SOLVE_MODE dtype", cudss.get_config_param_dtype(cudss.ConfigParam.SOLVE_MODE))


def setmode(solver, mode):
    dt = cudss.get_config_param_dtype(cudss.ConfigParam.SOLVE_MODE)
    v = np.array([mode], dtype=dt)
    cudss.config_set(solver.solution_config._config_ptr, cudss.ConfigParam.SOLVE_MODE, v.ctypes.data, v.itemsize)
    g = np.zeros(1, dtype=dt)
    cudss.config_get(solver.solution_config._config_ptr, cudss.ConfigParam.SOLVE_MODE, g.ctypes.data, g.itemsize, 0)
    return int(g[0])


def rel(M, x):
    return float(np.linalg.norm(bnp - M @ x) / np.linalg.norm(bnp))


for where in ("before_plan", "before_factorize", "before_solve"):
    for mode in (1, 2, 3):
        b = torch.from_numpy(bnp).to(dev)
        a = torch.sparse_csr_tensor(crow, col, vals.clone(), size=(n, n))
        try:
            s = nsa.DirectSolver(a, b, options=nsa.DirectSolverOptions(sparse_system_type=nsa.DirectSolverMatrixType.GENERAL, blocking=True))
            got = None
            if where == "before_plan":
                got = setmode(s, mode)
            s.plan()
            if where == "before_factorize":
                got = setmode(s, mode)
            s.factorize()
            if where == "before_solve":
                got = setmode(s, mode)
            x = s.solve().cpu().numpy()
            print(f"{where:17s} mode={mode} readback={got} |b-Ax|/|b|={rel(A, x):.2e} |b-A^T x|/|b|={rel(At, x):.2e}")
            s.free()
        except Exception as exc:  # noqa: BLE001
            print(f"{where:17s} mode={mode} error {type(exc).__name__}: {exc}")
