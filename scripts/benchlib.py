"""Helpers shared by the benchmark scripts in this directory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

MIB = 1024.0**2


def peak_mib(fn: Callable[[], Any]) -> float:
    """Peak traced memory (MiB) of one call above what was allocated before it.

    numpy reports its array allocations to tracemalloc; BLAS-internal buffers are not seen.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base) / MIB


def timed_peak(fn: Callable[[], Any]) -> tuple[float, Any, float]:
    """One traced call: (wall seconds, result, peak MiB as in :func:`peak_mib`).

    For runs too long to repeat; tracemalloc slows numpy's allocations, not its arithmetic.
    """
    import time

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return elapsed, out, (peak - base) / MIB


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Wall seconds of ``fn``: the best of ``repeat`` calls after an untimed warm-up (caches,
    compilation, a callable's coefficients)."""
    import time

    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)

