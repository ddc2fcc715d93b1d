"""Matrix file I/O: Matrix Market ingest into Zarr, and loading Zarr against npz.

A gallery matrix with >= 50M nonzeros is written as a general (every entry on its own line)
Matrix Market file, then each measurement runs in a fresh subprocess so its peak memory is its own:

* ingest  ``slactl.io.convert(mtx, zarr)`` (strict parse in blocks, spill to disk, CSR, sharded
  zstd Zarr)  against  ``scipy.io.mmread`` (fast_matrix_market, all cores) ``+ tocsr + numpy.save``;
* load    ``slactl.io.read_zarr`` (checksums verified) against ``slactl.io.read_npz`` and
  ``scipy.sparse.load_npz`` of an uncompressed and of a compressed archive.

Peak memory is the child's peak resident set size (``VmHWM``, reset just before the measured call
through ``/proc/self/clear_refs``) minus its resident size at that moment: what the call added.

    python benchmarks/bench_io.py                                  # elasticity2d, size 1320: ~52M nnz
    python benchmarks/bench_io.py --problem poisson2d --size 3200 --append benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# ------------------------------------------------------------------------- child side


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _measure(fn) -> dict:
    """Run ``fn`` once; wall time and the memory it added to this process."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak RSS := current RSS
    except OSError:
        pass
    before = _status("VmRSS:")
    t0 = time.perf_counter()
    extra = fn()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rss_before": before, "peak_added": _status("VmHWM:") - before, **(extra or {})}


def _child(task: str, work: Path, problem: str, size: int) -> dict:
    mtx, zarr_path = work / "matrix.mtx", work / "matrix.zarr"
    npz, npz_z, npy = work / "matrix.npz", work / "matrix_compressed.npz", work / "npy"
    if task == "generate":
        from slactl.io import write
        from slactl.io.gallery import generate

        def run():
            p = generate(problem, size)
            data = p.to_matrix_data()
            data.symmetry = "general"  # every entry in the text: the harder ingest
            write(data, mtx, force=True)
            return {"nnz": int(p.matrix.nnz), "rows": int(p.matrix.shape[0]), "source": data.source}

        return _measure(run)
    if task == "slactl_ingest":
        from slactl.io import convert

        return _measure(lambda: {"nnz": convert(mtx, zarr_path, force=True).nnz})
    if task == "scipy_ingest":
        import numpy as np
        import scipy.io

        def run():
            csr = scipy.io.mmread(mtx).tocsr()
            npy.mkdir(exist_ok=True)
            for name in ("data", "indices", "indptr"):
                np.save(npy / f"{name}.npy", getattr(csr, name))
            return {"nnz": int(csr.nnz)}

        return _measure(run)
    if task == "make_npz":
        import scipy.sparse as sp

        from slactl.io import convert, read_npz

        convert(zarr_path, npz, force=True)
        sp.save_npz(npz_z, read_npz(npz).csr, compressed=True)
        return {}
    if task == "zarr_load":
        from slactl.io import read_zarr

        return _measure(lambda: {"nnz": read_zarr(zarr_path).nnz})
    if task == "slactl_npz_load":
        from slactl.io import read_npz

        return _measure(lambda: {"nnz": read_npz(npz).nnz})
    if task in ("scipy_npz_load", "scipy_npz_compressed_load"):
        import scipy.sparse as sp

        path = npz if task == "scipy_npz_load" else npz_z
        return _measure(lambda: {"nnz": int(sp.load_npz(path).nnz)})
    if task == "npy_load":
        import numpy as np
        import scipy.sparse as sp

        def run():
            d, i, p = (np.load(npy / f"{k}.npy") for k in ("data", "indices", "indptr"))
            return {"nnz": int(sp.csr_array((d, i, p), shape=(p.shape[0] - 1, p.shape[0] - 1)).nnz)}

        return _measure(run)
    raise SystemExit(f"unknown task {task}")


# ------------------------------------------------------------------------- parent side


def _run(task: str, args: argparse.Namespace) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", task, "--workdir", str(args.workdir), "--problem", args.problem,
         "--size", str(args.size)],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {task:<26} {result.get('seconds', 0):8.1f} s  +{result.get('peak_added', 0) / 2**30:6.2f} GiB",
          flush=True)
    return result


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{os.cpu_count()} cores ({cpu}), {mem / 2**30:.0f} GiB RAM, Linux {platform.release()}"


