"""The fused CG (Triton kernels, device-side scalars, CUDA graphs): dispatch, kernels, results.

Three kinds of tests:

* dispatch and fallback (CPU, no Triton needed): when ``cg()`` takes the fused path;
* the kernels under Triton's CPU interpreter (``interp_`` tests): they run only in a process
  started with ``TRITON_INTERPRET=1`` (Triton decorates its own library then), which
  ``test_kernels_under_the_triton_interpreter`` starts; skipped where triton is not installed;
* the real thing on CUDA (``-m gpu``): answers against scipy, iteration counts against the eager
  loop, graph replay, cached plans, the adjoint through ``slactl.solve``.
"""

from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import slactl
from problems import poisson2d
from triton_interpreter import ptx_for_sm90, require_triton_compiler, run_interpreted_tests
from slactl.engine.krylov import KrylovResult, Status, cg
from slactl.engine.krylov import fused_cg as fused
from slactl.engine.preconditioners import Identity, Jacobi
from slactl.errors import UsageError

INTERPRETING = fused.interpreting()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 process of test_kernels_under_the_triton_interpreter")


def gpu(fn):
    """Marked ``gpu`` like the other CUDA tests; skipped without CUDA or triton."""
    fn = pytest.mark.skipif(not fused.triton_available(), reason="needs triton")(fn)
    fn = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(fn)
    return pytest.mark.gpu(fn)


def _scaled_poisson(N: int, spread: float = 2.0) -> sp.csr_matrix:
    """D P D: a diagonal over 2 * spread orders of magnitude (Jacobi matters)."""
    P = poisson2d(N)
    d = np.logspace(-spread, spread, P.shape[0])
    return (sp.diags(d) @ P @ sp.diags(d)).tocsr()


def _rhs(n: int, seed: int = 0, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(n)).to(dtype=dtype, device=device)


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    a = a.detach().double().cpu().numpy()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- dispatch (CPU)
def test_unsupported_reasons():
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    b = torch.ones(16, dtype=torch.float64)
    assert "CUDA" in fused.unsupported_reason(A, b)
    assert "SparseMatrix" in fused.unsupported_reason(A.to_dense(), b)
    # with interpret=True the CPU is allowed: what is left to say is about the other arguments
    ok = dict(interpret=True)
    assert "batch" in fused.unsupported_reason(slactl.SparseMatrix.from_pattern(A.pattern, A.values.expand(2, -1)), b, **ok)
    assert "complex" in fused.unsupported_reason(A.to(dtype=torch.complex128), b, **ok)
    assert "single vector" in fused.unsupported_reason(A, torch.ones(16, 2, dtype=torch.float64), **ok)
    assert "callback" in fused.unsupported_reason(A, b, callback=lambda i, r: None, **ok)
    assert "ilu0" in fused.unsupported_reason(A, b, "ilu0", **ok)
    assert "not none or jacobi" in fused.unsupported_reason(A, b, lambda r: r, **ok)
    A32 = A.to(dtype=torch.float32)
    assert "jacobi" in fused.unsupported_reason(A, b, Jacobi(A32), **ok)  # set up for another dtype
    for pre in (None, "none", "NONE", "jacobi", "Jacobi", Jacobi(A), Identity(A)):
        why = fused.unsupported_reason(A, b, pre, **ok)
        assert why is None or "triton" in why or "interpreter" in why


def test_fused_true_where_it_cannot_run_is_an_error():
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    with pytest.raises(UsageError, match="fused=True"):
        cg(A, torch.ones(16, dtype=torch.float64), fused=True)


def test_auto_and_off_on_the_cpu_are_the_eager_loop():
    A = slactl.SparseMatrix.from_scipy(poisson2d(8))
    b = _rhs(64)
    auto, off = cg(A, b, rtol=1e-10), cg(A, b, rtol=1e-10, fused=False)
    assert "fused" not in auto.info and "fused" not in off.info
    assert auto.iterations == off.iterations
    torch.testing.assert_close(auto.x, off.x, rtol=0, atol=0)


