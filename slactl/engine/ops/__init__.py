"""Differentiable kernels on :class:`~slactl.engine.matrix.SparseMatrix`.

Each kernel's gradient for a sparse operand lives on that operand's pattern (a vector of length
nnz), never on a dense m x n array: the masked sparse gradients of Nytko et al.
"""
