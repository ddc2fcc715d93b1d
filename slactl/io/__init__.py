"""Files <-> plain arrays: Matrix Market, Zarr/Binsparse stores, npz archives and a problem gallery.

Everything here returns or accepts :class:`MatrixData` (a canonical SciPy CSR plus the field,
symmetry and source its file declares). This layer never imports torch.autograd, typer or rich;
the :class:`~slactl.engine.matrix.SparseMatrix` bridge is :mod:`slactl.engine.files`.
"""

from slactl.io.formats import SUFFIXES, convert, format_of, read, write
from slactl.io.matrix_data import FIELDS, SYMMETRIES, MatrixData, detect_symmetry, has_symmetry
from slactl.io.mtx import read_mtx, write_mtx
from slactl.io.npz import read_npz, write_npz
from slactl.io.zarr_store import read_zarr, write_zarr

__all__ = [
    "FIELDS",
    "SUFFIXES",
    "SYMMETRIES",
    "MatrixData",
    "convert",
    "detect_symmetry",
    "format_of",
    "has_symmetry",
    "read",
    "read_mtx",
    "read_npz",
    "read_zarr",
    "write",
    "write_mtx",
    "write_npz",
    "write_zarr",
]