def test_a_failing_fused_path_falls_back_to_the_eager_loop(monkeypatch):
    """Automatic mode: a kernel failure warns once and the eager loop answers; fused=True raises."""
    A = slactl.SparseMatrix.from_scipy(poisson2d(8))
    b = _rhs(64)

    def broken(*args, **kwargs):
        raise RuntimeError("kernel failed to compile")

    monkeypatch.setattr(fused, "unsupported_reason", lambda *a, **k: None)
    monkeypatch.setattr(fused, "fused_cg", broken)
    monkeypatch.setattr(fused, "_disabled_reason", None)
    with pytest.warns(RuntimeWarning, match="eager loop"):
        res = cg(A, b, rtol=1e-10)
    assert res.converged and "fused" not in res.info
    assert "kernel failed" in fused.disabled_reason()
    res2 = cg(A, b, rtol=1e-10)  # disabled from now on: no second warning, same answer
    torch.testing.assert_close(res2.x, res.x, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="kernel failed"):
        cg(A, b, fused=True)


def test_interpret_without_the_interpreter_is_an_error():
    if INTERPRETING:
        pytest.skip("the interpreter is on in this process")
    A = slactl.SparseMatrix.from_scipy(poisson2d(4))
    with pytest.raises(UsageError, match="TRITON_INTERPRET"):
        fused.fused_cg(A, torch.ones(16, dtype=torch.float64), interpret=True)


@pytest.mark.skipif(not fused.triton_available(), reason="needs triton (the interpreter runs the kernels)")
@pytest.mark.skipif(INTERPRETING, reason="already in the interpreter process")
def test_kernels_under_the_triton_interpreter():
    """Run this file's ``interp_`` tests in a process with TRITON_INTERPRET=1."""
    run_interpreted_tests(__file__)


@pytest.mark.skipif(not fused.triton_available(), reason="needs triton")
@pytest.mark.skipif(INTERPRETING, reason="compiles for the GPU")
def test_kernels_compile_for_sm90_without_a_gpu():
    """Triton's whole pipeline (MLIR, LLVM, PTX, ptxas) for an H100/H200, no device needed: the
    main variants of the float64 int32 kernels compile."""
    require_triton_compiler()
    K = fused.load_kernels()
    f, i = "*fp64", "*i32"
    spmv = {"crow": i, "col": i, "val": f, "z": f, "p_old": f, "p_new": f, "ap": f, "x": f, "pap_part": f,
            "state": f, "rr_part": f, "rz_part": f, "tol_ptr": f, "n": "i32", "n_upart": "i32", "hist_index": "i32",
            "maxlen": "i32", "BLOCK": "constexpr", "SUB": "constexpr", "KP": "constexpr", "KP2": "constexpr",
            "KP3": "constexpr", "LOOP": "constexpr",
            "EVICT": "constexpr", "BETA_INLINE": "constexpr", "JACOBI": "constexpr", "RB": "constexpr",
            "CODE_INDEF_PRECONDITIONER": "constexpr", "PDL": "constexpr"}
    update = {"r": f, "z": f, "dinv": f, "ap": f, "state": f, "pap_part": f, "rr_part": f,
              "rz_part": f, "n": "i32", "n_spart": "i32", "BLOCK": "constexpr", "SUB": "constexpr",
              "ALPHA_INLINE": "constexpr", "JACOBI": "constexpr", "RB": "constexpr", "CODE_INDEF_MATRIX": "constexpr",
              "PDL": "constexpr"}
    beta = {"state": f, "rr_part": f, "rz_part": f, "n_part": "i32", "rr2": f, "rz2": f, "counter": i, "tol_ptr": f,
            "hist_index": "i32", "CHUNK": "constexpr", "RB": "constexpr", "JACOBI": "constexpr",
            "CODE_INDEF_PRECONDITIONER": "constexpr"}
    cases = [
        (K._spmv_kernel, spmv, dict(BLOCK=128, SUB=1, KP=4, KP2=1, KP3=0, LOOP=False, EVICT=True, BETA_INLINE=True,
                                    JACOBI=True, RB=256, CODE_INDEF_PRECONDITIONER=6, PDL=True)),
        (K._spmv_kernel, spmv, dict(BLOCK=128, SUB=1, KP=4, KP2=1, KP3=0, LOOP=False, EVICT=False, BETA_INLINE=False,
                                    JACOBI=False, RB=16, CODE_INDEF_PRECONDITIONER=6, PDL=False)),
        (K._spmv_kernel, spmv, dict(BLOCK=256, SUB=16, KP=16, KP2=0, KP3=0, LOOP=True, EVICT=False, BETA_INLINE=False,
                                    JACOBI=False, RB=4096, CODE_INDEF_PRECONDITIONER=6, PDL=True)),
        (K._update_kernel, update, dict(BLOCK=1024, SUB=1, ALPHA_INLINE=True, JACOBI=True, RB=256, CODE_INDEF_MATRIX=5,
                                        PDL=True)),
        (K._update_kernel, update, dict(BLOCK=1024, SUB=8, ALPHA_INLINE=False, JACOBI=False, RB=4096,
                                        CODE_INDEF_MATRIX=5, PDL=False)),
        (K._beta_finish, beta, dict(CHUNK=1024, RB=256, JACOBI=True, CODE_INDEF_PRECONDITIONER=6)),
    ]
    for fn, sig, const in cases:
        ptx = ptx_for_sm90(fn, sig, const, enable_fp_fusion=True)
        assert "ld.global" in ptx
        if const.get("PDL"):
            assert "griddepcontrol.wait" in ptx


