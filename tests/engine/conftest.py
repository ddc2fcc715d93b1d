"""Fixtures over the problem catalog (``catalog.py``) for the engine's tests."""

import pytest

from .catalog import CATALOG, SQUARE, Problem


@pytest.fixture(params=list(CATALOG), ids=list(CATALOG))
def problem(request) -> Problem:
    """Every problem of the catalog: square and rectangular, symmetric or not, empty rows, duplicates."""
    return CATALOG[request.param]


@pytest.fixture(params=SQUARE, ids=SQUARE)
def square_problem(request) -> Problem:
    return CATALOG[request.param]


@pytest.fixture(params=[False, True], ids=["unbatched", "batched"])
def batched(request) -> bool:
    return request.param
