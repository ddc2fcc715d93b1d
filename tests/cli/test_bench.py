"""`slactl bench` as a user runs it: JSON, the table, --append on a copy of RESULTS.md, --plot, exit codes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from slactl.cli.main import main

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"
FIELDS = ("problem", "n", "nnz", "solver", "kind", "device", "status", "setup_seconds", "solve_seconds",
          "total_seconds", "iterations", "relres", "converged", "peak_bytes_per_dof", "memory_basis",
          "bandwidth_gbs", "vs_best_peer", "best_peer", "ran", "reason")


def test_json_rows(capsys):
    code = main(["bench", "poisson2d", "--sizes", "1600", "--solvers", "auto,cg+jacobi,pyamg,scipy-spsolve,cudss",
                 "--device", "cpu", "--repeat", "1", "--warmup", "0", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cpu" and out["rtol"] == 1e-8 and out["dtype"] == "float64"
    assert out["command"].startswith("slactl bench poisson2d --sizes 1600 --solvers auto,cg+jacobi")
    assert out["machine"]["torch"] and out["definitions"]
    rows = {r["solver"]: r for r in out["rows"]}
    for r in rows.values():
        assert all(k in r for k in FIELDS), r
    for name in ("auto", "cg+jacobi", "pyamg", "scipy-spsolve"):
        assert rows[name]["status"] == "ok" and rows[name]["relres"] < 1.01e-8
        assert rows[name]["peak_bytes_per_dof"] > 0
    assert rows["cg+jacobi"]["bandwidth_gbs"] > 0
    assert rows["cudss"]["status"] == "skipped" and rows["cudss"]["reason"]


def test_table_append_and_plot(tmp_path, capsys):
    before = RESULTS.read_bytes()
    copy = tmp_path / "RESULTS.md"
    shutil.copy(RESULTS, copy)
    png = tmp_path / "plots" / "bench.png"
    code = main(["bench", "poisson2d", "poisson3d", "--sizes", "400,1000", "--solvers", "auto,scipy-cg",
                 "--device", "cpu", "--repeat", "1", "--warmup", "0", "--append", str(copy), "--plot", str(png)])
    assert code == 0
    out = capsys.readouterr().out
    assert "true relres" in out and "vs best peer" in out and f"appended to {copy}" in out
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    text = copy.read_text()
    assert text.startswith(before.decode()) and RESULTS.read_bytes() == before  # the real file is untouched
    section = text[len(before.decode()):]
    lines = section.strip().splitlines()
    assert lines[0].startswith("## slactl bench: poisson2d, poisson3d on cpu (")
    assert any(l.startswith("Date: ") and "torch" in l for l in lines)
    assert any(l.startswith("Command: `slactl bench poisson2d poisson3d --sizes 400,1000") for l in lines)
    table = [l for l in lines if l.startswith("|")]
    assert len(table) == 2 + 2 * 2 * 2 and len({l.count("|") for l in table}) == 1


@pytest.mark.parametrize("args, needle", [
    (["--solvers", "auto,nosuch"], "unknown solver 'nosuch'"),
    (["--solvers", "cg+nosuch"], "unknown preconditioner 'nosuch'"),
    (["poisson9d"], "unknown problem 'poisson9d'"),
    (["--sizes", "lots"], "--sizes"),
])
def test_bad_input_is_one_line_exit_2(args, needle, capsys):
    assert main(["bench", *args, "--device", "cpu", "--sizes", "100"] if "--sizes" not in args
                else ["bench", *args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_paths(capsys):
    """Every CUDA path once at 10,000 DOF (run before a GPU benchmark: pytest -m gpu tests/cli/test_bench.py)."""
    solvers = "auto,cg+jacobi,cg,cudss,cupyx-cg,cupyx-cg+jacobi,torch-cg+jacobi,torch-spsolve,pyamg"
    assert main(["bench", "poisson2d", "--sizes", "10000", "--solvers", solvers, "--device", "cuda",
                 "--repeat", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["machine"]["gpus"]
    rows = {r["solver"]: r for r in out["rows"]}
    for name, r in rows.items():
        assert r["status"] in ("ok", "skipped"), r
        if r["status"] == "skipped":
            assert name in ("cudss", "cupyx-cg", "cupyx-cg+jacobi", "torch-spsolve", "pyamg") and r["reason"]
            continue
        assert r["relres"] < 1.01e-8, r
        assert r["memory_basis"] == ("host" if name == "pyamg" else "cuda")
        # The fresh device copy of the matrix is inside the measurement: at least 12 nnz + 4 (n + 1) + 8 n bytes.
        assert r["peak_bytes_per_dof"] >= (12 * r["nnz"] + 4 * (r["n"] + 1) + 8 * r["n"]) / r["n"], r
    for name in ("cg+jacobi", "cupyx-cg", "cupyx-cg+jacobi", "torch-cg+jacobi"):
        if rows[name]["status"] == "ok":
            assert rows[name]["bandwidth_gbs"] > 0 and rows[name]["iterations"] > 50


TINY = ["bench", "poisson2d", "--sizes", "100", "--solvers", "scipy-spsolve", "--device", "cpu", "--repeat", "1",
        "--warmup", "0"]


@pytest.mark.parametrize("option, name, needle", [
    ("--append", "nodir/r.md", "directory {tmp}/nodir does not exist"),
    ("--append", ".", "is a directory"),
    ("--plot", "p.xyz", "extension .xyz is not an image format matplotlib writes"),
    ("--plot", "p", "the name has no extension"),
])
def test_outputs_are_checked_before_running(tmp_path, capsys, monkeypatch, option, name, needle):
    import slactl.benchmark

    monkeypatch.setattr(slactl.benchmark, "run_benchmark", lambda *a, **k: pytest.fail("ran the benchmark"))
    path = tmp_path / name
    assert main([*TINY, option, str(path)]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert out.out == "" and len(lines) == 1 and "Traceback" not in out.err
    assert lines[0].startswith(f"slactl: usage: {option} {path}: ") and needle.format(tmp=tmp_path) in lines[0]


@pytest.mark.parametrize("json_output", [False, True])
def test_a_failed_write_comes_after_the_results(tmp_path, capsys, monkeypatch, json_output):
    from slactl.benchmark import report

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(report, "append_markdown", refuse)
    path = tmp_path / "r.md"
    assert main([*TINY, "--append", str(path), *(["--json"] if json_output else [])]) == 2
    out = capsys.readouterr()
    if json_output:
        assert json.loads(out.out)["rows"][0]["solver"] == "scipy-spsolve"
    else:
        assert "scipy-spsolve" in out.out and "true relres" in out.out  # the table was printed first
    err = [line for line in out.err.strip().splitlines() if line.startswith("slactl:")]
    assert len(err) == 1 and "Traceback" not in out.err
    assert err[0] == f"slactl: cannot write: --append {path}: Permission denied; the results are printed above"


@pytest.mark.parametrize("sizes", ["1e400", "2e12"])
def test_absurd_sizes_are_usage_errors(capsys, sizes):
    assert main(["bench", "--sizes", sizes, "--solvers", "auto", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sizes" in err and "Traceback" not in err


def _interrupt_after(partial):
    def write(*args):
        partial(*args)
        raise KeyboardInterrupt

    return write


@pytest.mark.parametrize("failure", ["short", "interrupt"])
def test_an_interrupted_append_leaves_the_file_as_it_was(tmp_path, monkeypatch, failure):
    """Ctrl-C says that outputs are atomic: --append adds its section whole or not at all, even
    when the write stops half-way (a full disk) or an interrupt comes right after it."""
    from slactl.benchmark import report
    from slactl.cli.bench import _write_outputs
    from slactl.errors import OutputError

    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nearlier sections\n")
    path.chmod(0o640)
    monkeypatch.setattr(report, "markdown", lambda *a: "## a new section\n")
    real_write = os.write

    def half_write(fd, data):
        n = real_write(fd, data[: len(data) // 2])
        if failure == "interrupt":
            raise KeyboardInterrupt
        return n

    monkeypatch.setattr(report.os, "write", half_write)
    with pytest.raises(KeyboardInterrupt if failure == "interrupt" else OutputError):
        _write_outputs([], None, {}, "slactl bench", path, None)
    assert path.read_text() == "# Benchmark results\n\nearlier sections\n"
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]  # no temporary file left behind
    monkeypatch.setattr(report.os, "write", real_write)
    _write_outputs([], None, {}, "slactl bench", path, None)
    assert path.read_text() == "# Benchmark results\n\nearlier sections\n\n## a new section\n"
    assert path.stat().st_mode & 0o777 == 0o640  # the file itself, appended to


def _append_sections(path, who):
    """One bench run's --append, 25 times (in a forked process: the patch stays there)."""
    from slactl.benchmark import report
    from slactl.cli.bench import _write_outputs

    for i in range(25):
        report.markdown = lambda *a, i=i: f"## {who}-{i}\n"
        _write_outputs([], None, {}, "slactl bench", path, None)


def test_concurrent_appends_keep_every_section(tmp_path):
    """Several bench runs appending to one results file at once: no section is lost or split (a
    copy-and-rename append would keep only the last writer's copy)."""
    import multiprocessing as mp

    path = tmp_path / "RESULTS.md"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_sections, args=(path, w)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    text = path.read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sorted(sections) == sorted(f"## {w}-{i}" for w in range(6) for i in range(25))
    assert text.startswith("# Benchmark results\n\n## ") and "\n\n\n" not in text


def test_an_interrupted_plot_leaves_the_old_one(tmp_path, monkeypatch):
    from slactl.benchmark import report
    from slactl.cli.bench import _write_outputs

    path = tmp_path / "bench.svg"
    path.write_text("<svg>the previous plot</svg>")
    monkeypatch.setattr(report, "plot", _interrupt_after(lambda rows, cfg, p, m: Path(p).write_text("<svg>half")))
    with pytest.raises(KeyboardInterrupt):
        _write_outputs([], None, {}, "slactl bench", None, path)
    assert path.read_text() == "<svg>the previous plot</svg>" and [p.name for p in tmp_path.iterdir()] == ["bench.svg"]
