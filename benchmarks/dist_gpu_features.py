"""The distributed features beyond PCG over NCCL on GPUs, each against the single-process answer.

    torchrun --nproc-per-node 2 benchmarks/dist_gpu_features.py     (Gloo on CPUs without CUDA)

Overlapping Schwarz (RAS + GMRES, set-up messages over NCCL), block Jacobi with local sa-amg (CG),
eigsh (LOBPCG) with an eigenvalue gradient, Newton-Krylov with parameter gradients. Rank 0 prints
one line per check and exits non-zero when one fails.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import scipy.sparse.linalg as spla
import torch
import torch.distributed as dist

import slactl
import slactl.dist as sd
from slactl.io.gallery import generate


def residual(u, A, f, c):
    return A @ u + c * u**3 - f


def main() -> int:
    rank_local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(rank_local)
        dist.init_process_group("nccl")
        dev = torch.device("cuda", rank_local)
    else:  # the same checks over Gloo on CPUs
        dist.init_process_group("gloo")
        dev = torch.device("cpu")
    rank = dist.get_rank()
    P = generate("poisson2d", 48)
    M = P.matrix.tocsr()
    n = M.shape[0]
    A = sd.DistSparseMatrix.scatter(M, method="metis", device=dev)
    ok = True

    def report(name: str, err: float, tol: float, extra: str = "") -> None:
        nonlocal ok
        ok &= bool(err <= tol)
        if rank == 0:
            print(f"{name}: error {err:.2e} (tolerance {tol:.0e}) {'ok' if err <= tol else 'FAILED'} {extra}", flush=True)

    ones = torch.ones(A.n_owned, dtype=torch.float64, device=dev)
    x_ref = spla.spsolve(M.tocsc(), np.ones(n))
    for overlap in (0, 2):
        Mp = sd.BlockJacobi(A, "lu", overlap=overlap)
        res = sd.solve(A, ones, method="gmres", preconditioner=Mp, rtol=1e-10, return_result=True)
        x = A.gather(res.x.detach(), root=None).cpu().numpy()
        report(f"RAS overlap {overlap} + GMRES", np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref), 1e-7, f"({res.iterations} iterations)")
    res = sd.solve(A, ones, method="cg", preconditioner="sa-amg", rtol=1e-10, return_result=True)
    x = A.gather(res.x.detach(), root=None).cpu().numpy()
    report("block-Jacobi(sa-amg) + CG", np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref), 1e-7, f"({res.iterations} iterations)")

    values = A.values.detach().clone().requires_grad_(True)
    lam, V = sd.eigsh(A.with_values(values), 4, "SA", tol=1e-10)
    lam_ref = np.sort(np.linalg.eigvalsh(M.toarray()))[:4]
    report("eigsh SA (4)", float(np.abs(lam.detach().cpu().numpy() - lam_ref).max() / abs(lam_ref).max()), 1e-8)
    lam.sum().backward()
    # d(sum lambda)/d a_ij = sum_k v_k[i] v_k[j]: against the single-process eigenvectors
    row, col = A.global_coo()
    w, U = np.linalg.eigh(M.toarray())
    U = U[:, :4]
    expected = (U[row.cpu().numpy()] * U[col.cpu().numpy()]).sum(1)
    got = values.grad.detach().cpu().numpy()
    err = torch.tensor([float(np.abs(got - expected).max())], device=dev)
    dist.all_reduce(err, op=dist.ReduceOp.MAX)
    report("eigsh eigenvalue gradient", float(err), 1e-7)

    f_global = np.random.default_rng(2).uniform(1, 2, n)
    f = A.distribute(torch.from_numpy(f_global)).to(dev).clone().requires_grad_(True)
    c = torch.tensor(0.5, dtype=torch.float64, device=dev)
    res = sd.nonlinear_solve(residual, torch.zeros(A.n_owned, dtype=torch.float64, device=dev), A, f, c,
                             preconditioner=sd.BlockJacobi(A, "jacobi"), return_result=True)
    res.u.sum().backward()
    u = A.gather(res.u.detach(), root=None).cpu().numpy()
    gf = A.gather(f.grad.detach(), root=None).cpu().numpy()
    if rank == 0:
        Ms = slactl.SparseMatrix.from_scipy(M)
        fs = torch.from_numpy(f_global).requires_grad_(True)
        us = slactl.nonlinear_solve(lambda v, g: Ms @ v + 0.5 * v**3 - g, torch.zeros(n, dtype=torch.float64), fs)
        us.sum().backward()
        u_ref, gf_ref = us.detach().numpy(), fs.grad.numpy()
    else:
        u_ref, gf_ref = u, gf
    report("Newton-Krylov solution", float(np.linalg.norm(u - u_ref) / np.linalg.norm(u_ref)), 1e-8)
    report("Newton-Krylov gradient w.r.t. f", float(np.linalg.norm(gf - gf_ref) / np.linalg.norm(gf_ref)), 1e-7)
    flag = torch.tensor([0 if ok else 1], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    dist.destroy_process_group()
    return int(flag.item())


if __name__ == "__main__":
    sys.exit(main())
