"""Capturing CUDA graphs without ``torch.cuda.graph``'s cache flush.

``torch.cuda.graph`` empties the caching allocator (and the pinned host cache) before every
capture, so that the graph's pool can take the memory freed; every allocation after it goes back
to ``cudaMalloc``. For the small graphs captured inside a solve (a V-cycle, a block of fused CG
iterations) that flush was the cost: ~6 ms of a 13 ms first CG + sa-amg solve at 1M unknowns on
an H200 (re-solves, which replay the graph, take 6.6 ms). Here the capture is begun and ended
directly on a side stream kept per device; the graph still gets a private memory pool.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

import torch

_STREAMS: dict[int, Any] = {}


def capture_stream(device: torch.device) -> Any:
    """One side stream per device for every capture: cuBLAS keeps a workspace (32 MiB on Hopper)
    per stream it has run on, so a new stream per captured graph (per set-up, in an optimization
    loop) would leave one behind each time."""
    device = torch.device(device)
    key = device.index if device.index is not None else torch.cuda.current_device()
    stream = _STREAMS.get(key)
    if stream is None:
        stream = _STREAMS[key] = torch.cuda.Stream(device=device)
    return stream


def capture(fn: Callable[[], Any], device: torch.device, *, capture_error_mode: str = "global") -> tuple[Any, Any]:
    """``(graph, fn())`` with ``fn``'s work recorded in ``graph`` (not run: replay it). Raises
    what ``fn`` or the capture raises (an operation that cannot be captured), after ending the
    capture, so the stream is usable again.

    Python's cyclic garbage collector is paused during the capture: it may free an earlier graph
    (a preconditioner in a reference cycle), whose reset is not permitted while a stream captures
    ("operation not permitted when stream is capturing (function reset)", seen in benchmarks
    that build many hierarchies); it runs as usual afterwards."""
    graph = torch.cuda.CUDAGraph()
    side = capture_stream(device)
    current = torch.cuda.current_stream(device)
    side.wait_stream(current)
    collecting = gc.isenabled()
    gc.disable()
    try:
        with torch.cuda.stream(side):
            graph.capture_begin(capture_error_mode=capture_error_mode)
            try:
                out = fn()
            except BaseException:
                try:
                    graph.capture_end()
                except RuntimeError:  # the capture was invalidated by the failing operation
                    pass
                raise
            graph.capture_end()
    finally:
        if collecting:
            gc.enable()
    current.wait_stream(side)
    return graph, out
