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
