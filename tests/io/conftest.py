"""Fixtures for the io tests (helpers live in io_helpers.py, importable from these modules)."""

import pytest
from io_helpers import COMBOS


@pytest.fixture(params=COMBOS, ids=[f"{f}-{s}" for f, s in COMBOS])
def combo(request):
    """(field, symmetry): every combination the Matrix Market format allows."""
    return request.param
