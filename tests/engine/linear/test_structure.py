"""`analyze`: the structural evidence dispatch and `slactl info` use, for real and complex matrices."""

import numpy as np
import scipy.sparse as sp
import pytest

import slactl
from slactl.engine.linear.structure import analyze


def _analyze(a):
    return analyze(slactl.SparseMatrix.from_scipy(sp.csr_array(np.asarray(a))))


def test_complex_hermitian_positive_definite():
    s = _analyze([[4, 1 - 2j, 0], [1 + 2j, 5, 1j], [0, -1j, 3]])
    assert s.symmetric and s.positive_diagonal and s.spd_evidence == "proven"


@pytest.mark.parametrize("a", [
    [[4, 1 + 2j], [1 + 2j, 5]],                 # complex symmetric, not hermitian
    [[4, 1 - 2j, 0], [0, 5, 1j], [0, -1j, 3]],  # not even structurally symmetric
])
def test_complex_non_hermitian(a):
    s = _analyze(a)
    assert not s.symmetric and s.spd_evidence == "none"


def test_complex_diagonal_must_be_real_and_positive():
    assert not _analyze([[4 + 1j, 1], [1, 5]]).positive_diagonal
    assert not _analyze([[-4 + 0j, 1], [1, 5]]).positive_diagonal
    assert _analyze([[-4 + 0j, 1j], [-1j, 5]]).symmetric  # hermitian, indefinite
