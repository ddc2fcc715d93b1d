"""One exception tree for slactl.

Every error a user can cause is a :class:`SlactlError`; its message says what went wrong and what to
do next. The CLI maps each class to its own exit code (``slactl.cli.errors``), so scripts can tell a
bad file from a solver that did not converge.
"""

from __future__ import annotations

from typing import Any


class SlactlError(Exception):
    """Base class of every error slactl raises on purpose."""


class UsageError(SlactlError, ValueError):
    """An argument has the wrong value, type or combination."""


class ShapeError(UsageError):
    """Operand shapes do not fit together (for example ``A @ x`` with ``x.shape[0] != A.shape[1]``)."""


class DtypeError(UsageError):
    """Operands have different or unsupported dtypes."""


class DeviceError(UsageError):
    """Operands live on different devices."""


class PatternError(UsageError):
    """Two sparse matrices need the same sparsity pattern and do not have it."""


class StructureError(SlactlError, ValueError):
    """The matrix lacks a structure the operation needs (square, triangular, SPD, nonzero diagonal...)."""


class FormatError(SlactlError, ValueError):
    """A file or store is malformed, foreign or damaged.

    ``path`` and ``line`` (1-based, when known) say where; both are part of the message.
    """

    def __init__(self, message: str, path: Any = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(where + message)


class StoreExistsError(SlactlError, FileExistsError):
    """The output path already exists; pass ``force=True`` (``--force``) to replace it."""


class OutputError(SlactlError, OSError):
    """An output could not be written (disk full, read-only file system, no permission); the
    message names the output, not the temporary file the write went to, and nothing is left
    behind."""


class BackendUnavailableError(SlactlError, RuntimeError):
    """The requested backend is not installed or cannot run here; the message names the fix."""


class ConvergenceError(SlactlError, RuntimeError):
    """An iterative method stopped before meeting its tolerance.

    ``result`` carries the partial result (iterate, iterations, residual history, status).
    """

    def __init__(self, message: str, result: Any = None):
        self.result = result
        super().__init__(message)


class GradcheckFailure(SlactlError):
    """A gradient check found adjoint gradients that disagree with finite differences."""


class PartitionError(SlactlError, ValueError):
    """A partition or partition store is inconsistent with the matrix or the number of ranks."""


class NotImplementedFeatureError(SlactlError, NotImplementedError):
    """A documented feature that this version does not implement yet."""


__all__ = [
    "SlactlError",
    "UsageError",
    "ShapeError",
    "DtypeError",
    "DeviceError",
    "PatternError",
    "StructureError",
    "FormatError",
    "StoreExistsError",
    "OutputError",
    "BackendUnavailableError",
    "ConvergenceError",
    "PartitionError",
    "NotImplementedFeatureError",
    "GradcheckFailure",
]
