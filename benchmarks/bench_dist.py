"""Strong and weak scaling of distributed PCG on one node: 2D Poisson, b = ones, CG with
block-Jacobi(jacobi by default; --preconditioner sa-amg for local AMG), rtol 1e-8, through the shell path a user takes.

Every matrix is written by ``slactl gallery poisson2d``, split by ``slactl partition`` (contiguous
by default, or metis) into a temporary directory, and solved by
``python -m slactl.cli run --gpus K -- solve STORE --json`` (torchrun + NCCL; ``--cpu --procs``:
Gloo CPU ranks) with ``SLACTL_DIST_PROFILE=1``, so each run reports:

* the timed solve (after a warm-up of the communicators; no synchronization inside): total
  seconds, iterations, ms per iteration;
* the split of a second, profiled solve (synchronized at every phase boundary, so slower) into
  compute / exposed halo exchange / all-reduce, ms per iteration, mean over ranks;
* the true relative residual ``||b - A x|| / ||b||`` (recomputed);
* peak GPU memory (``torch.cuda.max_memory_allocated``, the largest rank) in bytes per owned DOF;
* ``||x_K - x_1|| / ||x_1||`` against the 1-rank solution of the same matrix (strong scaling).

(a) strong scaling: one matrix (``--strong-size S``: S x S grid) on 1..N ranks, plus the plain
single-GPU ``slactl solve --device cuda`` as the reference users compare with;
(b) weak scaling: ``--weak-size W`` (W x W DOF) per rank, i.e. a round(W sqrt(K))^2 grid on K ranks
(a run of the same matrix and rank count as a strong run is reused, not repeated).

    # on a node with 4 GPUs (at most about 9.5 minutes, --budget 480 s; see benchmarks/dist_gpu_scaling.sh):
    python3 benchmarks/bench_dist.py --gpus 4 --out RESULTS_DIR
    # on the CPU, Gloo, tiny sizes (exercises every code path):
    python benchmarks/bench_dist.py --cpu --procs 2 --strong-size 100 --weak-size 60

Results: a markdown table on stdout and, with ``--out DIR``, ``DIR/bench_dist.md`` and
``DIR/bench_dist.json`` (every run's full summary, per-rank profiles included), written after every
run so that a run cut short still leaves what it measured. ``--budget`` seconds: runs that would
start after it are skipped (and say so in the table).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NVLS_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def log(msg: str) -> None:
    print(f"[bench_dist {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def environment(profile: bool) -> dict:
    env = {**os.environ, **NVLS_OFF}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if profile:
        env["SLACTL_DIST_PROFILE"] = "1"
    else:
        env.pop("SLACTL_DIST_PROFILE", None)
    return env


def slactl(*args: str) -> list[str]:
    return [sys.executable, "-m", "slactl.cli", *args]


def check(cmd: list[str], env: dict, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; raise with its output when it fails."""
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


# ------------------------------------------------------------------------------- preparation
def prepare(work: Path, sizes: set[int], stores: set[tuple[int, int]], method: str, jobs: int, env: dict) -> dict:
    """Write every matrix (in parallel), then every partition store (in parallel); return the
    ``slactl partition --json`` report of each store and the seconds spent."""
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda s: check(slactl("gallery", "poisson2d", "--size", str(s), "--out",
                                             str(work / f"p{s}.zarr"), "--force"), env), sorted(sizes)))
        log(f"matrices {sorted(sizes)} written in {time.perf_counter() - t0:.1f} s")

        def part(key: tuple[int, int]) -> tuple[tuple[int, int], dict]:
            s, k = key
            p = check(slactl("partition", str(work / f"p{s}.zarr"), "--parts", str(k), "--method", method,
                             "--out", str(work / f"p{s}_{k}.parts"), "--force", "--json"), env)
            return key, last_json(p.stdout) or {}

        reports = dict(pool.map(part, sorted(stores)))
    seconds = time.perf_counter() - t0
    log(f"{len(stores)} partition stores written ({method}); preparation took {seconds:.1f} s")
    return {"reports": reports, "seconds": seconds}


# -------------------------------------------------------------------------------------- runs
def run_dist(work: Path, size: int, k: int, args: argparse.Namespace, env: dict, timeout: float) -> dict:
    store = work / f"p{size}_{k}.parts"
    xout = work / f"x{size}_{k}.npy"
    launch = ["run", "--procs", str(k)] if args.cpu else ["run", "--gpus", str(k)]
    cmd = slactl(*launch, "--timeout", str(int(args.peer_timeout)), "--", "solve", str(store), "--method", "cg",
                 "--preconditioner", args.preconditioner, "--rtol", str(args.rtol), "--json", "--out", str(xout), "--force")
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    summary = last_json(p.stdout)
    if summary is None:
        raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode} and printed no JSON\n"
                           f"{p.stdout[-3000:]}\n{p.stderr[-4000:]}")
    summary["exit_code"] = p.returncode
    summary["wall_seconds"] = wall
    summary["x_file"] = str(xout) if xout.exists() else None
    return summary


