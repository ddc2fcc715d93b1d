"""Raw cuSPARSE SpGEMM through ctypes (ALG default / 2 / 3) against torch.sparse.mm, on the
Galerkin products of the 1M 2D Poisson sa-amg set-up: time per product (host wall, synchronized),
peak memory, and equality."""
import ctypes, glob, os, sys, time, importlib.util
sys.path.insert(0, os.getcwd())
import torch

def _lib():
    import re
    for line in open("/proc/self/maps"):
        m = re.search(r"(/\S*libcusparse\.so[.\d]*)", line)
        if m:
            return ctypes.CDLL(m.group(1))
    cands = glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia", "*", "lib", "libcusparse.so*"))
    return ctypes.CDLL(cands[0])

torch.zeros(1, device="cuda")
# make torch load cusparse
_a = torch.sparse_csr_tensor(torch.tensor([0, 1], device="cuda"), torch.tensor([0], device="cuda"), torch.ones(1, device="cuda", dtype=torch.float64), size=(1, 1))
(_a @ _a)
L = _lib()
print("lib", L._name)
vp = ctypes.c_void_p
H = vp(); assert L.cusparseCreate(ctypes.byref(H)) == 0
ver = ctypes.c_int(); L.cusparseGetVersion(H, ctypes.byref(ver)); print("cusparse version", ver.value)
I32, I64, BASE0, R64F, OPN = 2, 3, 0, 1, 0

def check(s, what):
    if s != 0:
        raise RuntimeError(f"{what}: cusparse status {s}")

def csr_descr(crow, col, val, shape):
    d = vp()
    check(L.cusparseCreateCsr(ctypes.byref(d), ctypes.c_int64(shape[0]), ctypes.c_int64(shape[1]), ctypes.c_int64(col.numel()),
                              vp(crow.data_ptr()), vp(col.data_ptr()), vp(val.data_ptr()), I32, I32, BASE0, R64F), "createCsr")
    return d

def spgemm(A, B, alg=0, chunk_fraction=0.2):
    """A, B: torch sparse CSR (int32 indices, float64), CUDA. C = A @ B as (crow, col, val)."""
    m, n = A.shape[0], B.shape[1]
    dev = A.device
    L.cusparseSetStream(H, vp(torch.cuda.current_stream().cuda_stream))
    a_arr = (A.crow_indices(), A.col_indices(), A.values())
    b_arr = (B.crow_indices(), B.col_indices(), B.values())
    dA, dB = csr_descr(*a_arr, A.shape), csr_descr(*b_arr, B.shape)
    c_crow = torch.empty(m + 1, dtype=torch.int32, device=dev)
    dC = vp()
    check(L.cusparseCreateCsr(ctypes.byref(dC), ctypes.c_int64(m), ctypes.c_int64(n), ctypes.c_int64(0), vp(c_crow.data_ptr()), None, None, I32, I32, BASE0, R64F), "createCsr C")
    desc = vp(); check(L.cusparseSpGEMM_createDescr(ctypes.byref(desc)), "createDescr")
    alpha, beta = ctypes.c_double(1.0), ctypes.c_double(0.0)
    common = (H, OPN, OPN, ctypes.byref(alpha), dA, dB, ctypes.byref(beta), dC, R64F, alg, desc)
    s1 = ctypes.c_size_t(0)
    check(L.cusparseSpGEMM_workEstimation(*common, ctypes.byref(s1), None), "work1")
    buf1 = torch.empty(max(1, s1.value), dtype=torch.uint8, device=dev)
    check(L.cusparseSpGEMM_workEstimation(*common, ctypes.byref(s1), vp(buf1.data_ptr())), "work2")
    s2 = ctypes.c_size_t(0)
    if alg in (4, 5):
        prods = ctypes.c_int64(0); check(L.cusparseSpGEMM_getNumProducts(desc, ctypes.byref(prods)), "numprods")
        s3 = ctypes.c_size_t(0)
        check(L.cusparseSpGEMM_estimateMemory(*common, ctypes.c_float(chunk_fraction), ctypes.byref(s3), None, None), "est1")
        buf3 = torch.empty(max(1, s3.value), dtype=torch.uint8, device=dev)
        check(L.cusparseSpGEMM_estimateMemory(*common, ctypes.c_float(chunk_fraction), ctypes.byref(s3), vp(buf3.data_ptr()), ctypes.byref(s2)), "est2")
        del buf3
    else:
        check(L.cusparseSpGEMM_compute(*common, ctypes.byref(s2), None), "compute1")
    buf2 = torch.empty(max(1, s2.value), dtype=torch.uint8, device=dev)
    check(L.cusparseSpGEMM_compute(*common, ctypes.byref(s2), vp(buf2.data_ptr())), "compute2")
    r, c, nnz = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
    check(L.cusparseSpMatGetSize(dC, ctypes.byref(r), ctypes.byref(c), ctypes.byref(nnz)), "getsize")
    c_col = torch.empty(nnz.value, dtype=torch.int32, device=dev)
    c_val = torch.empty(nnz.value, dtype=torch.float64, device=dev)
    check(L.cusparseCsrSetPointers(dC, vp(c_crow.data_ptr()), vp(c_col.data_ptr()), vp(c_val.data_ptr())), "setptr")
    check(L.cusparseSpGEMM_copy(*common), "copy")
    L.cusparseSpGEMM_destroyDescr(desc); L.cusparseDestroySpMat(dA); L.cusparseDestroySpMat(dB); L.cusparseDestroySpMat(dC)
    del buf1, buf2
    return c_crow, c_col, c_val

