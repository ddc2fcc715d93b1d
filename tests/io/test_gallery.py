"""Gallery problems against pyamg, brute-force loops and the properties they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist

from slactl.errors import UsageError
from slactl.io import read_mtx
from slactl.io.elasticity import assemble_q1, lame, q1_stiffness
from slactl.io.gallery import GALLERY, generate, names


def _swap_xy(n: int) -> np.ndarray:
    """Permutation taking x-fastest numbering to y-fastest numbering on an n x n grid."""
    return np.arange(n * n).reshape(n, n).T.ravel()


def test_registry_lists_every_problem():
    assert names() == sorted(
        ["poisson2d", "poisson3d", "anisotropic2d", "highcontrast2d", "convdiff2d", "rgg_laplacian", "elasticity2d"]
    )
    for name in names():
        p = generate(name, 5)
        assert p.name == name and p.matrix.shape[0] == p.matrix.shape[1] == p.coordinates.shape[0]
        assert isinstance(p.matrix, sp.csr_array) and p.matrix.has_canonical_format
        assert GALLERY[name].summary and GALLERY[name].size_meaning


@pytest.mark.parametrize(
    "args, words",
    [(("nope", 3), "no gallery problem"), (("poisson2d", 0), "positive"), (("poisson2d", 3), "no parameter 'bogus'")],
)
def test_bad_requests_are_usage_errors(args, words):
    kwargs = {"bogus": 1} if "bogus" in words else {}
    with pytest.raises(UsageError, match=words):
        generate(*args, **kwargs)


@pytest.mark.parametrize("n, dim", [(7, 2), (4, 3)])
def test_poisson_matches_pyamg(n, dim):
    p = generate(f"poisson{dim}d", n)
    ref = pyamg.gallery.poisson((n,) * dim, format="csr")
    assert abs(p.matrix - ref).max() == 0
    h = 1 / (n + 1)
    np.testing.assert_allclose(p.coordinates[1] - p.coordinates[0], [h] + [0] * (dim - 1))  # x fastest
    np.testing.assert_allclose(p.coordinates[n] - p.coordinates[0], [0, h] + [0] * (dim - 2))


def test_anisotropic_matches_pyamg_with_axes_swapped():
    n, eps = 6, 1e-3
    ref = pyamg.gallery.stencil_grid(pyamg.gallery.diffusion_stencil_2d(epsilon=eps, theta=0.0, type="FD"), (n, n),
                                     format="csr")
    perm = _swap_xy(n)
    p = generate("anisotropic2d", n, epsilon=eps)
    assert abs(p.matrix[perm][:, perm] - ref).max() < 1e-15


def _diffusion_loop(k: np.ndarray) -> np.ndarray:
    """Reference 5-point -div(k grad u) with harmonic face averages, one node at a time."""
    n = k.shape[0]
    a = np.zeros((n * n, n * n))
    for j in range(n):
        for i in range(n):
            p = i + n * j
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                ii, jj = i + di, j + dj
                if 0 <= ii < n and 0 <= jj < n:
                    face = 2 * k[j, i] * k[jj, ii] / (k[j, i] + k[jj, ii])
                    a[p, ii + n * jj] -= face
                else:
                    face = k[j, i]
                a[p, p] += face
    return a


def test_highcontrast_matches_loop_reference_and_is_spd():
    n = 8
    p = generate("highcontrast2d", n, contrast=1e6, blocks=4, seed=3)
    from slactl.io.gallery import _block_coefficient

    k = _block_coefficient(n, 1e6, 4, 3)
    assert set(np.unique(k)) == {1.0, 1e6}
    np.testing.assert_allclose(p.matrix.toarray(), _diffusion_loop(k), rtol=1e-14)
    assert abs(p.matrix - p.matrix.T).max() == 0
    assert np.linalg.eigvalsh(p.matrix.toarray()).min() > 0
    assert abs(generate("highcontrast2d", n, contrast=1.0).matrix - generate("poisson2d", n).matrix).max() == 0


def test_convdiff_matches_loop_reference():
    n, eps, angle = 6, 1e-2, 2.0  # a wind with negative x and positive y components
    h = 1 / (n + 1)
    wx, wy = np.cos(angle), np.sin(angle)
    ref = np.zeros((n * n, n * n))
    for j in range(n):
        for i in range(n):
            p = i + n * j
            ref[p, p] += 4 * eps / h**2 + (abs(wx) + abs(wy)) / h
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                ii, jj = i + di, j + dj
                if 0 <= ii < n and 0 <= jj < n:
                    ref[p, ii + n * jj] -= eps / h**2
            up_i, up_j = i - np.sign(wx), j - np.sign(wy)  # upstream neighbours
            if 0 <= up_i < n:
                ref[p, int(up_i) + n * j] -= abs(wx) / h
            if 0 <= up_j < n:
                ref[p, i + n * int(up_j)] -= abs(wy) / h
    p = generate("convdiff2d", n, epsilon=eps, angle=angle)
    np.testing.assert_allclose(p.matrix.toarray(), ref, rtol=1e-13)
    assert not p.symmetric and abs(p.matrix - p.matrix.T).max() > 0


def test_rgg_laplacian_matches_brute_force():
    n, degree, shift = 300, 8.0, 1e-2
    p = generate("rgg_laplacian", n, degree=degree, shift=shift, seed=5)
    d = cdist(p.coordinates, p.coordinates)
    w = ((d <= np.sqrt(degree / (np.pi * n))) & (d > 0)).astype(float)
    ref = np.diag(w.sum(1) + shift) - w
    np.testing.assert_array_equal(p.matrix.toarray(), ref)
    assert np.linalg.eigvalsh(ref).min() >= shift - 1e-12


def test_q1_element_matches_pyamg():
    lam, mu = lame(1e5, 0.3)
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    np.testing.assert_allclose(q1_stiffness(lam, mu), pyamg.gallery.elasticity.q12d_local(square, lam, mu),
                               rtol=1e-13, atol=1e-9)


@pytest.mark.parametrize("elements", [3, 6])
def test_elasticity_with_every_side_clamped_matches_pyamg(elements):
    ref, ref_modes = pyamg.gallery.linear_elasticity((elements - 1, elements - 1), format="csr")
    p = generate("elasticity2d", elements, clamp="all")
    np.testing.assert_allclose(p.matrix.toarray(), ref.toarray(), rtol=1e-13, atol=1e-9)
    # Same rigid-body space (pyamg centres and scales its coordinates differently).
    coef, *_ = np.linalg.lstsq(p.near_nullspace, ref_modes, rcond=None)
    np.testing.assert_allclose(p.near_nullspace @ coef, ref_modes, atol=1e-10)


def test_rigid_body_modes_span_the_kernel_of_the_free_body():
    a, _, modes = assemble_q1(5, 1e5, 0.3, "none")
    assert np.abs(a @ modes).max() < 1e-8 * abs(a).max()
    eig = np.linalg.eigvalsh(a.toarray())
    assert (np.abs(eig) < 1e-8 * eig.max()).sum() == 3  # exactly the three rigid motions


def test_cantilever_is_spd_and_numbers_free_nodes_only():
    n = 6
    p = generate("elasticity2d", n)
    assert p.matrix.shape == (2 * n * (n + 1),) * 2
    assert abs(p.matrix - p.matrix.T).max() == 0
    assert np.linalg.eigvalsh(p.matrix.toarray()).min() > 0
    assert (p.coordinates[:, 0] > 0).all() and p.near_nullspace.shape == (p.matrix.shape[0], 3)


def test_to_matrix_data_records_the_command():
    d = generate("convdiff2d", 4, epsilon=0.5).to_matrix_data()
    assert d.symmetry == "general" and d.field == "real"
    assert d.source.startswith("slactl gallery convdiff2d --size 4") and "epsilon=0.5" in d.source
    assert generate("poisson2d", 3).to_matrix_data().symmetry == "symmetric"


DATASETS = Path(__file__).resolve().parents[2] / "datasets"


@pytest.mark.parametrize("path", sorted(DATASETS.glob("*.mtx")), ids=lambda p: p.name)
def test_datasets_are_what_the_gallery_makes(path):
    """The provenance in datasets/README.md holds: regenerating gives the same matrix exactly."""
    name, size = path.stem.rsplit("_", 1)
    data = read_mtx(path)
    problem = generate(name, int(size))
    assert data.source == problem.to_matrix_data().source
    assert data.csr.shape == problem.matrix.shape
    assert (data.csr != problem.matrix).nnz == 0
    assert path.stat().st_size < 200_000
