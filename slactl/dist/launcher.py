"""Starting workers: from Python (:func:`launch`), from a command line (:func:`run_processes`), and
joining a process group from the environment (:func:`init_process_group`).

A failing rank never leaves the others hanging: the launcher watches every worker, and the first
one that exits with an error (or raises, for :func:`launch`) makes it stop the rest (SIGTERM, then
SIGKILL) and report which rank failed. Process groups get a timeout as a second line of defence
(a rank blocked on a peer that is alive but stuck raises after ``timeout`` seconds).

Environment of a worker (what ``torchrun`` sets too): ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``; slactl adds ``SLACTL_DIST_BACKEND`` (``gloo`` or ``nccl``) and
``SLACTL_DIST_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import socket
import subprocess
import time
import traceback
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from slactl.errors import SlactlError, UsageError

DEFAULT_TIMEOUT = 300.0
# Exit code of a rank that stopped because a peer failed (slactl's worker entry uses it), so that
# the launcher reports the rank that failed first rather than one of its victims.
PEER_FAILURE_EXIT = 75


class WorkerError(SlactlError, RuntimeError):
    """A worker rank failed (raised, crashed or timed out); the other ranks were stopped.

    ``rank`` is the first rank that failed and ``details`` its traceback when one was captured.
    """

    def __init__(self, message: str, rank: int | None = None, details: str = ""):
        self.rank = rank
        self.details = details
        super().__init__(message)


def free_port() -> int:
    """A TCP port that is free on this host right now (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_distributed() -> bool:
    """True inside an initialized process group or when launched (``WORLD_SIZE`` is set)."""
    return (dist.is_available() and dist.is_initialized()) or "WORLD_SIZE" in os.environ


def init_process_group(backend: str | None = None, *, timeout: float | None = None) -> tuple[int, int]:
    """Join the process group described by the environment (idempotent); return ``(rank, world)``.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        Default: ``SLACTL_DIST_BACKEND``, else ``nccl`` when CUDA is available, else ``gloo``.
    timeout : float, optional
        Seconds a collective may wait for a peer (default ``SLACTL_DIST_TIMEOUT`` or 300).
    """
    if not dist.is_available():  # pragma: no cover - every supported torch build has it
        raise UsageError("this torch build has no torch.distributed")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "WORLD_SIZE" not in os.environ:
        raise UsageError("no process group to join: start the workers with `slactl run --procs N -- ...`, "
                         "slactl.dist.launch(fn, nprocs=N) or torchrun")
    backend = backend or os.environ.get("SLACTL_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    seconds = float(timeout if timeout is not None else os.environ.get("SLACTL_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if backend == "nccl":
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(seconds=seconds))
    return dist.get_rank(), dist.get_world_size()


def device_for_backend() -> torch.device:
    """The device a rank computes on: its GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------------------ Python launcher
def _worker(fn: Callable, args: tuple, rank: int, nprocs: int, port: int, backend: str,
            timeout: float, results: Any) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nprocs),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "SLACTL_DIST_BACKEND": backend, "SLACTL_DIST_TIMEOUT": str(timeout)})
    torch.set_num_threads(1)  # ranks share the host's cores
    try:
        init_process_group(backend, timeout=timeout)
        out = fn(*args)
        results.put((rank, True, out))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops the others
        results.put((rank, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        raise SystemExit(1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(fn: Callable[..., Any], nprocs: int = 2, *, args: Sequence[Any] = (), backend: str = "gloo",
           timeout: float = 120.0) -> list[Any]:
    """Run ``fn(*args)`` on ``nprocs`` fresh processes joined in one process group.

    Each worker joins the group (``torch.distributed`` is initialized when ``fn`` starts), runs
    ``fn`` and sends back its return value (which must pickle). If any rank raises or dies, the
    others are stopped at once and :class:`WorkerError` names the rank, with its traceback.

    Parameters
    ----------
    fn : callable
        A module-level function (workers are spawned: it is imported, not copied).
    nprocs : int
        Number of ranks.
    args : sequence
        Positional arguments of ``fn`` (the same on every rank; use ``dist.get_rank()`` inside).
    backend : {"gloo", "nccl"}
        ``gloo`` for CPU tensors, ``nccl`` for one GPU per rank.
    timeout : float
        Seconds for the whole run and for any collective.

    Returns
    -------
    list
        ``fn``'s return value of every rank, by rank.

    Examples
    --------
    >>> import torch.distributed as dist
    >>> def hello():
    ...     return dist.get_rank()
    >>> slactl.dist.launch(hello, nprocs=2)          # doctest: +SKIP
    [0, 1]
    """
    if int(nprocs) < 1:
        raise UsageError(f"nprocs must be at least 1, got {nprocs}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(fn, tuple(args), r, int(nprocs), port, backend, timeout, results),
                         daemon=True) for r in range(int(nprocs))]
    for p in procs:
        p.start()
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(got) < len(procs):
            try:
                rank, ok, payload = results.get(timeout=0.05)
            except queue_mod.Empty:
                dead = [r for r, p in enumerate(procs) if r not in got and p.exitcode not in (None, 0)]
                if dead:
                    raise WorkerError(f"rank {dead[0]} died with exit code {procs[dead[0]].exitcode}; "
                                      "the other ranks were stopped", rank=dead[0])
                if time.monotonic() > deadline:
                    raise WorkerError(f"the workers did not finish within {timeout:g} s; they were stopped")
                continue
            if not ok:
                first = payload.splitlines()[0] if payload else "unknown error"
                raise WorkerError(f"rank {rank} failed: {first}; the other ranks were stopped", rank=rank, details=payload)
            got[rank] = payload
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        _stop([p for p in procs if p.is_alive()], lambda p: p.terminate(), lambda p: p.kill(),
              lambda p, t: p.join(t))
    return [got[r] for r in range(len(procs))]


def _stop(procs: list, term: Callable, kill: Callable, join: Callable, grace: float = 3.0) -> None:
    """SIGTERM every process, give them ``grace`` seconds together, then SIGKILL what is left."""
    for p in procs:
        term(p)
    end = time.monotonic() + grace
    for p in procs:
        join(p, max(0.0, end - time.monotonic()))
    for p in procs:
        kill(p)
        join(p, 1.0)


# ---------------------------------------------------------------------------- command launcher
def run_processes(command: Sequence[str], nprocs: int, *, backend: str = "gloo", timeout: float = DEFAULT_TIMEOUT,
                  env: dict | None = None) -> tuple[int, int | None]:
    """Run ``command`` as ``nprocs`` SPMD ranks on this host and wait for all of them.

    Returns ``(exit_code, failed_rank)``: ``(0, None)`` when every rank succeeded; otherwise the
    exit code of the first rank that failed, after the others were stopped. The ranks share this
    process's stdout and stderr (by convention only rank 0 prints results).
    """
    port = free_port()
    base = dict(os.environ if env is None else env)
    base.update({"WORLD_SIZE": str(nprocs), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                 "SLACTL_DIST_BACKEND": backend, "SLACTL_DIST_TIMEOUT": str(timeout),
                 "OMP_NUM_THREADS": base.get("OMP_NUM_THREADS", "1")})
    procs = []
    for r in range(int(nprocs)):
        procs.append(subprocess.Popen(list(command), env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}))
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                return _root_cause(procs, failed)
            if all(c == 0 for c in codes):
                return 0, None
            time.sleep(0.02)
    finally:
        alive = [p for p in procs if p.poll() is None]
        _stop(alive, lambda p: p.send_signal(signal.SIGTERM), lambda p: p.kill(), _wait_popen)


def _root_cause(procs: list, failed: list[int], grace: float = 2.0) -> tuple[int, int]:
    """The failure to report: a rank that failed by itself, not one that only lost a peer.

    Peers of a failed rank die within milliseconds (their connections close), so the first exit
    the launcher sees may be a victim's; wait up to ``grace`` seconds for the culprit's."""
    end = time.monotonic() + grace
    while True:
        codes = [p.poll() for p in procs]
        culprits = [r for r, c in enumerate(codes) if c not in (None, 0, PEER_FAILURE_EXIT)]
        if culprits:
            return int(codes[culprits[0]]), culprits[0]
        if time.monotonic() > end or all(c is not None for c in codes):
            return int(codes[failed[0]]), failed[0]
        time.sleep(0.02)


def _wait_popen(p: subprocess.Popen, t: float) -> None:
    try:
        p.wait(timeout=t)
    except subprocess.TimeoutExpired:
        pass