# ------------------------------------------------------------- kernels (Triton interpreter)
def _both(A, b, **kw):
    tuning = kw.pop("tuning", None)
    res = fused.fused_cg(A, b, interpret=True, tuning=tuning, **kw)
    ref = cg(A, b, fused=False, **kw)
    return res, ref


def _same_kind(res: KrylovResult, ref: KrylovResult) -> None:
    assert type(res) is type(ref) and res.method == ref.method == "cg"
    assert res.preconditioner == ref.preconditioner
    assert res.residual_norms.shape == (res.iterations + 1,) and res.residual_norms.dtype == ref.residual_norms.dtype
    assert res.true_residual_norm.shape == ref.true_residual_norm.shape == ()
    assert res.info["fused"] is True and res.info["iterations_run"] >= res.iterations


@needs_interpreter
@pytest.mark.parametrize("pre", ["none", "jacobi"])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "finish-kernels"])
def test_interp_matches_eager_and_spsolve(pre, inline):
    # Jacobi on a badly scaled matrix (it restores Poisson's conditioning); plain CG on Poisson
    S = _scaled_poisson(8, 1.0) if pre == "jacobi" else poisson2d(8)
    A = slactl.SparseMatrix.from_scipy(S)
    b = _rhs(64, 1)
    res, ref = _both(A, b, rtol=1e-10, preconditioner=pre, tuning={"inline": inline}, maxiter=2000)
    _same_kind(res, ref)
    assert res.converged and res.info["inline_reductions"] is inline
    assert res.iterations == ref.iterations
    np.testing.assert_allclose(res.residual_norms.numpy(), ref.residual_norms.numpy(), rtol=1e-6)
    assert _rel(res.x, spla.spsolve(S.tocsc(), b.numpy())) < 1e-8
    # the last recorded norm is the first that met the tolerance
    assert float(res.residual_norms[-1]) <= float(res.tolerance) < float(res.residual_norms[-2])


@needs_interpreter
def test_interp_float32_jacobi():
    A = slactl.SparseMatrix.from_scipy(poisson2d(8), dtype=torch.float32)
    b = _rhs(64, 2, torch.float32)
    res, ref = _both(A, b, rtol=1e-5, preconditioner=Jacobi(A))
    _same_kind(res, ref)
    assert res.converged and res.x.dtype == torch.float32 and abs(res.iterations - ref.iterations) <= 1
    assert _rel(res.x, spla.spsolve(poisson2d(8).tocsc(), b.double().numpy())) < 1e-4


@needs_interpreter
def test_interp_many_partials_long_rows_and_int64_indices():
    """Several programs and partial chunks (small blocks), rows longer than the unrolled limit
    (the runtime entry loop), int64 CSR indices."""
    S = poisson2d(6)
    A32 = slactl.SparseMatrix.from_scipy(S)
    A = slactl.SparseMatrix.from_csr(A32.crow.long(), A32.col.long(), A32.values, A32.shape, check=False)
    assert A.pattern.crow.dtype == torch.int64
    b = _rhs(36, 3)
    tuning = {"spmv_block": 8, "update_block": 16, "reduce_block": 2, "unroll_max": 2, "inline": False}
    res, ref = _both(A, b, rtol=1e-8, preconditioner="jacobi", tuning=tuning)
    assert res.iterations == ref.iterations and res.converged
    np.testing.assert_allclose(res.x.numpy(), ref.x.numpy(), rtol=1e-9, atol=1e-12)
    tuning["inline"] = True
    res2 = fused.fused_cg(A, b, rtol=1e-8, preconditioner="jacobi", interpret=True, tuning=tuning)
    assert res2.iterations == ref.iterations
    np.testing.assert_allclose(res2.x.numpy(), ref.x.numpy(), rtol=1e-9, atol=1e-12)


