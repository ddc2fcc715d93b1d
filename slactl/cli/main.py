"""The `slactl` command: one Typer app; each command group lives in its own module."""

from __future__ import annotations

import sys
import traceback
from typing import Callable

import typer
from rich.console import Console

from slactl.cli.errors import INTERNAL_ERROR, exit_code_for

app = typer.Typer(
    name="slactl",
    help="Differentiable sparse linear algebra for PyTorch: solve, find eigenpairs, check gradients, inspect, convert "
    "and partition sparse matrices, and run solve, eigsh and gradcheck distributed on a partition store "
    "(slactl COMMAND --help for each).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error."),
) -> None:
    _state["debug"] = debug


@app.command()
def version() -> None:
    """Print the slactl, torch and Python versions."""
    import platform

    import torch

    import slactl

    typer.echo(f"slactl {slactl.__version__} (torch {torch.__version__}, Python {platform.python_version()})")


def _register_commands() -> None:
    # Imported for their @app.command side effects; each module owns one group of commands.
    import importlib

    for name in ("slactl.cli.solve", "slactl.cli.files", "slactl.cli.gradcheck", "slactl.cli.eigen",
                 "slactl.cli.partition", "slactl.cli.run", "slactl.cli.bench"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != name:
                raise


def _click_classes() -> tuple[type, type, type]:
    """(Exit, ClickException, Abort): from click where typer depends on it, else from typer
    (typer >= 0.2x vendors click, so ``import click`` fails there)."""
    try:
        import click

        return click.exceptions.Exit, click.ClickException, click.exceptions.Abort
    except ModuleNotFoundError:
        return typer.Exit, typer.TyperException, typer.Abort


def main(argv: list[str] | None = None, *, classify: Callable[[BaseException], tuple[int, str]] = exit_code_for) -> int:
    """Console entry point: run the app, turn every user error into one line and its exit code,
    and every other exception (a bug) into its traceback and exit code 70. ``classify`` maps an
    exception to ``(code, label)`` (a launched rank adds the failures of its peers)."""
    try:
        _register_commands()
        rv = app(args=argv, standalone_mode=False)
        # Non-standalone click returns the code of a raised Exit instead of raising it; typer
        # turns a Ctrl-C into 130 that way (no slactl command exits 130 on its own).
        if isinstance(rv, int):
            return _interrupted() if rv == 130 else rv
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # noqa: BLE001 - the one place where errors become exit codes
        exit_cls, click_exc, abort_cls = _click_classes()
        if isinstance(exc, exit_cls):
            # typer turns a Ctrl-C into Exit(130) after printing an empty line
            if exc.exit_code == 130 and isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                return _interrupted()
            return int(exc.exit_code)
        if isinstance(exc, click_exc) and hasattr(exc, "show"):
            exc.show()
            return exc.exit_code
        if isinstance(exc, abort_cls):
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                return _interrupted()
            err_console.print("slactl: aborted")
            return 1
        code, label = classify(exc)
        if code == INTERNAL_ERROR:
            _print_traceback()
            err_console.print(
                f"slactl: internal error ({type(exc).__name__}): this is a bug in slactl; please report it "
                "with the command and the traceback above", markup=False)
            return code
        if _state["debug"]:
            _print_traceback()
        err_console.print(f"slactl: {label}: {exc}", markup=False)
        return code
    return 0


def _print_traceback() -> None:
    """The traceback of the exception being handled, on err_console's stream like every other
    line of slactl: a launched rank holds that stream back (slactl.cli.__main__), and sys.stderr
    would let the traceback of every rank through, ahead of the line that explains it."""
    traceback.print_exc(file=err_console.file)
    err_console.file.flush()


def _interrupted() -> int:
    err_console.print("slactl: interrupted; outputs are written atomically, so nothing half-written was left")
    return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    # Run through the imported module, where the command modules register on `app`.
    from slactl.cli.main import entry as _entry

    _entry()
