"""``python -m slactl.cli ARGS``: the `slactl` command, as `slactl run` starts it on every rank.

A rank whose collective fails because a PEER died (Gloo: connection closed or reset; a process
group timeout) exits with :data:`~slactl.dist.launcher.PEER_FAILURE_EXIT` instead of showing a
traceback, so that the launcher reports the rank that failed first, not its victims.

Under `slactl run` (``SLACTL_RUN_REPORT`` names a file that does not exist yet) the user sees ONE
report of an error, however many ranks hit it: a failing rank holds its error line back, and only
the first one to create that file prints it (tagged with its rank) and writes its rank and exit
code there, for `slactl run` to exit with (:mod:`slactl.cli.run_report`); the others stay quiet. A
victim of a peer's failure prints nothing unless no rank has reported within a second (a peer
that hangs rather than fails: the victim's timeout is then the only explanation). Over several
nodes there is no file all ranks share: every failing rank prints its own line, tagged.
"""

from __future__ import annotations

import io
import os
import sys
import time

from slactl.cli import run_report
from slactl.cli.main import err_console, main

_PEER_SIGNS = ("Connection closed by peer", "Connection reset by peer", "remote worker", "Timed out", "timed out")


def _peer_failure(exc: BaseException) -> bool:
    # the group may already be torn down by the command's cleanup: being a launched rank suffices
    if "torch.distributed" not in sys.modules or "WORLD_SIZE" not in os.environ:
        return False
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _PEER_SIGNS)


def _claim_report(claim: str, code: int) -> bool:
    """True for the first rank to report an error: it claims the report, with its rank and ``code``."""
    return run_report.claim(claim, os.environ.get("RANK", "?"), code)


def _mark(path: str, suffix: str) -> None:
    try:
        open(path + suffix, "w").close()
    except OSError:
        pass


def _wait_for(path: str, *suffixes: str, seconds: float) -> None:
    """Wait until one of the marker files ``path + suffix`` exists (at most ``seconds``).

    The launcher stops every rank as soon as one exits with an error, so a rank with nothing to
    say must not exit before the rank that is printing: the report's (``.shown``) or rank 0's
    results (``.rank0``, written when rank 0 is done)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not any(os.path.exists(path + s) for s in suffixes):
        time.sleep(0.02)


def _rank_tag() -> str:
    world = os.environ.get("WORLD_SIZE", "1")
    return "" if world == "1" else f" (rank {os.environ.get('RANK', '?')} of {world})"


def _show(text: str, tagged: bool) -> None:
    if tagged:
        text = text.rstrip("\n") + _rank_tag() + "\n"
    sys.stderr.write(text)
    sys.stderr.flush()


def _stopped_line(exc: BaseException) -> str:
    first = str(exc).split(". ")[0]
    return f"slactl: stopped: another rank failed ({first})\n"


def _report_peer_failure(exc: BaseException, claim: str | None, code: int) -> None:
    """A victim's line: shown when there is no claim file (not under `slactl run`, or over several
    nodes: tagged there, as every rank reports); with one, only when no rank has reported within a
    second (the culprit reports within milliseconds of its failure)."""
    if claim is None:
        _show(_stopped_line(exc), tagged=run_report.multi_node())
        return
    end = time.monotonic() + 1.0
    while time.monotonic() < end and not os.path.exists(claim):
        time.sleep(0.02)
    if not os.path.exists(claim) and _claim_report(claim, code):
        _show(_stopped_line(exc), tagged=True)


def _run() -> None:
    from slactl.cli.errors import exit_code_for

    rank = "WORLD_SIZE" in os.environ
    if rank:
        from slactl.dist.launcher import PEER_FAILURE_EXIT  # (imports torch: only for a launched rank)
    claim = run_report.claim_path()
    held = None
    stopped: list = []
    if rank:
        # main() turns every exception into a line and an exit code; a peer's failure is not this
        # rank's error, so it gets the victims' exit code and the line is decided below.
        def classify(exc: BaseException) -> tuple:
            if _peer_failure(exc):
                stopped.append(exc)
                return PEER_FAILURE_EXIT, "stopped"
            return exit_code_for(exc)

        held, shown = io.StringIO(), err_console.file
        err_console.file = held  # the error line waits until we know whether another rank reported
    try:
        code = main(classify=classify) if rank else main()  # main() returns a code for every Exception
    finally:
        if held is not None:
            err_console.file = shown
    if stopped:
        _report_peer_failure(stopped[0], claim, PEER_FAILURE_EXIT)
        sys.exit(PEER_FAILURE_EXIT)
    text = held.getvalue() if held is not None else ""
    if claim is None:
        if text:
            _show(text, tagged=code != 0 and run_report.multi_node())
        sys.exit(code)
    if code == 0:
        if text:
            _show(text, tagged=False)
    elif text and _claim_report(claim, code):
        _show(text, tagged=True)
        _mark(claim, ".shown")
    elif text:  # another rank reported: let it finish its line before the launcher stops it
        _wait_for(claim, ".shown", seconds=2.0)
    elif os.environ.get("RANK", "0") != "0":  # failed quietly, as followers of rank 0 do
        _wait_for(claim, ".shown", ".rank0", seconds=5.0)
    if os.environ.get("RANK", "0") == "0":
        _mark(claim, ".rank0")
    sys.exit(code)


if __name__ == "__main__":
    _run()
