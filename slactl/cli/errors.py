"""The one table from error class to exit code, and the one-line message a user sees."""

from __future__ import annotations

from slactl import errors as E

# Most specific class first: the first match wins.
EXIT_CODES: list[tuple[type[BaseException], int, str]] = [
    (E.ConvergenceError, 3, "not converged"),
    (E.BackendUnavailableError, 4, "backend unavailable"),
    (E.StructureError, 5, "structure"),
    (E.StoreExistsError, 6, "exists"),
    (E.PartitionError, 7, "partition"),
    (E.NotImplementedFeatureError, 8, "not implemented"),
    (E.GradcheckFailure, 9, "gradient check failed"),
    (E.FormatError, 2, "bad input"),
    (E.OutputError, 2, "cannot write"),
    (E.UsageError, 2, "usage"),
    (E.SlactlError, 1, "error"),
]
INTERNAL_ERROR = 70  # a bug in slactl (EX_SOFTWARE): the traceback is shown


def exit_code_for(exc: BaseException) -> tuple[int, str]:
    """``(code, label)`` for a user-facing error, or ``(INTERNAL_ERROR, "internal error")``."""
    for cls, code, label in EXIT_CODES:
        if isinstance(exc, cls):
            return code, label
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
        return 2, "bad input"
    return INTERNAL_ERROR, "internal error"