def _stencil(kind: str) -> sp.csr_matrix:
    """SPD matrices whose longest rows hold 7 (3-D Poisson), 9 (2-D 9-point) and 15 (a band)
    entries: row tiles 4 + 2 + 1, 8 + 1 and 8 + 4 + 4."""
    if kind == "7-point-3d":
        T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4))
        I = sp.identity(4)
        return (sp.kron(sp.kron(T, I), I) + sp.kron(sp.kron(I, T), I) + sp.kron(sp.kron(I, I), T)).tocsr()
    if kind == "9-point-2d":
        T = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(8, 8))
        return (9.0 * sp.identity(64) - sp.kron(T, T)).tocsr()
    offsets = list(range(-7, 8))
    return sp.diags([16.0 if o == 0 else -1.0 for o in offsets], offsets, shape=(60, 60)).tocsr()


@needs_interpreter
@pytest.mark.parametrize("kind,tiles", [("7-point-3d", (4, 2, 1)), ("9-point-2d", (8, 1, 0)), ("band-15", (8, 4, 4))])
@pytest.mark.parametrize("tuning", [{}, {"split": False, "spmv_sub": 3, "update_sub": 2, "inline": False,
                                         "reduce_block": 4, "evict": True}], ids=["tiles", "one-tile-sub-blocks"])
def test_interp_row_tiles_and_sub_blocks(kind, tiles, tuning):
    """Rows split into tiles of 2^k entries (or one padded tile), programs covering several blocks
    of rows, evict-first hints, chunked partial sums: the same answer as the eager loop."""
    S = _stencil(kind)
    A = slactl.SparseMatrix.from_scipy(S)
    n = S.shape[0]
    b = _rhs(n, 13)
    fused.clear_cache()
    res, ref = _both(A, b, rtol=1e-10, tuning=dict(tuning))
    plan = next(reversed(fused._cache.values()))[0]
    maxlen = int(np.diff(S.indptr).max())
    assert (plan.KP, plan.KP2, plan.KP3) == (tiles if not tuning else (fused._next_pow2(maxlen), 0, 0))
    assert (plan.SS, plan.SU) == ((1, 1) if not tuning else (3, 2))
    assert res.converged and abs(res.iterations - ref.iterations) <= 1
    np.testing.assert_allclose(res.residual_norms.numpy()[:5], ref.residual_norms.numpy()[:5], rtol=1e-9)
    assert _rel(res.x, spla.spsolve(S.tocsc(), b.numpy())) < 1e-8


@needs_interpreter
@pytest.mark.parametrize("check_every", [1, 3])
def test_interp_blocks_and_budget(check_every):
    """Odd block lengths (the p buffers swap parity between blocks), a frozen block launched past
    convergence, and maxiter cutting a block short."""
    A = slactl.SparseMatrix.from_scipy(poisson2d(8))
    b = _rhs(64, 4)
    res, ref = _both(A, b, rtol=1e-10, check_every=check_every)
    assert res.iterations == ref.iterations and res.converged
    assert res.iterations <= res.info["iterations_run"] <= res.iterations + 2 * check_every
    np.testing.assert_allclose(res.x.numpy(), ref.x.numpy(), rtol=1e-9, atol=1e-12)
    short, short_ref = _both(A, b, rtol=1e-12, maxiter=10, check_every=check_every)
    assert short.status is short_ref.status is Status.MAX_ITERATIONS
    assert short.iterations == short.info["iterations_run"] == 10
    np.testing.assert_allclose(short.residual_norms.numpy(), short_ref.residual_norms.numpy(), rtol=1e-9)


@needs_interpreter
def test_interp_statuses():
    A = slactl.SparseMatrix.from_scipy(poisson2d(6))
    x = _rhs(36, 5)
    exact = fused.fused_cg(A, A @ x, x0=x.clone(), interpret=True)
    assert exact.converged and exact.iterations == 0 and exact.residual_norms.shape == (1,)
    zero = fused.fused_cg(A, torch.zeros(36, dtype=torch.float64), interpret=True)
    assert zero.converged and zero.iterations == 0 and torch.all(zero.x == 0)
    shifted = slactl.SparseMatrix.from_scipy((poisson2d(6) - 3.0 * sp.identity(36)).tocsr())
    res, ref = _both(shifted, torch.ones(36, dtype=torch.float64))
    assert res.status is ref.status is Status.INDEFINITE_MATRIX and res.iterations == ref.iterations
    neg = slactl.SparseMatrix.from_scipy(-poisson2d(6))
    res, ref = _both(neg, torch.ones(36, dtype=torch.float64), preconditioner="jacobi")
    assert res.status is ref.status is Status.INDEFINITE_PRECONDITIONER
    bad = torch.ones(36, dtype=torch.float64)
    bad[3] = float("nan")
    res, ref = _both(A, bad)
    assert res.status is ref.status is Status.NONFINITE


