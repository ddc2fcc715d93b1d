"""`slactl partition` + `slactl run --procs N -- solve STORE` against `slactl solve`, and failing
ranks: every run ends with a clear error and a non-zero exit, never a hang."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch.distributed as dist

from slactl.dist import WorkerError, launch, run_processes

SLACTL = [sys.executable, "-m", "slactl.cli"]


def _slactl(*args, timeout=60):
    return subprocess.run([*SLACTL, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    r = _slactl("gallery", "poisson2d", "--size", 24, "--out", d / "p.mtx")
    assert r.returncode == 0, r.stderr
    r = _slactl("partition", d / "p.mtx", "--parts", 4, "--out", d / "p.parts.zarr", "--json")
    assert r.returncode == 0, r.stderr
    return d, json.loads(r.stdout)


def test_partition_reports_quality(problem):
    d, q = problem
    assert q["parts"] == 4 and q["method"] == "metis" and q["n"] == 576 and len(q["halo"]) == 4
    assert q["edge_cut"] > 0 and q["imbalance"] < 1.05 and sum(q["rank_nnz"]) == q["nnz"]
    r = _slactl("partition", d / "p.mtx", "--parts", 4, "--out", d / "p.parts.zarr")
    assert r.returncode == 6 and "exists" in r.stderr  # refuses to overwrite without --force


def test_run_solve_store_matches_single_process_solve(problem):
    d, _ = problem
    r = _slactl("run", "--procs", 4, "--", "solve", d / "p.parts.zarr", "--json", "--rtol", "1e-10", "--out", d / "xd.npy")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 alone reports
    s = json.loads(lines[0])
    assert s["parts"] == 4 and s["converged"] and s["relres"] <= 1e-10 and s["method"] == "cg"
    r = _slactl("solve", d / "p.mtx", "--json", "--out", d / "x1.npy")
    assert r.returncode == 0, r.stderr
    xd, x1 = np.load(d / "xd.npy"), np.load(d / "x1.npy")
    assert np.linalg.norm(xd - x1) <= 1e-8 * np.linalg.norm(x1)


def test_store_outside_a_launcher_says_how_to_run_it(problem):
    d, _ = problem
    r = _slactl("solve", d / "p.parts.zarr")
    assert r.returncode == 7 and "slactl run --procs 4" in r.stderr


def test_a_failing_rank_ends_the_run(problem, tmp_path):
    d, _ = problem
    broken = tmp_path / "broken.zarr"
    shutil.copytree(d / "p.parts.zarr", broken)
    shutil.rmtree(broken / "rank_00002" / "matrix")  # rank 2 fails; the others wait for it in collectives
    t = time.monotonic()
    r = _slactl("run", "--procs", 4, "--timeout", 60, "--", "solve", broken, "--json", timeout=50)
    assert r.returncode == 2 and "rank 2" in r.stderr and "no such store" in r.stderr
    assert time.monotonic() - t < 40


def test_run_processes_stops_the_others():
    t = time.monotonic()
    code, rank = run_processes([sys.executable, "-c",
                                "import os, sys, time; r = int(os.environ['RANK']); "
                                "sys.exit(5) if r == 1 else time.sleep(60)"], 3)
    assert (code, rank) == (5, 1) and time.monotonic() - t < 10


def _raise_on_rank_one():
    if dist.get_rank() == 1:
        raise ValueError("rank one is broken")
    dist.barrier()  # would wait forever for rank 1
    return dist.get_rank()


def test_launch_reports_the_failing_rank_without_hanging():
    t = time.monotonic()
    with pytest.raises(WorkerError, match="rank 1 failed: ValueError: rank one is broken") as err:
        launch(_raise_on_rank_one, nprocs=2, timeout=60)
    assert err.value.rank == 1 and "Traceback" in err.value.details
    assert time.monotonic() - t < 30
