"""One launch per rank count for every distributed test module (process start-up dominates on a
small machine): each module registers a module-level ``_work(pmethod)`` here, the session fixture
``launched`` (conftest.py) runs them all in the same ranks, and each test reads its own results."""

import importlib

WORKLOADS = ("test_dist_solve:_work", "test_dist_schwarz:_work", "test_dist_eigen:_work", "test_dist_nonlinear:_work",
             "test_dist_multigrid:_work")


def run_all(pmethod, names=WORKLOADS):
    """Runs on every rank: ``{name: workload(pmethod)}``."""
    out = {}
    for name in names:
        module, function = name.split(":")
        out[name] = getattr(importlib.import_module(module), function)(pmethod)
    return out