def _versions() -> str:
    import numpy
    import scipy
    import zarr

    return f"Python {platform.python_version()}, NumPy {numpy.__version__}, SciPy {scipy.__version__}, zarr {zarr.__version__}"


def _report(args: argparse.Namespace, r: dict, sizes: dict) -> str:
    gen, nnz = r["generate"], r["generate"]["nnz"]
    csr_bytes = nnz * (8 + 4) + (gen["rows"] + 1) * 4
    rows = [
        ("ingest: slactl convert .mtx -> .zarr", "slactl_ingest"),
        ("ingest: scipy.io.mmread + tocsr + numpy.save", "scipy_ingest"),
        ("load: slactl read_zarr (checksums verified)", "zarr_load"),
        ("load: slactl read_npz (uncompressed)", "slactl_npz_load"),
        ("load: scipy.sparse.load_npz (uncompressed)", "scipy_npz_load"),
        ("load: scipy.sparse.load_npz (compressed)", "scipy_npz_compressed_load"),
        ("load: numpy.load of the three .npy + csr_array", "npy_load"),
    ]
    lines = [
        "## I/O (issue 3)",
        "",
        f"Date: {args.date}. Machine: {_machine()}. {_versions()}. "
        f"Load average at start / end: {args.load_start:.2f} / {os.getloadavg()[0]:.2f} (1 min).",
        f"Command: `python benchmarks/bench_io.py --problem {args.problem} --size {args.size}`",
        "",
        f"Matrix: `{gen['source']}`, {gen['rows']} x {gen['rows']}, {nnz} nonzeros, written as a *general* "
        f"Matrix Market file ({_gib(sizes['mtx'])} of text; generating and writing it took {gen['seconds']:.0f} s). "
        f"As CSR (int32 indices, float64 values) it is {_gib(csr_bytes)}.",
        "",
        "| step | time | peak memory added | vs CSR size |",
        "|---|---|---|---|",
    ]
    for label, key in rows:
        res = r[key]
        lines.append(f"| {label} | {res['seconds']:.1f} s | {_gib(res['peak_added'])} | "
                     f"{res['peak_added'] / csr_bytes:.2f}x |")
    lines += [
        "",
        f"On disk: .mtx {_gib(sizes['mtx'])}, .zarr (zstd, sharded) {_gib(sizes['zarr'])}, "
        f".npz uncompressed {_gib(sizes['npz'])}, .npz compressed {_gib(sizes['npz_compressed'])}.",
        "Each step ran in its own subprocess; peak memory added is VmHWM (reset before the call) minus the "
        f"resident size at the start of the call. Ingest steps ran once; load times are medians of {args.repeat} "
        "runs (the files are in the page cache, so loads measure decoding, not the disk).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", default="elasticity2d")
    parser.add_argument("--size", type=int, default=1320)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/slactl-bench-io"))
    parser.add_argument("--append", type=Path, help="append the markdown section to this file")
    parser.add_argument("--date", default=_dt.date.today().isoformat())
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each load step (median time)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.workdir, args.problem, args.size)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.load_start = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    results = {}
    for task in ("generate", "slactl_ingest", "scipy_ingest", "make_npz"):
        results[task] = _run(task, args)
    # Loads are short and noisy: median time over repeats, largest memory.
    for task in ("zarr_load", "slactl_npz_load", "scipy_npz_load", "scipy_npz_compressed_load", "npy_load"):
        runs = [_run(task, args) for _ in range(args.repeat)]
        results[task] = {**runs[0], "seconds": statistics.median(r["seconds"] for r in runs),
                         "peak_added": max(r["peak_added"] for r in runs)}
    w = args.workdir
    sizes = {"mtx": _du(w / "matrix.mtx"), "zarr": _du(w / "matrix.zarr"), "npz": _du(w / "matrix.npz"),
             "npz_compressed": _du(w / "matrix_compressed.npz")}
    nnz = {k: v["nnz"] for k, v in results.items() if "nnz" in v}
    assert len(set(nnz.values())) == 1, f"the steps disagree on nnz: {nnz}"
    text = _report(args, results, sizes)
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + text)
    if not args.keep:
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