@needs_interpreter
def test_interp_float32_recoveries_and_cached_plan():
    """An unreachable float32 tolerance: the driver restarts the fused core from its iterate (the
    plan is reused across restarts and solves, and gives the same answer)."""
    A = slactl.SparseMatrix.from_scipy(poisson2d(6), dtype=torch.float32)
    b = _rhs(36, 6, torch.float32)
    res, ref = _both(A, b, rtol=1e-9, check_every=2)
    assert res.status is ref.status is Status.INACCURATE and res.recoveries == ref.recoveries == 3
    assert abs(res.iterations - ref.iterations) <= 0.15 * ref.iterations  # rounding-driven restarts
    again = fused.fused_cg(A, b, rtol=1e-9, check_every=2, interpret=True)
    assert again.info["plan_cached"] is True and again.timings["setup"] == 0.0
    torch.testing.assert_close(again.x, res.x, rtol=0, atol=0)


# ------------------------------------------------------------------------------- CUDA (-m gpu)
def _cuda(S, dtype=torch.float64):
    return slactl.SparseMatrix.from_scipy(S, dtype=dtype, device="cuda")


@gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("pre", ["none", "jacobi"])
@pytest.mark.parametrize("N", [40, 200], ids=["inline", "finish-kernels"])
def test_gpu_matches_scipy_and_eager(N, pre, dtype):
    S = _scaled_poisson(N, 1.0) if pre == "jacobi" else poisson2d(N)
    A = _cuda(S, dtype)
    n = S.shape[0]
    b = _rhs(n, 7, dtype, "cuda")
    rtol = 1e-9 if dtype == torch.float64 else 1e-4
    res = cg(A, b, rtol=rtol, preconditioner=pre, maxiter=20 * n)
    ref = cg(A, b, rtol=rtol, preconditioner=pre, maxiter=20 * n, fused=False)
    assert res.info.get("fused") is True, res.info
    assert res.info["inline_reductions"] is (N == 40)
    assert res.converged and ref.converged
    assert abs(res.iterations - ref.iterations) <= (2 if dtype == torch.float64 else 0.02 * ref.iterations + 2)
    assert res.residual_norms.shape == (res.iterations + 1,) and res.residual_norms.device == b.device
    assert res.info["cuda_graph"] and res.info["cuda_graph_error"] is None
    x_ref = spla.spsolve(S.tocsc(), b.double().cpu().numpy())
    assert _rel(res.x, x_ref) < (1e-5 if dtype == torch.float64 else 1e-1)
    assert float(res.relative_residual) <= rtol
    if dtype == torch.float64 and pre == "none":
        count = [0]
        spla.cg(S, b.cpu().numpy(), rtol=rtol, atol=0.0, maxiter=20 * n,
                callback=lambda xk: count.__setitem__(0, count[0] + 1))
        assert abs(res.iterations - count[0]) <= 2


@gpu
def test_gpu_cached_plan_replays_from_the_first_block_and_is_deterministic():
    A = _cuda(poisson2d(64))
    b = _rhs(64 * 64, 8, device="cuda")
    fused.clear_cache()
    first = cg(A, b, rtol=1e-10)
    (plan, _), = fused._cache.values()
    assert plan._x_own is None  # the first run updates the caller's x itself (issue 7: no copy)
    # first.x is alive, so the graphs (captured on its address) cannot serve second.x: the plan
    # takes its own x buffer and captures once more; from then on it replays from the first block.
    second = cg(A, b, rtol=1e-10)
    assert plan._x_own is not None
    third = cg(A, b, rtol=1e-10)
    assert first.info["plan_cached"] is False and second.info["plan_cached"] is True
    assert third.info["plan_cached"] is True and third.timings["setup"] == 0.0
    assert third.info["graph_replays"] >= third.info["iterations_run"] // 8
    for again in (second, third):
        torch.testing.assert_close(again.x, first.x, rtol=0, atol=0)  # fixed-order reductions
        torch.testing.assert_close(again.residual_norms, first.residual_norms, rtol=0, atol=0)


