"""``python -m slactl.cli ARGS``: the `slactl` command, as `slactl run` starts it on every rank.

A rank whose collective fails because a PEER died (Gloo: connection closed or reset; a process
group timeout) exits with :data:`~slactl.dist.launcher.PEER_FAILURE_EXIT` and one line instead of a
traceback, so that the launcher reports the rank that failed first, not its victims.
"""

import sys

from slactl.cli.main import err_console, main

_PEER_SIGNS = ("Connection closed by peer", "Connection reset by peer", "remote worker", "Timed out", "timed out")


def _peer_failure(exc: BaseException) -> bool:
    import os

    # the group may already be torn down by the command's cleanup: being a launched rank suffices
    if "torch.distributed" not in sys.modules or "WORLD_SIZE" not in os.environ:
        return False
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _PEER_SIGNS)


def _run() -> None:
    try:
        code = main()
    except Exception as exc:  # noqa: BLE001 - only peer failures are translated; the rest propagate
        if not _peer_failure(exc):
            raise
        from slactl.dist.launcher import PEER_FAILURE_EXIT

        first = str(exc).split(". ")[0]
        err_console.print(f"slactl: stopped: another rank failed ({first})", markup=False)
        sys.exit(PEER_FAILURE_EXIT)
    sys.exit(code)


if __name__ == "__main__":
    _run()
