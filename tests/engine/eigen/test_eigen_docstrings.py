"""The examples in the eigen modules' docstrings run and are right."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["slactl.engine.eigen.eigsh", "slactl.engine.eigen.eigs", "slactl.engine.eigen.svds",
           "slactl.engine.eigen.lobpcg"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0
