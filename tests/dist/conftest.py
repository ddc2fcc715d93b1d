import pytest

from slactl.dist import launch

from dist_workloads import run_all


@pytest.fixture(scope="session", params=[(2, "rcb"), (4, "metis")], ids=["2ranks-rcb", "4ranks-metis"])
def launched(request):
    """``(nprocs, pmethod, results)``: every registered workload run once in ``nprocs`` Gloo ranks;
    ``results[rank][name]`` is what workload ``name`` returned on that rank."""
    nprocs, pmethod = request.param
    return nprocs, pmethod, launch(run_all, nprocs=nprocs, args=(pmethod,), timeout=300)


def results_of(launched, name):
    """Every rank's results of one workload, by rank."""
    return [r[name] for r in launched[2]]
