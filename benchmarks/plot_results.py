"""Headline plots from benchmarks/RESULTS.md.

RESULTS.md is written by hand and by the benchmark scripts: sections (``##`` / ``###``) that name
their date, machine and command, each with Markdown tables. :func:`parse` reads every table with
its section's context; the extractors below pick the tables they understand by their column names
and skip the rest (a new kind of table, or a row whose numbers do not parse, is ignored, never an
error), so the plots follow RESULTS.md as rows are added.

Figures (``python benchmarks/plot_results.py`` writes them to ``benchmarks/plots/``):

``solve_time.png``      2D Poisson solve time vs unknowns, slactl and its peers, CPU and GPU
``kernel_speed.png``    SpMV / SpMM / SpGEMM / backward: peer time / slactl time (> 1: slactl faster)
``amg_gpu.png``         CG + sa-amg on one GPU by problem (set-up + solve) vs Jacobi-PCG and cupyx CG
``dist_amg.png``        CG + AMG on 1 and 2 GPUs: set-up + solve seconds by size (dist-amg, engine).
``dist_scaling.png``    distributed PCG: ms per iteration by GPU count, split into compute, halo and
                        all-reduce (strong and weak scaling)
``io.png``              ingest (Matrix Market to a store) and load: time and peak memory

When a solver, kernel or run appears in several sections, the latest one in the file wins (sections
are appended in time order).

The notebook ``notebooks/08_performance.ipynb`` imports this module.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PLOTS = HERE / "plots"

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?")
_SUFFIX = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


@dataclass
class Table:
    """One Markdown table of RESULTS.md with the context of the section it sits in."""

    section: str
    date: str | None
    machine: str | None
    command: str | None
    header: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    position: int = 0  # order in the file: later tables are newer

    @property
    def device(self) -> str:
        """``"GPU"`` when the section or its machine names a GPU, else ``"CPU"``."""
        text = f"{self.section} {self.machine or ''}"
        return "GPU" if re.search(r"GPU|NVIDIA|H100|H200|CUDA", text) else "CPU"

    def column(self, *keys: str) -> str | None:
        """The first header cell that contains every key (case-insensitive)."""
        for h in self.header:
            if all(k.lower() in h.lower() for k in keys):
                return h
        return None


def number(cell: Any) -> float | None:
    """The first number in a table cell (``"1,000,000"``, ``"torch.mv 0.044"``, ``"7.2e-09"``), or None."""
    m = _NUMBER.search(str(cell or ""))
    return float(m.group(0).replace(",", "")) if m else None


def numbers(text: str) -> set[float]:
    """Every number written in ``text`` (to check that a plotted value is one the file states)."""
    return {float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(text)}


def size(cell: Any) -> float | None:
    """A problem size: ``"1,000,000"``, ``"1M"``, ``"4.0M"``, ``"16,000,000"``."""
    m = re.search(r"(\d[\d,]*(?:\.\d+)?)\s*([kKMG]?)\b", str(cell or ""))
    return float(m.group(1).replace(",", "")) * _SUFFIX[m.group(2)] if m else None


def _split_row(line: str, width: int | None = None) -> list[str]:
    """The cells of a table row; with ``width``, cells beyond it are joined (with their ``|``) into
    the last one and missing cells are empty."""
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") else line
    cells = line.split("|")
    if width is not None:
        if len(cells) > width:
            cells = cells[: width - 1] + ["|".join(cells[width - 1:])]
        cells += [""] * (width - len(cells))
    return [c.strip() for c in cells]


def _context(paragraphs: str) -> tuple[str | None, str | None, str | None]:
    text = " ".join(paragraphs.split())
    date = re.search(r"Date:\s*(\d{4}-\d{2}-\d{2})", text) or re.search(r"\b(\d{4}-\d{2}-\d{2})\b", text)
    machine = re.search(r"Machine:\s*(.+?)(?:\.\s|\.$|$)", text)
    command = re.search(r"Command:\s*`([^`]+)`", text)
    return (date.group(1) if date else None, machine.group(1).strip() if machine else None,
            command.group(1) if command else None)


def parse(text: str) -> list[Table]:
    """Every table of ``text`` (RESULTS.md) with its section, date, machine and command.

    A ``###`` section inherits the date, machine and command of its ``##`` parent unless it states
    its own. Cells that overflow the header (a ``|`` inside a cell, e.g. ``||x||``) are joined into
    the last column; missing cells are empty strings.
    """
    tables: list[Table] = []
    lines = text.splitlines()
    h2 = h3 = ""
    parent_ctx: tuple = (None, None, None)
    prose: list[str] = []
    i = 0

    def ctx() -> tuple:
        own = _context("\n".join(prose))
        return tuple(o if o is not None else p for o, p in zip(own, parent_ctx)) if h3 else own

    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            h2, h3, prose, parent_ctx = line[3:].strip(), "", [], (None, None, None)
        elif line.startswith("### "):
            if not h3:
                parent_ctx = _context("\n".join(prose))
            h3, prose = line[4:].strip(), []
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            header = _split_row(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(dict(zip(header, _split_row(lines[i], len(header)))))
                i += 1
            date, machine, command = ctx()
            tables.append(Table(f"{h2} / {h3}" if h3 else h2, date, machine, command, header, rows, len(tables)))
            continue
        else:
            prose.append(line)
        i += 1
    return tables


def read_tables(path: str | Path = RESULTS) -> list[Table]:
    return parse(Path(path).read_text())


# ----------------------------------------------------------------------------------- extractors
_NOT_HEADLINE = ("peak memory", "forward+backward", "re-factorization", "re-solve")


def solve_times(tables: list[Table]) -> list[dict]:
    """Rows of the linear-solve tables (columns ``solver``, ``n``, ``time (s)``) with a time.

    Leaves out the rows that are not a whole solve (peak memory, forward+backward, re-solves with
    kept factors). Solver names lose their parenthesized notes; one record per (device, solver,
    n): the latest.
    """
    latest: dict[tuple, dict] = {}
    for t in tables:
        solver_col, n_col, time_col = t.column("solver"), t.column("n"), t.column("time (s)")
        if not (solver_col and time_col and n_col == "n"):
            continue
        for r in t.rows:
            name, n, seconds = r[solver_col], size(r[n_col]), number(r[time_col])
            if not name or n is None or seconds is None or any(k in name for k in _NOT_HEADLINE):
                continue
            name = re.sub(r"\s*\(.*?\)", "", name).strip()  # "slactl CG (none)" and "slactl CG" are one solver
            latest[(t.device, name, n)] = dict(device=t.device, solver=name, n=n, seconds=seconds,
                                                 date=t.date, section=t.section, machine=t.machine)
    return list(latest.values())


def kernel_speedups(tables: list[Table]) -> list[dict]:
    """Kernel tables (columns ``operation`` and ``slactl (ms)``): peer time / slactl time per peer.

    Peers are the other ``... (ms)`` columns (torch built-in, SciPy, cupyx); cells without a
    number (a peer that failed or was not run) are skipped. For ``"cached / cold"`` cells the
    first number (cached) is used, as in the tables' own ratio column.
    """
    latest: dict[tuple, dict] = {}
    for t in tables:
        op_col, ours = t.column("operation"), t.column("slactl (ms)")
        if not (op_col and ours):
            continue
        peers = [h for h in t.header if h.endswith("(ms)") and h != ours]
        for r in t.rows:
            mine = number(r[ours])
            if not mine:
                continue
            label = f"{r.get('matrix', '')} {r.get('n', '')} {r[op_col]}".strip().replace("cached / cold", "cached")
            for p in peers:
                theirs = number(r[p])
                if theirs is None or "RuntimeError" in r[p] or "memory" in r[p]:
                    continue
                peer = p.replace("(ms)", "").strip() + (" (x only)" if "x only" in r[p] else "")
                latest[(t.device, label, peer)] = dict(device=t.device, kernel=label, operation=r[op_col], peer=peer,
                                                       slactl_ms=mine, peer_ms=theirs, speedup=theirs / mine,
                                                       date=t.date, section=t.section)
    return list(latest.values())


def dist_scaling(tables: list[Table]) -> list[dict]:
    """Distributed scaling tables (columns ``scaling``, ``GPUs``, ``per iteration (ms)``)."""
    out = []
    for t in tables:
        kind, gpus, per_it = t.column("scaling"), t.column("GPUs") or t.column("ranks"), t.column("per iteration")
        if not (kind and gpus and per_it):
            continue
        for r in t.rows:
            k = r[kind].split(",")[0].strip()
            g, ms = number(r[gpus]), number(r[per_it])
            if k not in ("strong", "weak") or g is None or ms is None or "reference" in r[kind]:
                continue
            rec = dict(scaling=k, gpus=int(g), n=size(r.get(t.column("n (DOF)") or "n", "")), per_iteration_ms=ms,
                       solve_seconds=number(r.get(t.column("solve (s)") or "", "")), date=t.date, section=t.section,
                       machine=t.machine)
            for phase in ("compute", "halo", "all-reduce"):
                col = next((h for h in t.header if h.strip() == phase), None)
                rec[phase] = number(r[col]) if col else None
            out.append(rec)
    latest = {(r["scaling"], r["gpus"], r["n"]): r for r in out}
    return sorted(latest.values(), key=lambda r: (r["scaling"], r["gpus"]))


def dist_amg_times(tables: list[Table]) -> list[dict]:
    """Distributed AMG tables (columns ``run``, ``GPUs``, ``setup (s)``, ``solve (s)``): every row."""
    out = []
    for t in tables:
        run, gpus, setup, solve = t.column("run"), t.column("GPUs"), t.column("setup (s)"), t.column("solve (s)")
        if not (run and gpus and setup and solve and t.column("scaling")):
            continue
        for r in t.rows:
            g, s0, s1 = number(r[gpus]), number(r[setup]), number(r[solve])
            if g is None or s0 is None or s1 is None:
                continue
            out.append(dict(run=r[run].strip(), scaling=r[t.column("scaling")].strip(), gpus=int(g),
                            n=size(r.get(t.column("n (DOF)") or "n", "")), setup_seconds=s0, solve_seconds=s1,
                            iterations=number(r.get(t.column("iterations") or "", "")), date=t.date, machine=t.machine))
    return out


def plot_dist_amg(records: list[dict]):
    """Set-up + solve time of CG + AMG by problem size and GPU count (engine on one GPU, dist-amg)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(records) + 1.5), 3.9))
    x = list(range(len(records)))
    ax.bar(x, [r["setup_seconds"] for r in records], width=0.6, color="C1", label="set-up")
    ax.bar(x, [r["solve_seconds"] for r in records], width=0.6, bottom=[r["setup_seconds"] for r in records],
           color="C0", label="CG iterations")
    for i, r in enumerate(records):
        total = r["setup_seconds"] + r["solve_seconds"]
        its = f"\n{int(r['iterations'])} it" if r.get("iterations") else ""
        ax.text(i, total, f"{total:.2f} s{its}", ha="center", va="bottom", fontsize=6.5)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['n'] / 1e6:.0f}M\n{r['run'].replace(' sa-amg', '')}\n{r['gpus']} GPU{'s' if r['gpus'] > 1 else ''}"
                        if r["n"] else r["run"] for r in records], fontsize=6.5)
    ax.set_ylabel("seconds (set-up + solve)")
    ax.set_ylim(0, 1.25 * max(r["setup_seconds"] + r["solve_seconds"] for r in records))
    gpu = re.search(r"H100|H200|A100|B200", " ".join(r["machine"] or "" for r in records))
    dates = sorted({r["date"] for r in records if r["date"]})
    ax.set_title(f"2D Poisson, CG + smoothed-aggregation AMG on {gpu.group(0) + ' ' if gpu else ''}GPUs, rtol 1e-8 "
                 f"({', '.join(dates)})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def amg_gpu_times(tables: list[Table]) -> list[dict]:
    """The newest sa-amg GPU table (columns ``problem``, ``set-up (s)``, ``solve (s)``, ``Jacobi-PCG``,
    ``cupyx CG``): every row, with the peers' seconds (None where not run or not converged)."""
    found = [t for t in tables if t.column("problem") and t.column("set-up (s)") and t.column("solve (s)")
             and t.column("Jacobi-PCG") and t.column("cupyx")]
    if not found:
        return []
    t = max(found, key=lambda t: t.position)
    out = []
    for r in t.rows:
        s0, s1 = number(r[t.column("set-up (s)")]), number(r[t.column("solve (s)")])
        if s0 is None or s1 is None:
            continue
        cupyx = r[t.column("cupyx")]
        out.append(dict(problem=r[t.column("problem")].split(" (")[0], n=size(r.get(t.column("n") or "", "")),
                        setup_seconds=s0, solve_seconds=s1, jacobi_seconds=number(r[t.column("Jacobi-PCG")]),
                        cupyx_seconds=None if "not converged" in cupyx else number(cupyx),
                        date=t.date, machine=t.machine, section=t.section))
    return out


def plot_amg_gpu(records: list[dict]):
    """Time to solution of CG + sa-amg (set-up + solve) against Jacobi-PCG and cupyx CG, per problem."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(records) + 1.5), 4.0))
    x = list(range(len(records)))
    w = 0.27
    ax.bar([i - w for i in x], [r["setup_seconds"] for r in records], width=w, color="C1", label="sa-amg set-up")
    ax.bar([i - w for i in x], [r["solve_seconds"] for r in records], width=w,
           bottom=[r["setup_seconds"] for r in records], color="C0", label="sa-amg CG iterations")
    for i, r in enumerate(records):
        total = r["setup_seconds"] + r["solve_seconds"]
        ax.text(i - w, total, f"{total:.3g}", ha="center", va="bottom", fontsize=6)
    for off, key, color, label in ((0.0, "jacobi_seconds", "C2", "Jacobi-PCG"), (w, "cupyx_seconds", "C7", "cupyx CG")):
        xs = [i + off for i, r in enumerate(records) if r[key]]
        ax.bar(xs, [r[key] for r in records if r[key]], width=w, color=color, label=label)
    ax.set_yscale("log")
    low = min(min(r["setup_seconds"], r["solve_seconds"]) for r in records)
    ax.set_ylim(bottom=0.5 * low)  # (the set-up bars start at 0: off a log axis without a bottom)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['problem']}\n{r['n'] / 1e6:.1f}M" if r["n"] else r["problem"] for r in records], fontsize=7)
    ax.set_ylabel("seconds to rtol 1e-8 (log)")
    gpu = re.search(r"H100|H200|A100|B200", " ".join(f"{r['machine'] or ''} {r['section']}" for r in records))
    ax.set_title(f"CG + sa-amg (set-up on the GPU) vs peers, {gpu.group(0) if gpu else 'GPU'} "
                 f"({records[0]['date'] or ''})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    return fig


def io_steps(tables: list[Table]) -> list[dict]:
    """I/O tables (columns ``step``, ``time``, ``peak memory added``)."""
    out = []
    for t in tables:
        step, tcol, mem = t.column("step"), t.column("time"), t.column("peak memory")
        if not (step and tcol and mem):
            continue
        for r in t.rows:
            seconds, gib = number(r[tcol]), number(r[mem])
            if seconds is not None:
                out.append(dict(step=r[step], seconds=seconds, peak_gib=gib, date=t.date, section=t.section))
    return out


# -------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib.pyplot as plt  # lazily: parsing needs no matplotlib

    return plt


def _is_slactl(name: str) -> bool:
    return name.lower().startswith("slactl")


def plot_solve(records: list[dict]):
    """Solve time vs unknowns (log-log), one panel per device, slactl solid, peers dashed; a
    device measured at one size only gets a bar chart of that size instead."""
    plt = _plt()
    devices = [d for d in ("CPU", "GPU") if any(r["device"] == d for r in records)] or ["CPU"]
    fig, axes = plt.subplots(1, len(devices), figsize=(6.2 * len(devices), 4.2), squeeze=False)
    for ax, dev in zip(axes[0], devices):
        recs = [r for r in records if r["device"] == dev]
        names = sorted({r["solver"] for r in recs}, key=lambda s: (not _is_slactl(s), s))
        sizes = sorted({r["n"] for r in recs})
        if len(sizes) == 1:
            times = [next(r["seconds"] for r in recs if r["solver"] == name) for name in names]
            ax.barh(range(len(names)), times, color=["C0" if _is_slactl(nm) else "C7" for nm in names])
            for k, t in enumerate(times):
                ax.text(t, k, f" {t:.2f} s", va="center", fontsize=8)
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels(names, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, max(times) * 1.25)
            ax.set_xlabel(f"time (s), set-up included; 2D Poisson, {sizes[0]:,.0f} unknowns")
        else:
            for k, name in enumerate(names):
                pts = sorted((r["n"], r["seconds"]) for r in recs if r["solver"] == name)
                ax.plot(*zip(*pts), marker="os^vD<>p*h"[k % 10], ls="-" if _is_slactl(name) else "--", label=name)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("unknowns (2D Poisson)")
            ax.set_ylabel("time (s), set-up included")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        dates = sorted({r["date"] for r in recs if r["date"]})
        ax.set_title(f"linear solve on the {dev} ({', '.join(dates)})")
    fig.tight_layout()
    return fig


def plot_kernels(records: list[dict]):
    """peer time / slactl time per kernel and peer (log scale; right of 1 = slactl faster)."""
    plt = _plt()
    devices = [d for d in ("CPU", "GPU") if any(r["device"] == d for r in records)] or ["CPU"]
    heights = [max(2.0, 0.22 * sum(r["device"] == d for r in records) + 1.0) for d in devices]
    fig, axes = plt.subplots(len(devices), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    peers = sorted({r["peer"] for r in records})
    colors = {p: f"C{k}" for k, p in enumerate(peers)}
    for ax, dev in zip(axes[:, 0], devices):
        recs = [r for r in records if r["device"] == dev]
        labels = list(dict.fromkeys(r["kernel"] for r in recs))
        y = {lab: k for k, lab in enumerate(labels)}
        width = 0.8 / max(len(peers), 1)
        for j, p in enumerate(peers):
            sel = [r for r in recs if r["peer"] == p]
            if sel:  # bars grow from 1 (parity) to the ratio, either way
                ax.barh([y[r["kernel"]] - 0.4 + width * (j + 0.5) for r in sel], [r["speedup"] - 1 for r in sel],
                        left=1.0, height=width, color=colors[p], label=p)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        lo = min(r["speedup"] for r in recs)
        hi = max(r["speedup"] for r in recs)
        ticks = [t for t in (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if lo / 2 <= t <= hi * 2]
        ax.set_xlim(min(lo, 1) / 1.3, max(hi, 1) * 1.3)
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}x" for t in ticks])
        ax.minorticks_off()
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("peer time / slactl time  (> 1: slactl faster)")
        ax.set_title(f"sparse kernels on the {dev} (float64)")
        ax.legend(fontsize=7, loc="best")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_dist(records: list[dict]):
    """ms per CG iteration by GPU count: measured (bar outline) and the profiled compute / halo /
    all-reduce split (stacked), strong and weak scaling side by side."""
    plt = _plt()
    kinds = [k for k in ("strong", "weak") if any(r["scaling"] == k for r in records)] or ["strong"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        recs = [r for r in records if r["scaling"] == kind]
        x = list(range(len(recs)))
        bottom = [0.0] * len(recs)
        for phase, color in (("compute", "C0"), ("halo", "C1"), ("all-reduce", "C3")):
            vals = [r.get(phase) or 0.0 for r in recs]
            ax.bar(x, vals, bottom=bottom, color=color, width=0.55, label=f"{phase} (profiled)")
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.scatter(x, [r["per_iteration_ms"] for r in recs], color="k", marker="_", s=900, zorder=3,
                   label="measured (unprofiled)")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{r['gpus']} GPU{'s' if r['gpus'] > 1 else ''}\n{r['n'] / 1e6:.0f}M DOF" if r["n"] else
                            f"{r['gpus']} GPUs" for r in recs])
        ax.set_ylabel("ms per CG iteration")
        ax.set_ylim(0, 1.5 * max(max(bottom), max(r["per_iteration_ms"] for r in recs)))
        gpu = re.search(r"H100|H200|A100|B200", " ".join(r["machine"] or "" for r in recs))
        dates = sorted({r["date"] for r in recs if r["date"]})
        ax.set_title(f"distributed PCG on {gpu.group(0) + ' ' if gpu else ''}GPUs, {kind} scaling ({', '.join(dates)})",
                     fontsize=9)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def plot_io(records: list[dict]):
    """Time and peak memory of each ingest / load step."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * max(len(records), 3) + 1.4), sharey=True,
                             layout="constrained")
    labels = [r["step"] for r in records]
    y = range(len(records))
    colors = ["C0" if "slactl" in lab else "C7" for lab in labels]
    axes[0].barh(y, [r["seconds"] for r in records], color=colors)
    axes[0].set_xlabel("time (s)")
    axes[1].barh(y, [r["peak_gib"] or 0 for r in records], color=colors)
    axes[1].set_xlabel("peak memory added (GiB)")
    axes[0].set_yticks(list(y))
    axes[0].set_yticklabels(labels, fontsize=7)
    axes[0].invert_yaxis()
    dates = sorted({r["date"] for r in records if r["date"]})
    fig.suptitle(f"reading and writing a large matrix ({', '.join(dates)}; blue: slactl, grey: peers)", fontsize=10)
    return fig