@gpu
def test_gpu_programmatic_dependent_launch_changes_nothing():
    """Small systems launch the streaming kernels as programmatic dependent launches (Hopper and
    later): the same bits as plain launches, with and without graphs."""
    A = _cuda(poisson2d(48))
    b = _rhs(48 * 48, 14, device="cuda")
    fused.clear_cache()
    on = fused.fused_cg(A, b, rtol=1e-10)
    off = fused.fused_cg(A, b, rtol=1e-10, tuning={"pdl": False})
    eager = fused.fused_cg(A, b, rtol=1e-10, graphs=False)
    assert on.info["inline_reductions"] and off.info["pdl"] is False
    assert on.info["pdl"] is (torch.cuda.get_device_capability()[0] >= 9)
    assert on.info["cuda_graph"] and on.info["cuda_graph_error"] is None
    for other in (off, eager):
        assert other.iterations == on.iterations
        torch.testing.assert_close(other.x, on.x, rtol=0, atol=0)
        torch.testing.assert_close(other.residual_norms, on.residual_norms, rtol=0, atol=0)


@gpu
@pytest.mark.parametrize("check_every", [1, 5, 8, 32])
def test_gpu_blocks_graphs_off_and_budget(check_every):
    A = _cuda(poisson2d(48))
    b = _rhs(48 * 48, 9, device="cuda")
    fused.clear_cache()
    on = fused.fused_cg(A, b, rtol=1e-10, check_every=check_every)
    off = fused.fused_cg(A, b, rtol=1e-10, check_every=check_every, graphs=False)
    assert on.info["cuda_graph"] and not off.info["cuda_graph"]
    assert on.iterations == off.iterations
    torch.testing.assert_close(on.x, off.x, rtol=0, atol=0)
    assert on.iterations <= on.info["iterations_run"] <= on.iterations + 2 * check_every
    short = fused.fused_cg(A, b, rtol=1e-14, maxiter=37, check_every=check_every)
    ref = cg(A, b, rtol=1e-14, maxiter=37, fused=False)
    assert short.status is ref.status is Status.MAX_ITERATIONS and short.iterations == 37
    torch.testing.assert_close(short.residual_norms, ref.residual_norms, rtol=1e-6, atol=0)


@gpu
def test_gpu_statuses_and_int64_indices():
    S = poisson2d(20)
    A = _cuda(S)
    A64 = slactl.SparseMatrix.from_csr(A.crow.long(), A.col.long(), A.values, A.shape, check=False)
    b = _rhs(400, 10, device="cuda")
    r32, r64 = cg(A, b, rtol=1e-10), cg(A64, b, rtol=1e-10)
    assert r64.info["fused"] and r32.iterations == r64.iterations
    torch.testing.assert_close(r32.x, r64.x, rtol=1e-12, atol=0)
    shifted = _cuda((S - 3.0 * sp.identity(400)).tocsr())
    assert cg(shifted, torch.ones(400, dtype=torch.float64, device="cuda")).status is Status.INDEFINITE_MATRIX
    bad = b.clone()
    bad[5] = float("nan")
    assert cg(A, bad).status is Status.NONFINITE
    x = _rhs(400, 11, device="cuda")
    exact = cg(A, A @ x, x0=x.clone())
    assert exact.converged and exact.iterations == 0


@gpu
def test_gpu_adjoint_through_slactl_solve():
    """slactl.solve(method="cg") runs the fused forward and the fused adjoint (a second cg call);
    gradients agree with a dense solve."""
    S = _scaled_poisson(12, 1.0)
    A = _cuda(S)
    v = A.values.detach().clone().requires_grad_()
    b = _rhs(144, 12, device="cuda").requires_grad_()
    res = slactl.solve(A.with_values(v), b, method="cg", preconditioner="jacobi", rtol=1e-13, maxiter=5000,
                       return_result=True)
    assert res.krylov is not None and res.krylov.info.get("fused") is True
    gv, gb = torch.autograd.grad((res.x * torch.arange(144, device="cuda")).sum(), (v, b))
    dv = v.detach().clone().requires_grad_()
    dense = torch.zeros(A.shape, dtype=torch.float64, device="cuda").index_put((A.row.long(), A.col.long()), dv)
    bb = b.detach().clone().requires_grad_()
    xd = torch.linalg.solve(dense, bb)
    gv_ref, gb_ref = torch.autograd.grad((xd * torch.arange(144, device="cuda")).sum(), (dv, bb))
    rel = lambda a, c: float(torch.linalg.vector_norm(a - c) / torch.linalg.vector_norm(c))  # noqa: E731
    assert rel(gb, gb_ref) < 1e-8 and rel(gv, gv_ref) < 1e-8


