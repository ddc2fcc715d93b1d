"""Single-process sparse linear algebra on torch tensors (no torch.distributed, typer, rich or zarr)."""

from slactl.engine.matrix import SparseMatrix
from slactl.engine.ops.spmm import matmul
from slactl.engine.ops.spgemm import spgemm
from slactl.engine.ops.elementwise import add, scale, transpose
from slactl.engine.ops.triangular import triangular_solve

__all__ = ["SparseMatrix", "matmul", "spgemm", "add", "scale", "transpose", "triangular_solve"]