FIGURES = {
    "solve_time": (solve_times, plot_solve),
    "kernel_speed": (kernel_speedups, plot_kernels),
    "dist_scaling": (dist_scaling, plot_dist),
    "dist_amg": (dist_amg_times, plot_dist_amg),
    "amg_gpu": (amg_gpu_times, plot_amg_gpu),
    "io": (io_steps, plot_io),
}


def figures(tables: list[Table]) -> dict[str, Any]:
    """Every headline figure that has data: ``{name: matplotlib Figure}``."""
    out = {}
    for name, (extract, plot) in FIGURES.items():
        records = extract(tables)
        if records:
            out[name] = plot(records)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Plot the headline figures of benchmarks/RESULTS.md as PNG files.")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the RESULTS.md to read")
    ap.add_argument("--out", type=Path, default=PLOTS, help="directory for the PNG files")
    ap.add_argument("--dpi", type=int, default=90, help="resolution of the PNG files")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = read_tables(args.results)
    args.out.mkdir(parents=True, exist_ok=True)
    used = 0
    for name, fig in figures(tables).items():
        path = args.out / f"{name}.png"
        fig.savefig(path, dpi=args.dpi)
        plt.close(fig)
        used += 1
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    print(f"{len(tables)} tables in {args.results}; {used} figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
