"""The report-once protocol between `slactl run` and its ranks, shared by both sides.

`slactl run` names a claim file in ``SLACTL_RUN_REPORT``; the first failing rank creates it and
writes ``RANK:CODE`` (the rank whose error the user saw, and its exit code), and `slactl run` exits
with that code: the launcher's own code may be another rank's, or torchrun's generic 1.

Torch-free on purpose: the ranks' entry point (``slactl.cli.__main__``) imports it before it knows
whether it needs torch, and `slactl run` imports it before any rank starts.
"""

from __future__ import annotations

import os

REPORT_ENV = "SLACTL_RUN_REPORT"


def multi_node() -> bool:
    """Ranks on more than one node (torchrun sets ``LOCAL_WORLD_SIZE``; slactl's own launcher runs
    every rank on one host and does not)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        return False
    return world > local


def claim_path() -> str | None:
    """This rank's claim file, or None when there is nothing to coordinate through: not a rank of
    `slactl run`, or a multi-node run. The claim file lies in a temporary directory of the node
    that started `slactl run`, which ranks on the other nodes cannot see; there every rank reports
    its own error, tagged with its rank, rather than one claim per node pretending to be the run's."""
    path = os.environ.get(REPORT_ENV)
    if not path or "WORLD_SIZE" not in os.environ or multi_node():
        return None
    return path


def claim(path: str, rank: str, code: int) -> bool:
    """Create ``path`` holding ``RANK:CODE``; False when another rank created it first. True as well
    when the file cannot be created at all (better a report twice than never)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True
    try:
        os.write(fd, f"{rank}:{code}".encode())
    finally:
        os.close(fd)
    return True


def read_claim(path: str) -> tuple[int | None, int] | None:
    """``(rank, code)`` of the rank that reported (rank None when unknown), or None when no rank
    claimed the report or the claim is unreadable (a rank killed while writing it)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    rank, sep, code = text.strip().partition(":")
    if not sep:
        return None
    try:
        return (int(rank) if rank.isdigit() else None), int(code)
    except ValueError:
        return None