spec = importlib.util.spec_from_file_location("bag", "benchmarks/bench_amg_gpu.py")
bag = importlib.util.module_from_spec(spec); spec.loader.exec_module(bag)
from slactl.engine.preconditioners import smoothed_aggregation as sa
dev = torch.device("cuda")
for size in (1000, 2000):
    S, _ = bag.problem("poisson2d", size)
    A = bag.fresh(S, dev)
    M = sa.SmoothedAggregation(A); torch.cuda.synchronize()
    for lvl in M.levels[:-1]:
        Al, P, R = lvl.A, lvl.P, lvl.R
        tA = Al.pattern.torch_csr(Al.values.detach()); tP = P.pattern.torch_csr(P.values.detach()); tR = R.pattern.torch_csr(R.values.detach())
        if tA.crow_indices().dtype != torch.int32:
            print("skip int64 level"); continue
        def torch_way():
            RA = torch.sparse.mm(tR, tA); return torch.sparse.mm(RA, tP)
        def ours(alg, cf=0.2):
            c = spgemm(tR, tA, alg, cf); RA = torch.sparse_csr_tensor(*c, size=(tR.shape[0], tA.shape[1]))
            return spgemm(RA, tP, alg, cf)
        ref = torch_way(); torch.cuda.synchronize()
        ref_d = ref.to_dense() if ref.shape[0] < 20000 else None
        for name, f in [("torch", torch_way), ("alg0", lambda: ours(0)), ("alg1", lambda: ours(3)), ("alg2", lambda: ours(4)), ("alg3 0.5", lambda: ours(5, 0.5)), ("alg3 0.2", lambda: ours(5, 0.2)), ("alg3 0.05", lambda: ours(5, 0.05))]:
            try:
                f(); torch.cuda.synchronize()
                ts = []
                base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
                for _ in range(5):
                    t = time.perf_counter(); out = f(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
                peak = torch.cuda.max_memory_allocated() - base
                if name != "torch":
                    crow, col, val = out
                    same = torch.equal(crow.long(), ref.crow_indices().long()) and torch.equal(col.long(), ref.col_indices().long())
                    err = float((val - ref.values()).abs().max()) if same else float("nan")
                else:
                    same, err = True, 0.0
                print(size, Al.shape[0], name, "ms", [round(t * 1e3, 2) for t in ts], "peak MB", round(peak / 2**20, 1), "same pattern", same, "max err", err, flush=True)
            except Exception as exc:
                print(size, Al.shape[0], name, "FAILED", type(exc).__name__, exc, flush=True)
