"""`slactl run`: what is refused before any rank starts (one line, its exit code), and a failure
of the ranks reported once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from slactl.cli import run_report
from slactl.cli.main import main
from slactl.cli.run_report import REPORT_ENV

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


def _strict_json(text: str) -> dict:
    """json.loads, refusing NaN and Infinity (which json.loads accepts and JSON does not)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}: {text}"))


def _no_solve(*args, **kwargs):
    pytest.fail("the distributed solve ran before --out was checked")


@pytest.mark.parametrize("name, needle", [("x.csv", "must end in one of"), ("nodir/x.npy", "does not exist")])
def test_a_bad_out_of_a_store_solve_is_refused_before_the_solve(store, capsys, monkeypatch, name, needle):
    import slactl.dist.store_solve

    monkeypatch.setattr(slactl.dist.store_solve, "solve_store", _no_solve)
    code, out, err = run(capsys, "solve", store / "s2.parts", "--out", store / name)
    assert code == 2 and out == "" and needle in _one_line(err)


def test_the_json_of_a_store_solve_is_strict(store, capsys, monkeypatch):
    import slactl.dist.store_solve

    summary = {"matrix": "s2.parts", "relres": float("nan"), "x_norm": float("inf"), "converged": True}
    monkeypatch.setattr(slactl.dist.store_solve, "solve_store", lambda *a, **k: (dict(summary), None))
    code, out, _ = run(capsys, "solve", store / "s2.parts", "--json")
    assert code == 0 and _strict_json(out) == {**summary, "relres": None, "x_norm": None}


def test_run_exits_with_the_code_of_the_rank_that_reported(store, capsys, monkeypatch):
    """The launcher's code may be another rank's (or torchrun's 1): the claim file's is the one shown."""
    import slactl.dist.launcher

    def launch(command, nprocs, *, env, **kwargs):
        with open(env[REPORT_ENV], "w") as f:
            f.write("1:5")  # rank 1 reported an error of exit code 5
        return 9, 0  # while the launcher saw rank 0 exit with 9

    monkeypatch.setattr(slactl.dist.launcher, "run_processes", launch)
    code, _, err = run(capsys, "run", "--procs", "2", "--", "solve", store / "s2.parts")
    assert code == 5 and err == ""  # rank 1 explained itself: no launcher line either


def _rank(tmp_path, *argv, **env):
    """`python -m slactl.cli ARGV` as one rank of a run whose claim file is tmp_path/claim."""
    env = {**os.environ, REPORT_ENV: str(tmp_path / "claim"), "WORLD_SIZE": "2", "RANK": "1", **env}
    return subprocess.run([*SLACTL, *argv], check=False, capture_output=True, text=True, timeout=120, env=env)


def test_the_rank_that_reports_claims_with_its_rank_and_code(tmp_path):
    r = _rank(tmp_path, "info", "no/such.mtx")
    assert r.returncode == 2 and _one_line(r.stderr).endswith("(rank 1 of 2)")
    assert (tmp_path / "claim").read_text() == "1:2"
    assert run_report.read_claim(str(tmp_path / "claim")) == (1, 2)


def test_a_rank_that_lost_the_claim_stays_quiet(tmp_path):
    (tmp_path / "claim").write_text("0:2")
    r = _rank(tmp_path, "info", "no/such.mtx")
    assert r.returncode == 2 and r.stderr == ""


def test_over_several_nodes_every_rank_reports_tagged(tmp_path):
    """No claim file is shared between nodes: a claim on this node must not silence this rank."""
    (tmp_path / "claim").write_text("0:2")
    r = _rank(tmp_path, "info", "no/such.mtx", WORLD_SIZE="4", LOCAL_WORLD_SIZE="2", RANK="3")
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "no/such.mtx" in line and line.endswith("(rank 3 of 4)")
    assert (tmp_path / "claim").read_text() == "0:2"


def test_the_report_protocol_has_one_torch_free_home():
    """`slactl run` and its ranks share the protocol's module, which needs nothing but the standard library."""
    import ast
    import inspect

    from slactl.cli import __main__ as rank_entry
    from slactl.cli import run as run_command

    assert run_command.REPORT_ENV is run_report.REPORT_ENV and "REPORT_ENV" not in vars(rank_entry)
    tree = ast.parse(inspect.getsource(run_report))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "os"}, imported
