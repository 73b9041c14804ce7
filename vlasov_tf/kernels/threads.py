"""Worker threads for the kernel sums: how many, the shared pool, and BLAS pinned to one thread.

Every method of :mod:`vlasov_tf.kernels` runs its blocks on one thread pool
(numba's kernels, numpy's GEMM and exp, ducc0 and finufft release the GIL), and
the libraries that bring threads of their own (ducc0, finufft) are given the
same count, ``$VLASOV_TF_NUM_THREADS`` or the usable cores. Importing this module
sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set (see below).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from functools import cache
from typing import TypeVar

from threadpoolctl import ThreadpoolController

__all__ = ["blas_single_thread", "num_threads", "thread_map"]

T = TypeVar("T")

# finufft runs on OpenMP, whose idle threads spin by default: next to our own thread pool (ducc0
# calls, numba kernels) they took the cores and slowed the circle's transforms 2-10x. Passive
# waiting is set before the OpenMP runtime starts (it reads the variable once); a value the user
# set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def num_threads() -> int:
    """Worker threads for the kernel sums: ``$VLASOV_TF_NUM_THREADS`` or the usable cores."""
    env = os.environ.get("VLASOV_TF_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"VLASOV_TF_NUM_THREADS must be an integer >= 1, got {env!r}")
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@cache
def _executor(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="vlasov_tf")


@cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


class _BlasPin(threading.local):
    """The pin of :func:`blas_single_thread`: per thread, re-entrant.

    threadpoolctl's limit queries and sets the libraries (~2.5 us, a few percent of a layer of 64
    tokens), and inside an outer pin an inner one changes nothing (it sets one thread and puts
    back one). So only a thread's outermost entry sets the limit and its matching exit restores
    it; nested entries only count (~0.3 us). The count is per thread: a thread's own outer pin
    is certain to outlast its nested ones, another thread's is not.
    """

    depth = 0
    limiter = None

    def __enter__(self) -> None:
        if self.depth == 0:
            limiter = _blas_controller().limit(limits=1, user_api="blas")
            limiter.__enter__()
            self.limiter = limiter
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            limiter, self.limiter = self.limiter, None
            assert limiter is not None  # set by the outermost entry
            limiter.__exit__(None, None, None)


_BLAS_PIN = _BlasPin()


def blas_single_thread() -> AbstractContextManager[None]:
    """Context manager pinning BLAS to one thread (re-entrant: nested entries cost ~0.3 us).

    For skinny products such as (n, d) x (d, d): they are memory-bound, and
    OpenBLAS's second thread spin-waits ~100x longer than the work when another
    process holds a core. Solvers hold it around their loops so that the field's own
    entries at every step are the cheap nested ones.
    """
    return _BLAS_PIN


def thread_map(fn: Callable[[int], T], items: Iterable[int], threads: int | None = None) -> list[T]:
    """``[fn(i) for i in items]`` on the shared pool of ``threads`` workers, BLAS pinned to one thread.

    Results come back in the order of ``items``; an exception in a worker is raised here.
    One thread (or one item) runs in the calling thread.
    """
    items = list(items)
    n = num_threads() if threads is None else threads
    if n == 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with blas_single_thread():
        return list(_executor(n).map(fn, items))
