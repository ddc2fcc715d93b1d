"""Fixtures for the preconditioner tests: ``device`` over the CPU and CUDA (skipped without a GPU)."""

from __future__ import annotations

from device_fixtures import _one_thread, device  # noqa: F401  (shared fixtures)
