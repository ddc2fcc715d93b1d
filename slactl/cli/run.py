"""`slactl run`: start a slactl subcommand on several ranks (Gloo CPU workers or torchrun on GPUs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from slactl.cli import run_report
from slactl.cli.main import app, err_console
from slactl.cli.output import echo_json
from slactl.cli.run_report import REPORT_ENV

# The subcommands that run distributed, on a partition store; any other would run N times over.
DISTRIBUTED = ("solve", "eigsh", "gradcheck")
_STORES = ", ".join(f"{c} STORE" for c in DISTRIBUTED)
# Built from DISTRIBUTED, so that --help names exactly the subcommands _check_subcommand lets through.
_HELP = (
    f"Run {', '.join(DISTRIBUTED[:-1])} or {DISTRIBUTED[-1]} on a partition store over several ranks (every other "
    f"subcommand is refused): slactl run --procs 4 -- solve A.parts.zarr --json.\n\n"
    f"The subcommands that run distributed are {_STORES}, where STORE is a partition store written by "
    "`slactl partition` with one part per rank; rank 0 prints. Give exactly one of --procs (Gloo CPU workers on "
    "this host) or --gpus (torchrun, NCCL). A rank that fails stops the others; the run exits with that rank's "
    "exit code, and its error is shown once (over several nodes, every failing rank shows its own)."
)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             options_metavar="[OPTIONS] -- SUBCOMMAND [ARGS]...", help=_HELP)
def run(
    ctx: typer.Context,
    procs: Optional[int] = typer.Option(None, "--procs", help="Number of CPU ranks (Gloo) on this host."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs (ranks) per node, through torchrun and NCCL."),
    nnodes: str = typer.Option("1", "--nnodes", help="Nodes for --gpus (torchrun's --nnodes, e.g. 2 or 1:4)."),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of the rendezvous for --gpus over several nodes."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds a rank may wait for a peer before the run fails."),
) -> None:
    """`slactl run` (its --help is _HELP)."""
    import tempfile

    from slactl.errors import UsageError

    args: List[str] = list(ctx.args)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise UsageError("name the subcommand to run after --, e.g. slactl run --procs 4 -- solve A.parts.zarr")
    if (procs is None) == (gpus is None):
        raise UsageError("give exactly one of --procs N (CPU ranks) or --gpus N (GPU ranks)")
    if procs is not None and procs < 1:
        raise UsageError(f"--procs must be at least 1, got {procs}")
    if gpus is not None and gpus < 1:
        raise UsageError(f"--gpus must be at least 1, got {gpus}")
    single_node = nnodes in ("1", "1:1")
    if gpus is not None and not single_node and not rdzv_endpoint:
        raise UsageError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
    store, parts = _check_subcommand(ctx, args)
    if gpus is not None:
        _check_gpus(gpus, single_node)
    world = procs if procs is not None else (gpus if single_node else None)
    if world is not None and world != parts:
        from slactl.errors import PartitionError

        option = "--procs" if procs is not None else "--gpus"
        raise PartitionError(f"{store} is partitioned for {parts} ranks, but {option} {world} starts {world}; "
                             f"run with {option} {parts}, or re-partition with --parts {world}")
    with tempfile.TemporaryDirectory(prefix="slactl-run-") as tmp:
        report = os.path.join(tmp, "reported")
        if procs is not None:
            from slactl.dist.launcher import run_processes

            env = {**os.environ, REPORT_ENV: report}
            code, rank = run_processes([sys.executable, "-m", "slactl.cli", *args], procs, backend="gloo",
                                       timeout=timeout, env=env)
        else:
            code, rank = _torchrun(args, gpus, nnodes, rdzv_endpoint, timeout, report)
        claimed = run_report.read_claim(report)
    if code != 0:
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
        if claimed is not None:
            # the code of the rank whose error was shown: the launcher's may be another rank's
            # (whichever it saw fail first), and torchrun's is its own (1 for any failed worker)
            code = claimed[1]
        else:  # no rank explained itself (a crash, a signal; or a run over several nodes, whose
            # ranks report for themselves): say which one failed
            who = f"rank {rank}" if rank is not None else "a rank"
            err_console.print(f"slactl: run: {who} exited with code {code}; the other ranks were stopped", markup=False)
        raise typer.Exit(code)


def _check_subcommand(ctx: typer.Context, args: List[str]) -> tuple[str, int]:
    """Parse ``slactl ARGS`` here, once, before any rank starts: a usage error is shown once (as
    `slactl ...`) and a subcommand that would not run distributed is refused. Returns the
    partition store and its number of parts."""
    from slactl.errors import UsageError
    from slactl.io.partition_store import read_manifest

    group = ctx.find_root().command
    root = group.make_context("slactl", list(args))  # the root options (--debug); `slactl` in usage errors
    protected = getattr(root, "_protected_args", None)  # typer's vendored click; click itself: protected_args
    rest = [*(protected if protected is not None else getattr(root, "protected_args", [])), *root.args]
    if not rest:
        raise UsageError("name the subcommand to run after --, e.g. slactl run --procs 4 -- solve A.parts.zarr")
    name, command, sub_args = group.resolve_command(root, rest)
    which = _STORES
    if name not in DISTRIBUTED:
        raise UsageError(f"`slactl {name}` does not run distributed, so slactl run would only repeat it on every rank; "
                         f"the subcommands that run distributed on a partition store (slactl partition) are {which}")
    sub = command.make_context(name, list(sub_args), parent=root)
    matrix = sub.params.get("matrix")
    if name == "gradcheck" and sub.params.get("gallery") is not None:
        matrix = None
    if matrix is None or (Path(matrix).exists() and not Path(matrix).is_dir()):
        what = "the embedded default problem" if matrix is None else f"{matrix}"
        raise UsageError(f"{what} is not a partition store, so slactl run would only repeat `slactl {name}` on every "
                         f"rank; run it without slactl run, or partition it first (slactl partition MATRIX --parts N "
                         f"--out STORE) and run {which}")
    manifest = read_manifest(matrix)  # FormatError (exit 2) naming the path when it is not a complete store
    return str(matrix), int(manifest["parts"])


def _check_gpus(gpus: int, single_node: bool) -> None:
    """--gpus needs CUDA, enough GPUs on this node and NCCL; checked before torchrun starts."""
    import torch

    from slactl.errors import BackendUnavailableError

    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        raise BackendUnavailableError(f"--gpus needs CUDA GPUs, and torch sees none on this machine ({build}); "
                                      "run on CPU ranks with --procs N instead")
    count = torch.cuda.device_count()
    if single_node and gpus > count:
        raise BackendUnavailableError(f"--gpus {gpus} asks for more GPUs than this machine has ({count}); "
                                      f"use --gpus {count} or fewer, or --procs N for CPU ranks")
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_nccl_available()):
        raise BackendUnavailableError("--gpus runs the ranks through NCCL, which this torch build lacks; "
                                      "install a CUDA build of torch with NCCL, or use --procs N")


def _torchrun(args: List[str], gpus: int, nnodes: str, endpoint: Optional[str], timeout: float,
              report: str) -> tuple[int, None]:
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={gpus}", f"--nnodes={nnodes}"]
    if endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}"]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "slactl.cli", *args]
    # NVLink multicast (NVLS) stays off: it needs fabric support that these hosts do not guarantee.
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0", "SLACTL_DIST_BACKEND": "nccl", "SLACTL_DIST_TIMEOUT": str(timeout),
           REPORT_ENV: report}
    # torchrun stops every worker when one fails and exits non-zero itself.
    return subprocess.call(cmd, env=env), None


def solve_partitioned(store, *, rhs: str, method: str, preconditioner: str, rtol: float, atol: float,
                      maxiter: Optional[int], dtype: str, out, force: bool, json_output: bool, seed: int) -> None:
    """`slactl solve STORE` for a partition store: every rank solves its share, rank 0 reports.

    Run under `slactl run --procs P` (P = the store's parts). ``--out`` gathers x to rank 0."""
    import torch
    import torch.distributed as dist
    from rich.console import Console
    from rich.table import Table

    from slactl.dist.store_solve import solve_store
    from slactl.errors import ConvergenceError

    if out is not None:  # refused now (suffix, directory, an existing file), not after the solve
        from slactl.io.vectors import check_vector_output

        check_vector_output(out, force=force)
    failed = None
    try:
        try:
            summary, x = solve_store(store, rhs=rhs, method=method, preconditioner=preconditioner, rtol=rtol, atol=atol,
                                     maxiter=maxiter, dtype=getattr(torch, dtype), seed=seed, gather=out is not None)
        except ConvergenceError as exc:
            failed, summary, x = exc, getattr(exc, "summary", None), None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if summary is not None:  # rank 0
        if x is not None:
            from slactl.io.vectors import write_vector

            write_vector(x.cpu().numpy(), out, force=force)
            summary["out"] = str(out)
        if json_output:
            echo_json(summary)
        else:
            table = Table(title=f"slactl solve: {summary['matrix']}", show_header=False, title_justify="left")
            table.add_column(style="bold")
            table.add_column()
            s = summary
            for k, v in [
                ("size", f"n = {s['n']:,}, nnz = {s['nnz']:,} ({s['dtype']} on {s['device']})"),
                ("ranks", f"{s['parts']} ({s['backend']}, partition by {s['partition']})"),
                ("solver", f"{s['method']}, preconditioner {s['preconditioner']}"),
                ("iterations", str(s["iterations"])),
                ("relative residual", f"{s['relres']:.3e}  (||b - A x|| / ||b||, recomputed)"),
                ("converged", "yes" if s["converged"] else "[red]no[/]"),
                ("time", f"load {s['load_seconds']:.3f} s, warm-up {s['warmup_seconds']:.3f} s, setup {s['setup_seconds']:.3f} s, solve {s['solve_seconds']:.3f} s "
                         f"({1e3 * s['per_iteration_seconds']:.3f} ms per iteration)"),
                ("solution", f"min {s['x_min']:.6g}, max {s['x_max']:.6g}, ||x|| = {s['x_norm']:.6g}"),
            ] + ([("profile (max over ranks)", _profile_line(s["profile"]))] if "profile" in s else []) \
              + ([("written to", s["out"])] if "out" in s else []):
                table.add_row(k, v)
            Console().print(table)
    if failed is not None:
        if summary is not None and not json_output:
            err_console.print(f"not converged: {failed}", markup=False)
        raise typer.Exit(3)


def _profile_line(p: dict) -> str:
    """The SLACTL_DIST_PROFILE split of the profiled repeat solve, in ms per iteration."""
    its = max(int(p["iterations"]), 1)
    ms = lambda key: 1e3 * max(p[key]) / its  # noqa: E731
    return (f"compute {ms('compute_seconds'):.3f}, halo {ms('halo_seconds'):.3f}, all-reduce {ms('allreduce_seconds'):.3f} "
            f"ms per iteration (profiled solve {p['solve_seconds']:.3f} s, synchronized at every phase)")
