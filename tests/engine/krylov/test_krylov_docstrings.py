"""The examples in the docstrings of the Krylov and preconditioner modules run and are right."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "slactl.engine.krylov.cg",
    "slactl.engine.krylov.bicgstab",
    "slactl.engine.krylov.gmres",
    "slactl.engine.krylov.minres",
    "slactl.engine.krylov.operator",
    "slactl.engine.preconditioners",
    "slactl.engine.preconditioners.jacobi",
    "slactl.engine.preconditioners.incomplete",
    "slactl.engine.preconditioners.amg",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0
