"""cuDSS options that need no GPU: the hybrid-memory decision and its environment override."""

from __future__ import annotations

import pytest

from slactl.engine.linear import cudss
from slactl.errors import UsageError


@pytest.mark.parametrize("text,expected", [("2GiB", 2 * 2**30), ("512M", 512 * 2**20), ("1000000", 10**6),
                                           ("1.5g", int(1.5 * 2**30)), ("64KiB", 64 * 2**10)])
def test_device_memory_limit_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv("SLACTL_CUDSS_DEVICE_MEMORY_LIMIT", text)
    assert cudss.forced_device_memory_limit() == expected


def test_no_limit_by_default(monkeypatch):
    monkeypatch.delenv("SLACTL_CUDSS_DEVICE_MEMORY_LIMIT", raising=False)
    assert cudss.forced_device_memory_limit() is None


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "12X"])
def test_bad_limit_is_one_clear_error(monkeypatch, text):
    monkeypatch.setenv("SLACTL_CUDSS_DEVICE_MEMORY_LIMIT", text)
    with pytest.raises(UsageError, match="SLACTL_CUDSS_DEVICE_MEMORY_LIMIT"):
        cudss.forced_device_memory_limit()


def test_hybrid_mode_only_where_the_default_peak_does_not_fit():
    gib = 2**30
    assert cudss.hybrid_limit_for(peak_device_bytes=10 * gib, available_bytes=80 * gib) is None
    assert cudss.hybrid_limit_for(peak_device_bytes=72 * gib, available_bytes=80 * gib) is None  # 90% fits
    assert cudss.hybrid_limit_for(peak_device_bytes=73 * gib, available_bytes=80 * gib) == int(0.8 * 80 * gib)
    assert cudss.hybrid_limit_for(peak_device_bytes=500 * gib, available_bytes=80 * gib) == int(0.8 * 80 * gib)
