"""Fixtures of the kernel tests: ``device`` runs each kernel test on the CPU, and on CUDA when one
is present; the CPU runs use one thread."""

import pytest
import torch


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture(scope="package", autouse=True)
def _one_cpu_thread():
    """The test matrices have at most 16 rows, so extra threads only add OpenMP start-up; on a busy
    2-core machine MKL's threaded CSR kernels made these tests about three times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
