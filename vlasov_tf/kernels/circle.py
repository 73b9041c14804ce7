"""Kernel sums on the circle S^1: Fourier series (finufft at scattered angles, FFT on uniform grids).

With ``x = (cos t, sin t)`` and a query ``z = r (cos a, sin a)``, the kernel is
``exp(<z, y>) = exp(r cos(a - t))``, and (generating function of the modified
Bessel functions ``I_k``)::

    exp(r (cos(a - t) - 1)) = sum_{k in Z} g_k(r) e^{i k (a - t)},   g_k(r) = I_k(r) e^{-r} = ive(k, r),

with ``g_k >= 0`` and ``sum_k g_k(r) = 1``. So for keys at angles ``t_j``::

    e^{-r} sum_j wv_j exp(r cos(a - t_j)) = sum_k g_k(r) c_k e^{i k a},   c_k = sum_j wv_j e^{-i k t_j}:

an *analysis* (type-1 non-uniform FFT, finufft) and a *synthesis* (type 2) with the
radial factors ``g_k(r)`` in between. This module supplies those pieces to
:mod:`vlasov_tf.kernels.spectral`, which truncates, interpolates in ``r`` and
controls the error.

On a uniform grid with queries at a fixed offset from the keys (the finite-volume
circle, :func:`uniform_offset`), the sums are circular convolutions:
:func:`fft_sums` does them with two real FFTs, O(M log M).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft
from scipy.special import ive

from .cache import derived, frozen
from .dense import exp_kernel_sums
from .row_tolerance import RowBudget, rows_to_fix, value_bound
from .threads import num_threads, thread_map

__all__ = ["Circle", "fft_sums", "uniform_offset"]

#: Accuracy asked of finufft (its relative l2 error; observed per-value errors 1e-15 to 3e-14 of
#: the largest value, as measured by tests/test_spectral.py).
NUFFT_EPS = 1e-13
# Costs in the units of kernels.dense.dense_cost (see sphere.py): per point and column of an analysis
# / a synthesis, and per library call (one call serves every column and node: finufft batches them).
_POINT_COST = (1350.0, 1650.0)
_CALL_COST = 1.1e7
# Keys per type-1 call. finufft's multithreaded spreading adds its subgrids in whatever order the
# threads finish, so its last bits change from call to call; single-threaded calls on fixed blocks
# of keys, summed in block order, give the same bits every time and for every thread count.
_ANALYSIS_BLOCK = 1 << 16


class Circle:
    """The circle's Fourier pieces for :mod:`vlasov_tf.kernels.spectral` (degree = largest ``|k|``)."""

    d = 2
    name = "circle"
    nufft_eps = NUFFT_EPS

    @staticmethod
    def radial(r: float, degree: int) -> np.ndarray:
        """``g_k(r) = I_k(r) e^{-r}`` for k = 0..degree (>= 0, summing over k in Z to 1)."""
        with np.errstate(under="ignore"):
            return ive(np.arange(degree + 1), float(r))

    @staticmethod
    def multiplicity(degree: int) -> np.ndarray:
        """How often each ``g_k`` enters the series: once for k = 0, twice (+-k) beyond."""
        mult = np.full(degree + 1, 2.0)
        mult[0] = 1.0
        return mult

    @staticmethod
    def analysis_cost(m: int, cols: int, degree: int) -> float:
        """Estimated cost of :meth:`analysis` (dense-cost units): one batched type-1 transform."""
        return _CALL_COST + m * cols * _POINT_COST[0]

    @staticmethod
    def synthesis_cost(n: int, nodes: int, cols: int, degree: int) -> float:
        """Estimated cost of :meth:`synthesis` at ``n`` points: one batched type-2 transform."""
        return _CALL_COST + n * nodes * cols * _POINT_COST[1]

    @staticmethod
    def locate(points: np.ndarray) -> np.ndarray:
        """(n,) angles of (n, 2) unit vectors: what the transforms take."""
        return np.arctan2(points[:, 1], points[:, 0])

    @staticmethod
    def analysis(loc: np.ndarray, wv: np.ndarray, degree: int, threads: int | None = None) -> np.ndarray:
        """``c[col, K + k] = sum_j wv[j, col] e^{-i k t_j}`` for ``|k| <= K``: (cols, 2K + 1) complex.

        ``loc`` (m,) angles ``t_j`` (:meth:`locate`), ``wv`` (m, cols) real.
        The same bits on every call and for every thread count: single-threaded transforms of
        fixed blocks of keys, summed in block order.
        """
        cols, width = wv.shape[1], 2 * degree + 1
        if len(loc) == 0:
            return np.zeros((cols, width), dtype=complex)
        import finufft

        def block(start: int) -> np.ndarray:
            stop = start + _ANALYSIS_BLOCK
            strengths = np.ascontiguousarray(wv[start:stop].T, dtype=complex)
            return finufft.nufft1d1(
                np.ascontiguousarray(loc[start:stop]), strengths, width, eps=NUFFT_EPS, isign=-1, nthreads=1
            ).reshape(cols, width)

        parts = thread_map(block, range(0, len(loc), _ANALYSIS_BLOCK), threads)
        out = parts[0]
        for part in parts[1:]:
            out += part
        return out

    @staticmethod
    def synthesis(
        coef: np.ndarray, factors: np.ndarray, loc: np.ndarray, threads: int | None = None
    ) -> np.ndarray:
        """``out[i, s, col] = sum_k factors[s, |k|] coef[col, K + k] e^{i k a_i}``: (n, S, cols).

        ``coef`` (cols, 2K' + 1) from :meth:`analysis` (K' >= K); ``factors`` (S, K + 1), one row
        per radial node; ``loc`` (n,) the angles ``a_i`` (:meth:`locate`). One batched type-2
        transform for every node and column.
        """
        n_nodes, n1 = factors.shape
        cols, width = coef.shape
        k0 = (width - 1) // 2
        deg = n1 - 1
        if len(loc) == 0:
            return np.zeros((0, n_nodes, cols))
        full = np.concatenate([factors[:, :0:-1], factors], axis=1)  # |k| for k = -K..K: (S, 2K + 1)
        sub = coef[:, k0 - deg : k0 + deg + 1]
        batch = np.ascontiguousarray((full[:, None, :] * sub[None, :, :]).reshape(n_nodes * cols, -1))
        import finufft

        nthreads = threads or num_threads()
        vals = finufft.nufft1d2(np.ascontiguousarray(loc), batch, eps=NUFFT_EPS, isign=1, nthreads=nthreads)
        return vals.real.reshape(n_nodes, cols, -1).transpose(2, 0, 1)

    @staticmethod
    def degree_norms(coef: np.ndarray) -> np.ndarray:
        """(cols, K + 1): ``|c_k| + |c_-k|`` (``|c_0|`` at k = 0), which bound each degree's part of
        the synthesised function (``|e^{ika}| = 1``)."""
        k0 = (coef.shape[1] - 1) // 2
        mag = np.abs(coef)
        out = mag[:, k0:].copy()
        out[:, 1:] += mag[:, k0 - 1 :: -1]
        return out


