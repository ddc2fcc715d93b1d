"""slactl.read_matrix / write_matrix (engine/files.py) and the properties `slactl info` reports.

(These test slactl/engine/files.py; they live beside the io tests they build on.)
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from io_helpers import assert_same_csr, make_matrix

import slactl
from slactl.engine.files import matrix_properties, memory_estimates, spd_evidence
from slactl.errors import FormatError, StoreExistsError, UsageError
from slactl.io import MatrixData, read


@pytest.mark.parametrize("suffix", [".mtx", ".mtx.gz", ".zarr", ".npz"])
def test_write_then_read_matrix(tmp_path, suffix):
    a = make_matrix("real", "general", n=30, seed=1)
    A = slactl.SparseMatrix.from_scipy(a)
    path = slactl.write_matrix(A, tmp_path / f"a{suffix}")
    B = slactl.read_matrix(path)
    assert isinstance(B, slactl.SparseMatrix) and B.dtype == torch.float64 and B.shape == a.shape
    assert_same_csr(B.to_scipy(), a)
    with pytest.raises(StoreExistsError):
        slactl.write_matrix(A, path)


def test_symmetry_is_detected_and_exploited(tmp_path):
    a = make_matrix("real", "symmetric", n=25, seed=2)
    path = slactl.write_matrix(slactl.SparseMatrix.from_scipy(a), tmp_path / "s.mtx")
    assert path.read_text().startswith("%%MatrixMarket matrix coordinate real symmetric")
    assert read(path).symmetry == "symmetric"
    assert_same_csr(slactl.read_matrix(path).to_scipy(), a)


def test_dtypes_and_devices(tmp_path):
    text = "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 3\n2 1 -4\n"
    (tmp_path / "i.mtx").write_text(text)
    A = slactl.read_matrix(tmp_path / "i.mtx")
    assert A.dtype == torch.float64
    np.testing.assert_array_equal(A.to_dense().numpy(), [[3, 0], [-4, 0]])
    A32 = slactl.read_matrix(tmp_path / "i.mtx", dtype=torch.float32, device="cpu")
    assert A32.dtype == torch.float32
    c = make_matrix("complex", "hermitian", n=8)
    slactl.write_matrix(c, tmp_path / "c.zarr")  # scipy input is accepted too
    C = slactl.read_matrix(tmp_path / "c.zarr")
    assert C.dtype == torch.complex128 and read(tmp_path / "c.zarr").symmetry == "hermitian"


def test_gradients_are_detached_and_batches_refused(tmp_path):
    a = make_matrix("real", "general", n=6)
    A = slactl.SparseMatrix.from_scipy(a).requires_grad_()
    slactl.write_matrix(A * 2.0, tmp_path / "g.npz")
    assert_same_csr(read(tmp_path / "g.npz").csr, 2 * a)
    batch = slactl.SparseMatrix.from_pattern(A.pattern, torch.ones(3, A.nnz, dtype=torch.float64))
    with pytest.raises(UsageError, match="unbatched"):
        slactl.write_matrix(batch, tmp_path / "b.npz")
    with pytest.raises(UsageError):
        slactl.write_matrix(np.eye(3), tmp_path / "d.npz")


def test_read_matrix_errors_are_format_errors(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        slactl.read_matrix(tmp_path / "missing.mtx")
    with pytest.raises(UsageError, match="suffix|format"):
        slactl.read_matrix(tmp_path / "a.csv")


# --------------------------------------------------------------------------- properties
def _dense_spd_reference(a: np.ndarray) -> bool:
    return bool(np.allclose(a, a.conj().T) and np.linalg.eigvalsh(a).min() > 0)


@pytest.mark.parametrize(
    "matrix, verdict",
    [
        (sp.diags_array([[-1.0] * 9, [4.0] * 10, [-1.0] * 9], offsets=[-1, 0, 1]), "yes"),  # strictly dominant
        (sp.diags_array([[-1.0] * 9, [2.0] * 10, [-1.0] * 9], offsets=[-1, 0, 1]), "yes"),  # irreducibly dominant
        (sp.diags_array([[1.0] * 9, [1.0] * 10, [1.0] * 9], offsets=[-1, 0, 1]), "no"),  # indefinite (Lanczos)
        (sp.csr_array(np.array([[2.0, 1.0], [0.0, 2.0]])), "no"),  # not symmetric
        (sp.csr_array(np.array([[2.0, 0.0], [0.0, -1.0]])), "no"),  # negative diagonal
        (sp.csr_array(np.array([[1.0, 0.9, 0.9], [0.9, 1.0, 0.9], [0.9, 0.9, 1.0]])), "likely"),  # SPD, not dominant
    ],
)
def test_spd_evidence_against_eigenvalues(matrix, verdict):
    a = sp.csr_array(matrix)
    got = spd_evidence(a)
    assert got["verdict"] == verdict, got
    truth = _dense_spd_reference(a.toarray())
    assert truth == (verdict in ("yes", "likely"))


def test_spd_evidence_on_a_disconnected_weakly_dominant_matrix():
    t = sp.diags_array([[-1.0] * 4, [2.0] * 5, [-1.0] * 4], offsets=[-1, 0, 1])
    # A block with a strict row each is SPD; a singular periodic block is not.
    ring = sp.csr_array(np.array([[2.0, -1, -1], [-1, 2, -1], [-1, -1, 2]]))
    assert spd_evidence(sp.csr_array(sp.block_diag([t, t])))["verdict"] == "yes"
    got = spd_evidence(sp.csr_array(sp.block_diag([t, ring])))
    assert got["verdict"] != "yes" and not _dense_spd_reference(sp.block_diag([t, ring]).toarray())


def test_matrix_properties_and_memory():
    a = make_matrix("real", "symmetric", n=40, seed=3)
    props = matrix_properties(MatrixData(a, "real", "symmetric"))
    assert props["shape"] == [40, 40] and props["nnz"] == a.nnz
    assert props["numerically_symmetric"] is True
    assert props["zero_diagonal_entries"] == int((a.diagonal() == 0).sum())
    diag = np.abs(a.diagonal())
    off = np.abs(a).sum(axis=1) - diag
    assert props["diagonally_dominant_rows"] == pytest.approx(float((diag >= off).mean()))
    assert memory_estimates((10, 10), 30) == {"csr_float64": 11 * 4 + 30 * 4 + 30 * 8,
                                              "csr_float32": 11 * 4 + 30 * 4 + 30 * 4, "dense_float64": 800}
    assert memory_estimates((2**31, 2), 5)["csr_float64"] == (2**31 + 1) * 8 + 5 * 16
