"""What every ``--json`` option prints: one line of strict JSON."""

from __future__ import annotations

import json
from typing import Any

import typer


def echo_json(value: Any) -> None:
    """Print ``value`` as one line of JSON, NaN and infinities as null (a diverged residual, a
    failed check): ``json.dumps`` would write ``NaN``, which JSON readers refuse."""
    # the one copy, in the benchmark's report (the JSON of `slactl bench` goes through it too)
    from slactl.benchmark.report import json_safe

    typer.echo(json.dumps(json_safe(value), allow_nan=False))
