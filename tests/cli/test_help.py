"""`slactl --help` and `slactl COMMAND --help` are complete: every command says what it does in
one line, and every option and argument says what it is for."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from slactl.cli.main import _register_commands, app

_register_commands()
COMMANDS = typer.main.get_command(app).commands  # {name: click Command}, every registered command
runner = CliRunner()


def _description(cmd: Any) -> str:
    """The first paragraph of the command's help: what `slactl --help` lists beside its name."""
    return " ".join((cmd.help or "").strip().split("\n\n")[0].split())


def test_root_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--debug" in result.output
    assert (app.info.help or "").strip(), "the app has no description"
    for name in COMMANDS:
        assert name in result.output, f"`slactl --help` does not list {name}"


def test_commands_registered() -> None:
    for name in ("solve", "backends", "info", "convert", "gallery", "eigsh", "gradcheck", "partition", "run", "version"):
        assert name in COMMANDS, f"{name} is not registered"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help(name: str) -> None:
    cmd = COMMANDS[name]
    description = _description(cmd)
    assert description, f"`slactl {name}` has no description (its function needs a docstring)"
    assert len(description) <= 300, f"`slactl {name}`: the first paragraph of the help is not one line: {description!r}"

    result = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert description.split("(")[0].split(":")[0].strip()[:40] in " ".join(result.output.split())

    missing = []
    for p in cmd.params:
        if getattr(p, "hidden", False):
            continue
        if not (getattr(p, "help", None) or "").strip():
            missing.append("/".join(p.opts))
    assert not missing, f"`slactl {name}`: no help text for {', '.join(missing)}"


def test_run_help_shows_the_subcommand_syntax() -> None:
    result = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "-- SUBCOMMAND" in result.output and "--procs" in result.output and "--gpus" in result.output


def test_run_says_exactly_which_subcommands_run_distributed() -> None:
    """`slactl --help`, `slactl run --help` and the README's row name the subcommands that
    `slactl run` lets through (any other is refused), not "the same subcommand"."""
    from pathlib import Path

    from slactl.cli.run import DISTRIBUTED

    listed = _description(COMMANDS["run"])  # what `slactl --help` shows beside `run`
    assert all(name in listed for name in DISTRIBUTED) and "refused" in listed, listed
    result = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert ", ".join(f"{name} STORE" for name in DISTRIBUTED) in " ".join(result.output.split())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `slactl run"))
    assert all(f"`{name} STORE`" in row for name in DISTRIBUTED) and "refused" in row, row
    assert "the same subcommand" not in row
