"""slactl.benchmark (the core of `slactl bench`) on the CPU at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest

from slactl.benchmark import (Config, PEERS, Solver, build_case, cg_bytes_per_iteration, parse_sizes,
                              parse_solvers, run_benchmark, size_for_dof)
from slactl.benchmark import report
from slactl.benchmark.problems import dof_function
from slactl.benchmark.solvers import Outcome
from slactl.errors import UsageError


def test_sizes_are_dof_counts():
    assert parse_sizes("250k, 1M,4e6,16000000") == [250_000, 1_000_000, 4_000_000, 16_000_000]
    for bad in ("", "ten", "-5", "1T"):
        with pytest.raises(UsageError):
            parse_sizes(bad)
    assert size_for_dof("poisson2d", 1_000_000) == 1000
    assert size_for_dof("poisson3d", 1_000_000) == 100
    assert size_for_dof("poisson2d", 1) == 1
    for name in ("elasticity2d", "rgg_laplacian", "anisotropic2d"):
        f, s = dof_function(name), size_for_dof(name, 50_000)
        assert abs(f(s) - 50_000) <= min(abs(f(s - 1) - 50_000), abs(f(s + 1) - 50_000))


def test_solver_specs_and_errors(monkeypatch):
    names = [s.name for s in parse_solvers("auto, direct,superlu,cg+jacobi,cg,cg+auto,gmres+ilu0,spsolve,pyamg")]
    assert names == ["auto", "direct", "superlu", "cg+jacobi", "cg", "cg+auto", "gmres+ilu0", "scipy-spsolve", "pyamg"]
    for bad in ("nosuch", "cg+nosuch", "auto,auto", "", "qr+jacobi"):
        with pytest.raises(UsageError):
            parse_solvers(bad)
    # A preconditioner registered after slactl.benchmark was imported is accepted.
    from slactl.engine import preconditioners
    from slactl.engine.preconditioners.jacobi import Jacobi

    class Renamed(Jacobi):
        name = "late-jacobi"

    monkeypatch.setitem(preconditioners.PRECONDITIONERS, "late-jacobi", Renamed)
    rows = run_benchmark(Config(["poisson2d"], [400], parse_solvers("cg+late-jacobi,cg+sa-amg"), repeat=1, warmup=0))
    assert [(r.status, r.ran) for r in rows] == [("ok", "cg+late-jacobi on torch"), ("ok", "cg+sa-amg on torch")]


def test_rows_residuals_memory_bandwidth_and_ratios():
    solvers = parse_solvers("auto,cg+jacobi,scipy-spsolve,scipy-cg,pyamg,torch-cg+jacobi,cudss,cupyx-cg")
    rows = run_benchmark(Config(["poisson2d"], [1600], solvers, rtol=1e-8, repeat=2, warmup=1))
    by = {r.solver: r for r in rows}
    assert {r.n for r in rows} == {1600} and by["auto"].nnz == 5 * 1600 - 4 * 40
    for name in ("auto", "cg+jacobi", "scipy-spsolve", "scipy-cg", "pyamg", "torch-cg+jacobi"):
        r = by[name]
        assert r.status == "ok" and r.converged and r.runs == 2 and len(r.totals) == 2, r
        assert r.relres < 1.01e-8, (name, r.relres)
        assert r.total_seconds > 0 and r.memory_basis == "host"
        # The matrix and b alone are (12 nnz + 4 (n + 1) + 8 n) / n bytes per DOF.
        assert r.peak_bytes_per_dof >= (12 * r.nnz + 4 * (r.n + 1) + 8 * r.n) / r.n
    assert by["auto"].ran == "direct on superlu" and by["auto"].iterations is None
    assert by["cg+jacobi"].iterations > 20 and by["pyamg"].iterations < 20
    assert by["pyamg"].setup_seconds > 0 and by["pyamg"].solve_seconds > 0
    # Bandwidth only within the CG model.
    r = by["cg+jacobi"]
    assert r.bytes_per_iteration == cg_bytes_per_iteration(r.n, r.nnz, 8, 4, "jacobi")
    assert r.bandwidth_gbs == pytest.approx(r.bytes_per_iteration * r.iterations / r.solve_seconds / 1e9)
    assert by["pyamg"].bandwidth_gbs is None and by["auto"].bandwidth_gbs is None
    # Ratios against the fastest converged peer.
    peers = [by[n] for n in ("scipy-spsolve", "scipy-cg", "pyamg", "torch-cg+jacobi")]
    best = min(peers, key=lambda p: p.total_seconds)
    assert best.vs_best_peer == pytest.approx(1.0)
    assert by["auto"].best_peer == best.solver
    assert by["auto"].vs_best_peer == pytest.approx(best.total_seconds / by["auto"].total_seconds)
    # Unavailable here: skipped with the reason, not a crash.
    assert by["cudss"].status == "skipped" and "cuda" in by["cudss"].reason
    assert by["cupyx-cg"].status == "skipped" and "CUDA" in by["cupyx-cg"].reason


def test_bandwidth_model():
    # 5-point 2D Poisson, float64, int32: SpMV 80 B/DOF (+4 B), vectors 96 (none) or 128 (Jacobi).
    n, nnz = 10**6, 5 * 10**6
    assert cg_bytes_per_iteration(n, nnz, 8, 4, "none") == 60 * n + 4 * (n + 1) + 16 * n + 96 * n
    assert cg_bytes_per_iteration(n, nnz, 8, 4, "jacobi") == 60 * n + 4 * (n + 1) + 16 * n + 128 * n
    assert cg_bytes_per_iteration(n, nnz, 8, 4, "amg") is None


def _fake(name, run, kind="slactl"):
    return Solver(name, kind, "device", "test double", lambda case: None, run)


def test_residual_is_recomputed_not_trusted():
    # A solver that claims convergence with x = 0: the benchmark's residual says 1.
    liar = _fake("liar", lambda s, case, rtol, maxiter: Outcome(np.zeros(case.n), 0.0, 0.0, 1, True, "x = 0"))
    row = run_benchmark(Config(["poisson2d"], [100], [liar], repeat=1, warmup=0))[0]
    assert row.status == "ok" and row.relres == pytest.approx(1.0)


def test_failures_slow_runs_and_float32():
    def boom(s, case, rtol, maxiter):
        raise RuntimeError("kaput\nsecond line")

    row = run_benchmark(Config(["poisson2d"], [100], [_fake("boom", boom)], repeat=1, warmup=0))[0]
    assert row.status == "failed" and row.reason == "RuntimeError: kaput"
    with pytest.raises(RuntimeError):
        run_benchmark(Config(["poisson2d"], [100], [_fake("boom", boom)], repeat=1, raise_errors=True))
    rows = run_benchmark(Config(["poisson2d"], [100, 400], [PEERS["scipy-spsolve"]], repeat=3, warmup=1,
                                max_seconds=0.0))
    assert rows[0].runs == 1 and "max-seconds" in rows[0].reason and rows[1].status == "skipped"
    import torch

    row = run_benchmark(Config(["poisson2d"], [400], parse_solvers("cg+jacobi"), dtype=torch.float32, rtol=1e-5,
                               repeat=1, warmup=0))[0]
    assert row.status == "ok" and row.relres < 1e-4
    assert row.bytes_per_iteration == cg_bytes_per_iteration(row.n, row.nnz, 4, 4, "jacobi")


def test_unknown_problem_and_case():
    with pytest.raises(UsageError):
        Config(["poisson9d"], [100], parse_solvers("auto"))
    case = build_case("poisson3d", 1000, "cpu", __import__("torch").float64)
    assert case.n == 1000 and np.allclose(case.b_host, case.a @ np.ones(1000))
    A = case.fresh_matrix()
    assert A.pattern is not case.fresh_matrix().pattern  # no pattern cache is shared between runs


def test_markdown_section_is_well_formed(tmp_path):
    cfg = Config(["poisson2d"], [100], parse_solvers("auto,pyamg,cudss"), repeat=1, warmup=0)
    rows = run_benchmark(cfg)
    m = report.machine("cpu")
    text = report.markdown(rows, cfg, m, "slactl bench poisson2d --sizes 100")
    lines = text.splitlines()
    assert lines[0].startswith("## slactl bench: poisson2d on cpu (") and "Command: `slactl bench" in text
    table = [l for l in lines if l.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert len({l.count("|") for l in table}) == 1  # every row has every column
    target = tmp_path / "RESULTS.md"
    target.write_text("# Benchmark results\n\nearlier section\n")
    report.append_markdown(target, text)
    assert target.read_text() == "# Benchmark results\n\nearlier section\n\n" + text
