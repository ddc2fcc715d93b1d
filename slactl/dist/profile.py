"""Where a distributed solve spends its time: local compute, exposed halo exchange, all-reduce.

Off unless the environment variable ``SLACTL_DIST_PROFILE=1`` is set (or a :class:`DistProfile`
is passed explicitly): then every phase boundary synchronizes the rank's compute stream, so the
timings are exact but the solve runs slower than without profiling (the CPU can no longer queue
kernels ahead of the GPU). Without profiling nothing here synchronizes or even runs.

The clock is a phase clock: between :meth:`DistProfile.start` and :meth:`DistProfile.stop` every
moment belongs to exactly one phase, so the phases add up to the profiled wall time.

``compute``
    Everything that is not communication: local SpMV (interior and boundary rows), the Krylov
    method's vector work, the local preconditioner, Python overhead.
``halo``
    Posting the halo exchange (packing the send buffers) and the wait for the ghosts that the
    interior rows' SpMV did not hide.
``allreduce``
    Time inside :meth:`DistOperator.reduce` (the inner products' ``all_reduce``), including the
    wait for the slowest rank to arrive (load imbalance shows up here), and the other collectives
    of a solve (the coarse-level all-gather of the distributed AMG).

The distributed AMG (:mod:`slactl.dist.multigrid`) charges its levels' SpMV exchanges, its
prolongation and restriction exchanges to ``halo`` and its coarse gather to ``allreduce``.

Under NCCL the boundaries synchronize the *current* CUDA stream (where the kernels and the
waits on the communication streams are queued), not the whole device: the halo messages in flight
on NCCL's streams keep overlapping the interior SpMV, as they do without profiling.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

PHASES = ("compute", "halo", "allreduce")
ENV = "SLACTL_DIST_PROFILE"


def enabled() -> bool:
    """True when ``SLACTL_DIST_PROFILE`` is set to ``1`` (or ``true``/``yes``/``on``)."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


class DistProfile:
    """Per-rank seconds in each phase (:data:`PHASES`) and counts of matvecs, halo exchanges and
    all-reduces, accumulated between :meth:`start` and :meth:`stop`.

    Examples
    --------
    >>> p = DistProfile(torch.device("cpu"))
    >>> p.start(); p.switch("allreduce"); p.switch("compute"); p.stop()
    >>> sorted(p.summary())[:3]
    ['allreduce_seconds', 'allreduces', 'compute_seconds']
    """

    def __init__(self, device: Any):
        self.device = torch.device(device)
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.counts = {"matvecs": 0, "halo_exchanges": 0, "allreduces": 0}
        self._phase: str | None = None
        self._t = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def start(self) -> None:
        """Begin in the ``compute`` phase."""
        self._sync()
        self._phase, self._t = "compute", time.perf_counter()

    def switch(self, phase: str) -> None:
        """End the current phase (after synchronizing) and enter ``phase``."""
        if self._phase is None:  # not started: nothing is timed
            return
        self._sync()
        now = time.perf_counter()
        self.seconds[self._phase] += now - self._t
        self._phase, self._t = phase, now

    def stop(self) -> None:
        self.switch("compute")
        self._phase = None

    def count(self, what: str, k: int = 1) -> None:
        self.counts[what] += k

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> dict:
        """``{phase}_seconds`` for each phase, ``total_seconds`` and the counts (this rank)."""
        out = {f"{k}_seconds": v for k, v in self.seconds.items()}
        out["total_seconds"] = self.total
        out.update(self.counts)
        return out
