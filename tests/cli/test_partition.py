"""`slactl partition` refuses an --out that would replace its own input."""

from __future__ import annotations

import os

import pytest

from slactl.cli.main import main


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def matrix(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "gallery", "poisson2d", "--size", "5", "--out", "s.mtx")[0] == 0
    return tmp_path / "s.mtx"


@pytest.mark.parametrize("spelling", ["s.mtx", "./s.mtx", "ABS", "link.mtx", "hard.mtx", "."])
def test_out_that_is_the_input_is_refused(matrix, capsys, spelling):
    before = matrix.read_bytes()
    if spelling == "link.mtx":
        os.symlink("s.mtx", "link.mtx")
    if spelling == "hard.mtx":
        os.link("s.mtx", "hard.mtx")
    out = str(matrix) if spelling == "ABS" else spelling
    code, stdout, err = run(capsys, "partition", "s.mtx", "--parts", "2", "--out", out, "--force")
    lines = err.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("slactl: usage: s.mtx: ")
    assert ("source and destination are the same path" in lines[0]) or "holds the input matrix" in lines[0]
    assert matrix.read_bytes() == before


def test_a_new_out_still_works(matrix, capsys):
    code, out, err = run(capsys, "partition", "s.mtx", "--parts", "2", "--out", "s.parts", "--json")
    assert code == 0 and err == "" and '"parts": 2' in out
