"""`slactl.cli.main`: a bug is its traceback and exit 70, a user error one line and its class's
code (with --debug also the traceback), Ctrl-C a line and exit 130."""

from __future__ import annotations

import platform

import pytest

from slactl.cli.main import main


def _raise(exc):
    def f(*args, **kwargs):
        raise exc
    return f


def test_a_bug_shows_its_traceback_and_exits_70(monkeypatch, capsys):
    monkeypatch.setattr(platform, "python_version", _raise(RuntimeError("injected bug")))
    assert main(["version"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: injected bug" in err
    assert "internal error (RuntimeError): this is a bug in slactl" in err


def test_debug_shows_the_traceback_of_a_user_error_and_keeps_its_code(capsys):
    assert main(["--debug", "info", "no/such.mtx"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("slactl: bad input: no/such.mtx")


def test_a_user_error_is_one_line(capsys):
    assert main(["info", "no/such.mtx"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    monkeypatch.setattr(platform, "python_version", _raise(KeyboardInterrupt()))
    assert main(["version"]) == 130
    err = capsys.readouterr().err
    assert "slactl: interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["solve", "--rtol", "-1"], ["solve", "--method", "cg", "--rtol", "nan"]])
def test_a_bad_tolerance_is_a_usage_error_on_every_path(argv, capsys):
    assert main(argv) == 2
    assert "rtol must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv, code, error", [
    (["version"], 70, "internal error (RuntimeError)"),  # a bug
    (["--debug", "info", "no/such.mtx"], 2, "slactl: bad input"),  # --debug on a user error
])
def test_the_traceback_goes_where_every_other_line_goes(monkeypatch, capsys, argv, code, error):
    """A launched rank holds err_console's stream back to report once (slactl.cli.__main__): a
    traceback written to sys.stderr instead would get past it, on every rank."""
    import io

    from slactl.cli.main import err_console

    held = io.StringIO()
    monkeypatch.setattr(err_console, "_file", held)
    monkeypatch.setattr(platform, "python_version", _raise(RuntimeError("injected bug")))
    assert main(argv) == code
    assert capsys.readouterr().err == ""
    text = held.getvalue()
    assert text.startswith("Traceback") and error in text.strip().splitlines()[-1]