@lru_cache(maxsize=16)
def _kernel_fft(m: int, scale: float, angle: float) -> np.ndarray:
    """rfft of ``exp(scale (cos(k 2 pi / m + angle) - 1))``, k = 0..m-1 (reused every stage)."""
    return fft.rfft(np.exp(scale * (np.cos(np.arange(m) * (2 * np.pi / m) + angle) - 1.0)))


def _wrap(a: np.ndarray) -> np.ndarray:
    """Angles to [-pi, pi]; those already there unchanged (adding and removing pi would round them)."""
    return np.where(np.abs(a) <= np.pi, a, np.mod(a + np.pi, 2 * np.pi) - np.pi)


def _uniform_keys(y: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(angles, deviation)`` of m unit vectors ``y`` that lie near ``t_0 + j 2 pi / m`` in order
    (``deviation``: the largest angle off that lattice, plus their largest ``| |y| - 1 |``), else None."""
    m = len(y)
    if y.ndim != 2 or y.shape[1] != 2 or m < 2:
        return None
    # Tokens are tested every call: sixteen of them rule out all but a grid at O(1) cost.
    probe = np.unique(np.linspace(0, m - 1, 16).astype(int))
    tp = np.arctan2(y[probe, 1], y[probe, 0])
    if np.abs(_wrap(tp - tp[0] - (2 * np.pi / m) * probe)).max() > 1e-6:
        return None
    off_circle = float(np.abs(np.hypot(y[:, 0], y[:, 1]) - 1.0).max())
    t = np.arctan2(y[:, 1], y[:, 0])
    off_lattice = float(np.abs(_wrap(t - t[0] - (2 * np.pi / m) * np.arange(m))).max())
    if max(off_circle, off_lattice) > 1e-6:
        return None
    return frozen(t), off_circle + off_lattice


def _uniform_queries(z: np.ndarray) -> tuple[float, np.ndarray, float] | None:
    """``(scale, angles, spread)`` of queries of nearly one norm (``spread``: the range of the norms
    relative to the largest), else None."""
    norms = np.hypot(z[:, 0], z[:, 1])
    scale = float(norms.max()) if len(z) else 0.0
    if not scale > 0:
        return None
    spread = float(np.ptp(norms)) / scale
    if spread > 1e-6:
        return None
    return scale, frozen(np.arctan2(z[:, 1], z[:, 0])), spread


def uniform_offset(z: np.ndarray, y: np.ndarray, tol: float = 1e-10) -> tuple[float, float] | None:
    """``(scale, angle)`` when the sums are a circular convolution on a uniform grid, else None.

    That is: ``m`` keys ``y_j`` at angles ``t_0 + j D`` (``D = 2 pi / m``, unit vectors), and
    ``m`` queries ``z_i = scale (cos a_i, sin a_i)`` of one norm with ``a_i = t_i + angle``,
    so that ``<z_i, y_j> = scale cos((i - j) D + angle)`` depends on ``i - j`` only: the
    finite-volume circle (keys: cell centres; queries: ``B`` times the face midpoints, ``B`` a
    scaled rotation). Points off that pattern by an angle ``delta`` (or a norm off by a factor
    ``1 + delta``) change a term by a factor up to ``exp(2 scale delta)``: they are accepted only
    while ``2 scale delta <= tol / 10``, so that the convolution stays within ``tol``.
    Cost O(m), once per read-only array (kernels.cache).
    """
    if z.ndim != 2 or z.shape != y.shape or z.shape[1] != 2:
        return None
    keys = derived(y, "uniform angles", _uniform_keys)
    queries = derived(z, "one norm", _uniform_queries)
    if keys is None or queries is None:
        return None
    (t, key_dev), (scale, a, spread) = keys, queries
    offset = _wrap(a - t)
    offset_dev = float(np.abs(_wrap(offset - offset[0])).max())
    if 2.0 * scale * (key_dev + offset_dev + spread) > 0.1 * tol:
        return None
    return scale, float(offset[0])


def fft_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
    geometry: tuple[float, float] | None = None,
    row_tol: np.ndarray | RowBudget | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel sums on a uniform circle grid by FFT, O(M log M): :func:`uniform_offset` must hold.

    Returns ``(shift (M,), sums (M, k + 1))`` as :func:`~vlasov_tf.kernels.dense.exp_kernel_sums`::

        sums_i = sum_j w_j exp(scale (cos((i - j) D + angle) - 1)) [v_j, 1],   shift_i = scale.

    FFT round-off is absolute, about ``eps log2(M) sum_j |w_j v_j|``, while a row's normaliser
    can be as small as ``exp(-2 scale) sum_j w_j`` (all mass opposite the query): the rows
    whose normaliser that round-off could spoil beyond ``tol`` are summed densely.
    ``geometry``: :func:`uniform_offset`'s answer where the caller has it. ``row_tol`` (M,): per-row
    tolerances, ``inf`` rows kept from the FFT, clipped, where they would be summed densely
    (:mod:`~vlasov_tf.kernels.row_tolerance`; a ``RowBudget``: the tolerances it allocates).
    """
    geometry = uniform_offset(z, y, tol) if geometry is None else geometry
    if geometry is None:
        raise ValueError(
            "field method 'fft' does not apply: it needs m keys uniformly spaced on the unit circle and "
            "m queries of one norm at a fixed angle from them (a uniform circle grid, B a scaled rotation)"
        )
    scale, angle = geometry
    m = len(weights)
    k = 0 if values is None else values.shape[1]
    wv = weights[:, None] * (np.ones((m, 1)) if values is None else np.c_[values, np.ones(m)])
    workers = threads or num_threads()
    spectrum = _kernel_fft(m, scale, angle)[:, None] * fft.rfft(wv, axis=0, workers=workers)
    sums = fft.irfft(spectrum, n=m, axis=0, workers=workers)
    shift = np.full(m, scale)
    noise = 64 * np.finfo(float).eps * np.log2(max(m, 2)) * np.abs(wv).sum(axis=0).max()
    if row_tol is None:
        bad = sums[:, k] < noise / tol
    else:
        bad = rows_to_fix(sums, noise, tol, row_tol, value_bound(weights, values))
    if bad.any():
        shift[bad], sums[bad] = exp_kernel_sums(z[bad], y, weights, values, threads=threads)
    return shift, sums
