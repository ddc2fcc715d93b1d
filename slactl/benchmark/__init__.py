"""Benchmarks of slactl's solvers against peers in the same process (the core of `slactl bench`).

No typer or rich here: :func:`run_benchmark` returns rows, :mod:`slactl.benchmark.report` turns them
into markdown, JSON and a plot, and ``slactl/cli/bench.py`` is the command line around them.

>>> from slactl.benchmark import Config, parse_sizes, parse_solvers, run_benchmark
>>> rows = run_benchmark(Config(["poisson2d"], parse_sizes("1000"), parse_solvers("auto,pyamg"), repeat=1))
>>> [r.status for r in rows]
['ok', 'ok']
"""

from slactl.benchmark.measure import BANDWIDTH_MODEL, MEMORY_MODELS, cg_bytes_per_iteration, relative_residual
from slactl.benchmark.problems import Case, build_case, parse_sizes, size_for_dof
from slactl.benchmark.runner import Config, Row, measure, run_benchmark
from slactl.benchmark.solvers import PEERS, Solver, parse_solvers

__all__ = [
    "BANDWIDTH_MODEL", "MEMORY_MODELS", "cg_bytes_per_iteration", "relative_residual", "Case", "build_case",
    "parse_sizes", "size_for_dof", "Config", "Row", "measure", "run_benchmark", "PEERS", "Solver", "parse_solvers",
]
