"""``python -m slactl.cli ARGS``: the `slactl` command, as `slactl run` starts it on every rank.

A rank whose collective fails because a PEER died (Gloo: connection closed or reset; a process
group timeout) exits with :data:`~slactl.dist.launcher.PEER_FAILURE_EXIT` instead of showing a
traceback, so that the launcher reports the rank that failed first, not its victims.

Under `slactl run` (``SLACTL_RUN_REPORT`` names a file that does not exist yet) the user sees ONE
report of an error, however many ranks hit it: a failing rank holds its error line back, and only
the first one to create that file prints it (tagged with its rank); the others stay quiet. A
victim of a peer's failure prints nothing unless no rank has reported within a second (a peer
that hangs rather than fails: the victim's timeout is then the only explanation).
"""

import io
import os
import sys
import time

from slactl.cli.main import err_console, main

_PEER_SIGNS = ("Connection closed by peer", "Connection reset by peer", "remote worker", "Timed out", "timed out")
REPORT_ENV = "SLACTL_RUN_REPORT"  # the same name as slactl.cli.run.REPORT_ENV (not imported: run imports torch)


def _peer_failure(exc: BaseException) -> bool:
    # the group may already be torn down by the command's cleanup: being a launched rank suffices
    if "torch.distributed" not in sys.modules or "WORLD_SIZE" not in os.environ:
        return False
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _PEER_SIGNS)


def _launched() -> bool:
    """Started as a rank by `slactl run` (which set the report file's name)."""
    return bool(os.environ.get(REPORT_ENV)) and "WORLD_SIZE" in os.environ


def _claim_report() -> bool:
    """True for the first rank to report an error (it creates the report file); True as well when
    there is nothing to coordinate through (no file name, an unwritable place: better twice than never)."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return True
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True
    os.write(fd, os.environ.get("RANK", "?").encode())
    os.close(fd)
    return True


def _mark(suffix: str) -> None:
    try:
        open(os.environ[REPORT_ENV] + suffix, "w").close()
    except OSError:
        pass


def _wait_for(*suffixes: str, seconds: float) -> None:
    """Wait until one of the marker files exists (at most ``seconds``).

    The launcher stops every rank as soon as one exits with an error, so a rank with nothing to
    say must not exit before the rank that is printing: the report's (``.shown``) or rank 0's
    results (``.rank0``, written when rank 0 is done)."""
    base = os.environ[REPORT_ENV]
    end = time.monotonic() + seconds
    while time.monotonic() < end and not any(os.path.exists(base + s) for s in suffixes):
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


def _report_peer_failure(exc: BaseException, by_run: bool) -> None:
    """A victim's line: shown when not under `slactl run`; under it, only when no rank has
    reported within a second (the culprit reports within milliseconds of its failure)."""
    if not by_run:
        _show(_stopped_line(exc), tagged=False)
        return
    path = os.environ[REPORT_ENV]
    end = time.monotonic() + 1.0
    while time.monotonic() < end and not os.path.exists(path):
        time.sleep(0.02)
    if not os.path.exists(path) and _claim_report():
        _show(_stopped_line(exc), tagged=True)


def _run() -> None:
    from slactl.cli.errors import exit_code_for

    rank = "WORLD_SIZE" in os.environ
    if rank:
        from slactl.dist.launcher import PEER_FAILURE_EXIT  # (imports torch: only for a launched rank)
    by_run = _launched()
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
        try:
            code = main(classify=classify) if rank else main()
        finally:
            if held is not None:
                err_console.file = shown
    except Exception as exc:  # noqa: BLE001 - only peer failures are translated; the rest propagate
        if not _peer_failure(exc):  # (never true outside a launched rank)
            raise
        stopped.append(exc)
    if stopped:
        _report_peer_failure(stopped[0], by_run)
        sys.exit(PEER_FAILURE_EXIT)
    text = held.getvalue() if held is not None else ""
    if not by_run:
        if text:
            _show(text, tagged=False)
        sys.exit(code)
    if code == 0:
        if text:
            _show(text, tagged=False)
    elif text and _claim_report():
        _show(text, tagged=True)
        _mark(".shown")
    elif text:  # another rank reported: let it finish its line before the launcher stops it
        _wait_for(".shown", seconds=2.0)
    elif os.environ.get("RANK", "0") != "0":  # failed quietly, as followers of rank 0 do
        _wait_for(".shown", ".rank0", seconds=5.0)
    if os.environ.get("RANK", "0") == "0":
        _mark(".rank0")
    sys.exit(code)


if __name__ == "__main__":
    _run()
