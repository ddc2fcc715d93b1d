"""`slactl run`: what is refused before any rank starts (one line, its exit code), and a failure
of the ranks reported once."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from slactl.cli.main import main

SLACTL = [sys.executable, "-m", "slactl.cli"]


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    assert main(["gallery", "poisson2d", "--size", "5", "--out", str(d / "s.mtx")]) == 0
    assert main(["partition", str(d / "s.mtx"), "--parts", "2", "--out", str(d / "s2.parts")]) == 0
    return d


@pytest.mark.parametrize("sub", [
    ["convert", "{d}/s.mtx", "{d}/race.zarr"],
    ["info", "{d}/s.mtx"],
    ["gallery", "poisson2d", "--size", "4", "--out", "{d}/g.mtx"],
    ["backends"],
])
def test_subcommands_that_do_not_run_distributed_are_refused(store, capsys, sub):
    argv = [a.format(d=store) for a in sub]
    code, out, err = run(capsys, "run", "--procs", "2", "--", *argv)
    line = _one_line(err)
    assert code == 2 and out == "" and f"`slactl {sub[0]}` does not run distributed" in line
    assert "solve STORE, eigsh STORE, gradcheck STORE" in line
    assert not (store / "race.zarr").exists() and not (store / "g.mtx").exists()


@pytest.mark.parametrize("matrix", ["{d}/s.mtx", None])
def test_solve_on_a_plain_matrix_is_refused(store, capsys, matrix):
    argv = ["solve"] + ([matrix.format(d=store)] if matrix else [])
    code, out, err = run(capsys, "run", "--procs", "2", "--", *argv)
    line = _one_line(err)
    assert code == 2 and out == "" and "is not a partition store" in line and "without slactl run" in line


def test_a_store_for_another_number_of_ranks_is_refused_once(store, capsys):
    code, out, err = run(capsys, "run", "--procs", "3", "--", "solve", store / "s2.parts")
    line = _one_line(err)
    assert code == 7 and "partitioned for 2 ranks" in line and "--procs 2" in line


def test_gpus_without_cuda_is_exit_4_before_torchrun(store, capsys, monkeypatch):
    import subprocess as sp_mod

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sp_mod, "call", lambda *a, **k: pytest.fail("torchrun started"))
    code, out, err = run(capsys, "run", "--gpus", "2", "--", "solve", store / "s2.parts")
    line = _one_line(err)
    assert code == 4 and line.startswith("slactl: backend unavailable: --gpus needs CUDA GPUs") and "--procs" in line


def test_usage_errors_name_slactl(store, capsys):
    code, out, err = run(capsys, "run", "--procs", "2", "--", "solve", store / "s2.parts", "--bogus")
    assert code == 2 and "Usage: slactl solve" in err and "python -m" not in err and err.count("No such option") == 1


def _slactl(*args, timeout=120):
    return subprocess.run([*SLACTL, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_a_rank_that_fails_alone_is_reported_once(store, tmp_path):
    broken = tmp_path / "broken.parts"
    shutil.copytree(store / "s2.parts", broken)
    shutil.rmtree(broken / "rank_00001")  # rank 1 fails; rank 0 loses its peer
    r = _slactl("run", "--procs", 2, "--timeout", 60, "--", "solve", broken)
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "rank_00001: no such store" in line and line.endswith("(rank 1 of 2)")
    assert "another rank failed" not in r.stderr


def test_an_error_of_every_rank_is_reported_once(store, tmp_path):
    r = _slactl("run", "--procs", 2, "--", "solve", store / "s2.parts", "--rhs", tmp_path / "none.npy")
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "none.npy" in line and r.stdout == ""


def test_the_distributed_solve_still_runs(store):
    r = _slactl("run", "--procs", 2, "--", "solve", store / "s2.parts", "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.count('"converged": true') == 1


def test_gpus_without_cuda_comes_before_the_parts_check(store, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "run", "--gpus", "1", "--", "solve", store / "s2.parts")  # the audit's command
    assert code == 4 and "--gpus needs CUDA GPUs" in _one_line(err)
