"""Sums of exponential kernels: the numerical engine behind the attention field.

Everything nonlocal in the project reduces to, for query vectors ``z_i`` and
weighted keys ``(y_j, w_j)`` with values ``v_j``::

    S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1]          (shape (k + 1,))

(``z_i = B x_i`` for a head with score matrix ``B``). ``S_i`` overflows for
large ``|z_i||y_j|`` (beta = 1000 on the sphere gives exp(1000)), so it is
returned in scaled form ``S_i = exp(shift_i) * sums_i`` with ``sums_i[-1]``
of order one. The shift is an upper bound of ``max_j <z_i, y_j> + log w_j``:
the Cauchy-Schwarz bound ``|z_i| max_j |y_j| + max_j log w_j`` when it is
within ``_SAFE_GAP / 2`` of the true maximum (no term underflows), else the
exact row maximum from an extra sweep. Because the shift is fixed per row,
sums over separate key blocks simply add, which is what lets the keys be
streamed in blocks (bounded memory) and, later, passed around a ring of MPI
ranks.

The dense path is blocked so that an ``(n_query_block, n_key_block)`` tile
(a few MiB) is the largest temporary, and query blocks run on a thread pool
(numpy's GEMM and exp release the GIL) with BLAS pinned to one thread inside
each worker so that the two levels of threading do not fight.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache, lru_cache

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = ["blas_single_thread", "circle_convolution_sums", "exp_kernel_sums", "num_threads"]

# 2 * 300: exp(-600) ~ 1e-261 is still a normal double, so with a shift at most
# 600 above the true row maximum the largest term never underflows.
_SAFE_GAP = 600.0
# Elements in one score tile (8 MiB of float64): small enough to keep the
# temporaries per thread bounded, large enough to amortise Python overhead.
_TILE = 1 << 20
# Below this many pairs, threads and BLAS pinning cost more than they save.
_THREAD_MIN_PAIRS = 1 << 18


def num_threads() -> int:
    """Worker threads for dense sums: ``$VLASOV_TF_NUM_THREADS`` or the usable cores."""
    env = os.environ.get("VLASOV_TF_NUM_THREADS")
    if env:
        n = int(env)
        if n < 1:
            raise ValueError(f"VLASOV_TF_NUM_THREADS must be >= 1, got {env!r}")
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@cache
def _executor(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="vlasov_tf")


@cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def blas_single_thread():
    """Context manager pinning BLAS to one thread.

    For skinny products such as (n, d) x (d, d): they are memory-bound, and
    OpenBLAS's second thread spin-waits ~100x longer than the work when another
    process holds a core.
    """
    return _blas_controller().limit(limits=1, user_api="blas")


def _row_max(za: np.ndarray, ya_t: np.ndarray) -> np.ndarray:
    """Exact ``max_j (<z_i, y_j> + log w_j)`` by key tiles; ``za = [z, 1]``, ``ya_t = [y, logw]^T``."""
    out = np.full(za.shape[0], -np.inf)
    bq = max(1, min(za.shape[0], _TILE // max(ya_t.shape[1], 1)))
    for i in range(0, za.shape[0], bq):
        for j in range(0, ya_t.shape[1], _TILE // bq):
            tile = za[i : i + bq] @ ya_t[:, j : j + _TILE // bq]
            np.maximum(out[i : i + bq], tile.max(axis=1), out=out[i : i + bq])
    return out


def exp_kernel_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled sums ``S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1] = exp(shift_i) sums_i``.

    Parameters
    ----------
    z : (n, d) query vectors (``B x`` for a score matrix ``B``).
    y : (m, d) key positions.
    weights : (m,) non-negative key weights (zeros are dropped).
    values : (m, k) values ``v_j``; ``None`` means ``k = 0`` (only the normaliser).
    threads : worker threads; default :func:`num_threads`.

    Returns
    -------
    shift : (n,) log-scale of each row.
    sums : (n, k + 1) scaled sums; the last column is the normaliser
        ``sum_j w_j exp(<z_i, y_j> - shift_i)``, which is ``>= exp(-_SAFE_GAP)``.

    Inputs are not validated here (the callers in :mod:`vlasov_tf.model` do it);
    at least one weight must be positive.
    """
    keep = weights > 0
    y, w = y[keep], weights[keep]
    vals = np.ones((y.shape[0], 1)) if values is None else np.c_[values[keep], np.ones(y.shape[0])]
    n, m = z.shape[0], y.shape[0]
    logw = np.log(w)

    # shift_i: Cauchy-Schwarz bound, replaced by the exact max on rows where it is loose.
    znorm = np.linalg.norm(z, axis=1)
    radius = np.linalg.norm(y, axis=1).max()
    shift = znorm * radius + logw.max()
    # The best-weighted key alone reaches shift - 2 |z| R, so the bound is safe
    # whenever 2 |z| R <= _SAFE_GAP.
    loose = 2.0 * znorm * radius > _SAFE_GAP
    if loose.any():
        shift[loose] = _row_max(np.c_[z[loose], np.ones(loose.sum())], np.r_[y.T, logw[None]])

    # The shift enters the GEMM as an extra coordinate: tile = <z,y> + logw - shift.
    za = np.c_[z, np.ones(n), -shift]
    ya_t = np.ascontiguousarray(np.r_[y.T, logw[None], np.ones((1, m))])
    sums = np.zeros((n, vals.shape[1]))

    bq = int(np.clip(_TILE // max(m, 1), 16, 512))
    bk = max(1, _TILE // bq)

    def work(i: int) -> None:
        with np.errstate(under="ignore"):  # underflowed terms are negligible by construction
            for j in range(0, m, bk):
                tile = za[i : i + bq] @ ya_t[:, j : j + bk]
                np.exp(tile, out=tile)
                sums[i : i + bq] += tile @ vals[j : j + bk]

    starts = range(0, n, bq)
    nthreads = num_threads() if threads is None else threads
    if nthreads == 1 or n * m < _THREAD_MIN_PAIRS or n <= bq:
        for i in starts:
            work(i)
    else:
        with blas_single_thread():
            # list() re-raises any worker exception here.
            list(_executor(nthreads).map(work, starts))
    return shift, sums


@lru_cache(maxsize=16)
def _kernel_fft(m: int, scale: float, angle: float) -> np.ndarray:
    """rfft of ``exp(scale (cos(k 2 pi / m + angle) - 1))``, k = 0..m-1 (reused every stage)."""
    from scipy import fft

    return fft.rfft(np.exp(scale * (np.cos(np.arange(m) * (2 * np.pi / m) + angle) - 1.0)))


def circle_convolution_sums(
    scale: float,
    phase: float,
    weights: np.ndarray,
    values: np.ndarray,
    offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel sums on a uniform circle grid by FFT, O(M log M).

    Keys at angles ``t_j = t_0 + j D`` (``D = 2 pi / M``), queries at
    ``t_i + offset``, and a score matrix ``B = scale * R(phase)`` (a scaled
    rotation), so ``<B x_i, y_j> = scale cos((i - j) D + offset + phase)``
    depends on ``i - j`` only: the sums are circular convolutions::

        sums_i = sum_j w_j exp(scale (cos((i - j) D + offset + phase) - 1)) [v_j, 1],
        shift_i = scale.

    Parameters: ``weights`` (M,) >= 0; ``values`` (M, k). Returns ``shift``
    (M,) and ``sums`` (M, k + 1) as :func:`exp_kernel_sums` does.

    FFT round-off is absolute, about ``eps * sum_j w_j``, while a row's true
    normaliser can be as small as ``exp(-2 scale) sum_j w_j`` (all mass
    opposite the query): the rows that round-off could spoil are recomputed
    densely.
    """
    from scipy import fft

    m = len(weights)
    k = np.arange(m)
    wv = weights[:, None] * np.c_[values, np.ones(m)]
    spectrum = _kernel_fft(m, scale, offset + phase)[:, None] * fft.rfft(wv, axis=0, workers=-1)
    sums = fft.irfft(spectrum, n=m, axis=0, workers=-1)
    shift = np.full(m, float(scale))
    noise = 64 * np.finfo(float).eps * np.log2(max(m, 2)) * np.abs(wv).sum(axis=0).max()
    bad = sums[:, -1] < 1e8 * noise  # keeps the relative error of every row below ~1e-8
    if bad.any():
        t = 2 * np.pi * k / m  # any t_0 works: only differences matter
        keys = np.c_[np.cos(t), np.sin(t)]
        tq = t[bad] + offset + phase
        shift[bad], sums[bad] = exp_kernel_sums(scale * np.c_[np.cos(tq), np.sin(tq)], keys, weights, values)
    return shift, sums