def run_plain(work: Path, size: int, args: argparse.Namespace, env: dict, timeout: float) -> dict:
    xout = work / f"x{size}_plain.npy"
    cmd = slactl("solve", str(work / f"p{size}.zarr"), "--device", "cpu" if args.cpu else "cuda", "--method", "cg",
                 "--preconditioner", args.preconditioner, "--rtol", str(args.rtol), "--json", "--out", str(xout), "--force")
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    summary = last_json(p.stdout)
    if summary is None:
        raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    summary["exit_code"] = p.returncode
    summary["wall_seconds"] = time.perf_counter() - t
    summary["x_file"] = str(xout) if xout.exists() else None
    return summary


def rel_diff(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    x, y = np.load(a), np.load(b)
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


# ------------------------------------------------------------------------------------ report
def fmt(v, spec: str, none: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, spec)


def row_values(r: dict) -> dict:
    s = r.get("summary") or {}
    its = s.get("iterations") or 0
    out = {"its": its if s else None, "solve": s.get("solve_seconds"),
           "ms_it": 1e3 * s["solve_seconds"] / max(its, 1) if s else None,
           "relres": s.get("relres"), "split": None, "profiled_ms": None, "bytes_dof": None}
    prof = s.get("profile")
    if prof:
        pits = max(int(prof["iterations"]), 1)
        mean = lambda key: 1e3 * float(np.mean(prof[key])) / pits  # noqa: E731
        out["split"] = (mean("compute_seconds"), mean("halo_seconds"), mean("allreduce_seconds"))
        out["profiled_ms"] = 1e3 * prof["solve_seconds"] / pits
    if s.get("peak_memory_bytes") and s.get("rank_rows"):
        out["bytes_dof"] = max(b / max(n, 1) for b, n in zip(s["peak_memory_bytes"], s["rank_rows"]))
    return out


def table(results: list[dict], unit: str) -> str:
    head = (f"| scaling | {unit} | n (DOF) | DOF per {unit[:-1] if unit.endswith('s') else unit} | iterations | solve (s) | "
            f"per iteration (ms) | speedup / efficiency | compute | halo | all-reduce | profiled total | "
            f"true relres | peak bytes/DOF | rel. diff vs 1 {unit[:-1] if unit.endswith('s') else unit} |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    base: dict[tuple[str, int], dict] = {}
    for r in results:
        if r["kind"] in ("strong", "weak") and r["ranks"] == 1 and r.get("summary"):
            base[(r["kind"], r["size"])] = row_values(r)
    weak1 = next((row_values(r) for r in results if r["kind"] == "weak" and r["ranks"] == 1 and r.get("summary")), None)
    for r in results:
        v = row_values(r)
        n = r["size"] ** 2
        label = {"strong": "strong", "weak": "weak", "plain": "strong, plain `slactl solve` (reference)"}[r["kind"]]
        if r.get("error"):
            lines.append(f"| {label} | {r['ranks']} | {n:,} | {n // r['ranks']:,} | {r['error']} |" + " |" * 10)
            continue
        eff = "-"
        if r["kind"] == "strong" and ("strong", r["size"]) in base and v["solve"]:
            b = base[("strong", r["size"])]
            sp = b["solve"] / v["solve"]
            eff = f"{sp:.2f}x / {100 * sp / r['ranks']:.0f}%"
        elif r["kind"] == "weak" and weak1 and v["ms_it"]:
            eff = f"{100 * weak1['ms_it'] / v['ms_it']:.0f}% (per iteration)"
        elif r["kind"] == "plain" and ("strong", r["size"]) in base and v["solve"]:
            eff = f"1 rank dist / plain = {base[('strong', r['size'])]['solve'] / v['solve']:.2f}"
        split = v["split"] or (None, None, None)
        diff = r.get("rel_diff")
        s = r.get("summary") or {}
        status = "" if s.get("converged", True) else f" ({s.get('status')})"
        lines.append(
            f"| {label}{' (reused)' if r.get('reused') else ''} | {r['ranks']} | {n:,} | {n // r['ranks']:,} | "
            f"{fmt(v['its'], 'd')}{status} | {fmt(v['solve'], '.3f')} | {fmt(v['ms_it'], '.3f')} | {eff} | "
            f"{fmt(split[0], '.3f')} | {fmt(split[1], '.3f')} | {fmt(split[2], '.3f')} | {fmt(v['profiled_ms'], '.3f')} | "
            f"{fmt(v['relres'], '.1e')} | {fmt(v['bytes_dof'], '.0f')} | "
            f"{'reference' if r['ranks'] == 1 and r['kind'] == 'strong' else fmt(diff, '.1e')} |")
    return "\n".join(lines)


def header(args: argparse.Namespace, prep: dict | None) -> str:
    import torch

    dev = f"CPU (Gloo ranks), torch {torch.__version__}"
    if not args.cpu:
        # the name from nvidia-smi: this process creates no CUDA context (the ranks own the GPUs)
        try:
            names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=30).stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            names = []
        dev = (f"{len(names) or '?'} x {names[0] if names else 'GPU'} on the node, torch {torch.__version__}, "
               "NCCL with NVLink multicast off")
    lines = [f"Distributed PCG scaling, {_dt.date.today().isoformat()}: {dev}; host {platform.node()}, "
             f"{os.cpu_count()} CPUs. 2D Poisson, b = ones, CG + block-Jacobi({args.preconditioner}), rtol {args.rtol:g}, "
             f"{args.partition} partition. Command: `{' '.join([Path(sys.executable).name] + sys.argv)}`.",
             "",
             "Solve time: after warm-up, no synchronization inside. compute / halo / all-reduce: ms per iteration of a "
             "second, profiled solve (`SLACTL_DIST_PROFILE=1`, every phase boundary synchronized; mean over ranks; "
             "halo = posting + wait not hidden by the owned-column SpMV; all-reduce includes waiting for the slowest "
             "rank). Strong speedup = T(1 rank) / T(K ranks), efficiency = speedup / K; weak efficiency = "
             "per-iteration time at 1 rank / at K ranks (iterations grow with the grid). Peak bytes/DOF: "
             "max over ranks of torch.cuda.max_memory_allocated / owned rows. Rel. diff: ||x_K - x_1|| / ||x_1||, "
             "same matrix."]
    if prep:
        lines.append(f"Preparation (gallery + partition stores, parallel): {prep['seconds']:.1f} s.")
    return "\n".join(lines)


def write(out: Path | None, args, prep, results) -> str:
    unit = "ranks" if args.cpu else "GPUs"
    text = header(args, prep) + "\n\n" + table(results, unit) + "\n"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_dist.md").write_text(text)
        payload = {"args": vars(args), "preparation": {k: v for k, v in (prep or {}).items() if k != "reports"},
                   "partitions": {f"{s}x{s}/{k}": rep for (s, k), rep in ((prep or {}).get("reports") or {}).items()},
                   "runs": results}
        (out / "bench_dist.json").write_text(json.dumps(payload, indent=1, default=str))
    return text


# -------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--gpus", type=int, help="GPUs on this node: runs on 1..GPUS of them (NCCL).")
    who.add_argument("--procs", type=int, help="With --cpu: CPU ranks, runs on 1..PROCS of them (Gloo).")
    ap.add_argument("--cpu", action="store_true", help="Gloo CPU ranks instead of GPUs (needs --procs).")
    ap.add_argument("--counts", type=str, default=None, help="Rank counts to run, e.g. 1,2,4 (default 1..N; 1 is always added).")
    ap.add_argument("--strong-size", type=int, default=4000, help="Strong scaling grid side (default 4000: 16M DOF; 0 skips).")
    ap.add_argument("--weak-size", type=int, default=2000, help="Weak scaling grid side per rank (default 2000: 4M DOF per rank; 0 skips).")
    ap.add_argument("--partition", choices=("contiguous", "metis"), default="contiguous")
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--preconditioner", default="jacobi",
                    help="Local preconditioner of block Jacobi (and of the 1-device reference): jacobi (default), sa-amg, ic0...")
    ap.add_argument("--no-plain", action="store_true", help="Skip the plain single-device `slactl solve` reference.")
    ap.add_argument("--no-profile", action="store_true", help="No profiled repeat solve (no compute/halo/all-reduce split).")
    ap.add_argument("--budget", type=float, default=480.0, help="Seconds; runs that would start later are skipped (default 480).")
    ap.add_argument("--run-timeout", type=float, default=300.0, help="Seconds one launch may take (default 300).")
    ap.add_argument("--peer-timeout", type=float, default=120.0, help="`slactl run --timeout`: seconds a rank waits for a peer.")
    ap.add_argument("--jobs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)), help="Parallel gallery/partition jobs.")
    ap.add_argument("--workdir", type=Path, default=None, help="Where the temporary stores go (default: the system temp dir).")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary matrices, stores and solutions.")
    ap.add_argument("--out", type=Path, default=None, help="Directory for bench_dist.md and bench_dist.json.")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    if args.cpu != (args.procs is not None):
        ap.error("use --cpu --procs N for CPU ranks, or --gpus N for GPUs")
    nmax = args.procs if args.cpu else args.gpus
    if nmax < 1:
        ap.error("the number of ranks must be at least 1")
    if not args.cpu:
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() < nmax:
            ap.error(f"--gpus {nmax}: torch sees {torch.cuda.device_count() if torch.cuda.is_available() else 0} GPU(s)")
    counts = sorted({1, *(int(c) for c in args.counts.split(","))} if args.counts else set(range(1, nmax + 1)))
    if max(counts) > nmax:
        ap.error(f"--counts {args.counts}: more ranks than {nmax}")

    # the plan: (kind, grid side, ranks), strong first (it holds the 1-rank reference)
    plan: list[tuple[str, int, int]] = []
    if args.strong_size:
        plan += [("strong", args.strong_size, k) for k in counts]
        if not args.no_plain:
            plan.append(("plain", args.strong_size, 1))
    if args.weak_size:
        plan += [("weak", int(round(args.weak_size * math.sqrt(k))), k) for k in counts]
    sizes = {s for _, s, _ in plan}
    stores = {(s, k) for kind, s, k in plan if kind != "plain"}

    env = environment(profile=not args.no_profile)
    work = Path(tempfile.mkdtemp(prefix="bench_dist_", dir=args.workdir))
    log(f"work dir {work}; plan: {[(k, f'{s}x{s}', r) for k, s, r in plan]}")
    results: list[dict] = []
    prep = None
    try:
        prep = prepare(work, sizes, stores, args.partition, max(1, args.jobs), env)
        done: dict[tuple[int, int], dict] = {}
        for kind, size, k in plan:
            entry = {"kind": kind, "size": size, "ranks": k}
            elapsed = time.perf_counter() - start
            if kind != "plain" and (size, k) in done:  # the same matrix on as many ranks: reuse
                entry.update({kk: vv for kk, vv in done[(size, k)].items() if kk not in ("kind",)}, reused=True)
                results.append(entry)
                write(args.out, args, prep, results)
                continue
            if elapsed > args.budget:
                entry["error"] = f"skipped: {elapsed:.0f} s spent, budget {args.budget:.0f} s"
                results.append(entry)
                log(f"{kind} {size}x{size} on {k}: {entry['error']}")
                continue
            timeout = max(30.0, min(args.run_timeout, args.budget + 90.0 - elapsed))
            log(f"{kind}: {size}x{size} ({size * size:,} DOF) on {k} {'rank(s)' if args.cpu else 'GPU(s)'} ...")
            try:
                if kind == "plain":
                    summary = run_plain(work, size, args, env, timeout)
                else:
                    summary = run_dist(work, size, k, args, env, timeout)
                entry["summary"] = summary
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                entry["error"] = f"failed: {str(exc).splitlines()[0][:160]}"
                entry["details"] = str(exc)[-6000:]
                log(f"{kind} {size}x{size} on {k}: {exc}")
                results.append(entry)
                write(args.out, args, prep, results)
                continue
            ref = done.get((size, 1))
            if ref is not None and (kind == "plain" or k > 1):
                entry["rel_diff"] = rel_diff(summary.get("x_file"), (ref.get("summary") or {}).get("x_file"))
            if kind != "plain":
                done[(size, k)] = entry
            s = summary
            log(f"  {s.get('iterations')} iterations, solve {s.get('solve_seconds', float('nan')):.3f} s, relres "
                f"{s.get('relres', float('nan')):.2e}, exit {s['exit_code']}, wall {s['wall_seconds']:.1f} s"
                + (f", rel. diff vs 1 rank {entry['rel_diff']:.2e}" if entry.get("rel_diff") is not None else ""))
            results.append(entry)
            write(args.out, args, prep, results)
    finally:
        text = write(args.out, args, prep, results)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(text)
    log(f"total {time.perf_counter() - start:.1f} s")
    bad = [r for r in results if r.get("error", "").startswith("failed")
           or (r.get("summary") and (r["summary"].get("exit_code") or not r["summary"].get("converged", False)))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
