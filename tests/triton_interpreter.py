"""Running a test file's ``interp_`` tests under Triton's CPU interpreter.

Triton decorates its own library when ``TRITON_INTERPRET=1`` is set before it is imported, so the
interpreter cannot be switched on inside the test process: the kernels' tests run in a child
pytest started with the variable, and the parent asserts that they ran and passed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_interpreted_tests(test_file: str | Path) -> None:
    """Run ``test_file``'s ``interp_`` tests with TRITON_INTERPRET=1; fail with the child's output
    unless some ran and all passed (none skipped)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not gpu", "-k", "interp_",
         str(Path(test_file).resolve().relative_to(ROOT))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], tail


def with_strided_values(A):
    """``A`` with its values a strided view (a column of a batch, as ``A.with_values(V[:, j])``
    gives): kernels that read the values with unit stride see the wrong column's 1e6 entries."""
    import torch

    batch = torch.stack([A.values, torch.full_like(A.values, 1e6)], 1)
    strided = A.with_values(batch[:, 0])
    assert not strided.values.is_contiguous()
    return strided


def require_triton_compiler() -> None:
    """Skips the calling test where Triton, or its ahead-of-time API (ASTSource, GPUTarget), is
    missing (CI has no Triton). Call it before loading a kernel module: they import triton."""
    import pytest

    try:
        import triton  # noqa: F401
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"this triton has no ASTSource / GPUTarget: {exc}")


def ptx_for_sm90(kernel, signature: dict, constexprs: dict, **options) -> str:
    """The PTX of a Triton kernel compiled for an H100/H200 (sm_90) without a device: Triton's
    whole pipeline (MLIR, LLVM, PTX, ptxas). ``signature`` names every argument's type
    (``"constexpr"`` for the ``constexprs``); the test is skipped where this Triton lacks the
    ahead-of-time API. ``options`` add to ``num_warps=4``."""
    import pytest

    require_triton_compiler()
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    try:
        src = ASTSource(kernel, signature, constexprs)
    except TypeError as exc:
        pytest.skip(f"this triton's ASTSource takes other arguments: {exc}")
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, **options}).asm["ptx"]
