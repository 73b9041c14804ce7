"""Kernel sums on the sphere S^2: spherical harmonics at scattered points (ducc0).

With unit vectors ``u, y`` and a scale ``r``, the Funk-Hecke expansion of the
exponential kernel and the addition theorem ``P_l(<u, y>) = 4 pi / (2l + 1)
sum_m Y_lm(u) conj(Y_lm(y))`` give::

    exp(r (<u, y> - 1)) = sum_l g_l(r) P_l(<u, y>),   g_l(r) = (2l + 1) i_l(r) e^{-r},

with the modified spherical Bessel functions ``i_l``, ``g_l >= 0`` and ``sum_l
g_l(r) = 1`` (``t = 1``). So for keys ``y_j``::

    e^{-r} sum_j wv_j exp(r <u, y_j>) = sum_l g_l(r) 4 pi / (2l + 1) sum_m Y_lm(u) a_lm,
    a_lm = sum_j wv_j conj(Y_lm(y_j)):

an *analysis* (``ducc0.sht.experimental.adjoint_synthesis_general``) and a
*synthesis* (``synthesis_general``), each O(L^2 log L + points) by a non-uniform FFT
on the torus, with the radial factors in between. ``g_l(r)`` is
``(2l + 1) ive(l + 1/2, r) sqrt(pi / (2 r))``, finite at r = 1000. This module
supplies those pieces to :mod:`vlasov_tf.kernels.spectral`, which truncates,
interpolates in ``r`` and controls the error.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from scipy.special import ive

from .threads import num_threads, thread_map

__all__ = ["Sphere"]

#: Accuracy asked of ducc0 (its smallest in double precision is 2e-13). Observed per-value errors
#: 1e-16 to 3e-13 of the largest value (tests/test_spectral.py).
NUFFT_EPS = 3e-13
# Costs in the units of kernels.dense.dense_cost (a dense pair at d = k = 3 is 31 units), measured on
# one thread here (scripts/bench_field.py prints the chooser's picks next to the measured times):
# per point and column of an analysis / a synthesis, and per library call a + b n^2 log2 n + c n^3
# with n = L + 1 (the torus grid and the Legendre transforms).
_POINT_COST = (2300.0, 1800.0)
_CALL_COST = (3.5e6, 60.0, 8.0)
# Keys per analysis call. ducc0's multithreaded spreading may add its buffers in the order the
# threads finish; single-threaded calls on fixed blocks of keys (a call's fixed cost at L = 300 is
# that of ~1e5 keys), summed in block order, give the same bits every time and for every thread count.
_ANALYSIS_BLOCK = 1 << 18


def _call_cost(degree: int) -> float:
    a, b, c = _CALL_COST
    n1 = degree + 1
    return a + b * n1**2 * math.log2(n1 + 1) + c * n1**3


@cache
def _layout(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Degree ``l`` and order ``m`` of each entry of ducc0's (healpy) coefficient layout, m-major."""
    ms = np.concatenate([np.full(degree + 1 - m, m) for m in range(degree + 1)])
    ls = np.concatenate([np.arange(m, degree + 1) for m in range(degree + 1)])
    ms.flags.writeable = ls.flags.writeable = False
    return ls, ms


@cache
def _sub_layout(degree: int, sub: int) -> np.ndarray:
    """Indices, in the layout of ``degree``, of the entries of the layout of ``sub <= degree``."""
    ls, ms = _layout(degree)
    idx = np.flatnonzero((ls <= sub) & (ms <= sub))
    idx.flags.writeable = False
    return idx


def _degree_of(coef: np.ndarray) -> int:
    """L of a coefficient array in ducc0's layout: nalm = (L + 1)(L + 2) / 2, 8 nalm + 1 = (2L + 3)^2."""
    return (math.isqrt(8 * coef.shape[-1] + 1) - 3) // 2


def _run(fn, calls: int, threads: int | None) -> None:
    """``fn(i, nthreads)`` for i < calls: one library thread per call on the pool when there are
    enough calls (a call on ~1e4 points gains nothing from a second thread), else all threads each."""
    nthreads = threads or num_threads()
    if calls >= nthreads > 1:
        thread_map(lambda i: fn(i, 1), range(calls), nthreads)
    else:
        for i in range(calls):
            fn(i, nthreads)


def _angles(points: np.ndarray) -> np.ndarray:
    """(n, 2) colatitude in [0, pi] and longitude in [0, 2 pi) of unit vectors (accurate at the poles);
    ducc0's ``loc``."""
    theta = np.arctan2(np.hypot(points[:, 0], points[:, 1]), points[:, 2])
    phi = np.arctan2(points[:, 1], points[:, 0])
    phi[phi < 0] += 2 * np.pi
    phi[phi >= 2 * np.pi] = 0.0  # -tiny + 2 pi rounds to 2 pi
    return np.ascontiguousarray(np.c_[theta, phi])


class Sphere:
    """The sphere's harmonic pieces for :mod:`vlasov_tf.kernels.spectral` (degree = largest l)."""

    d = 3
    name = "sphere"
    nufft_eps = NUFFT_EPS

    @staticmethod
    def radial(r: float, degree: int) -> np.ndarray:
        """``g_l(r) = (2l + 1) i_l(r) e^{-r}`` for l = 0..degree (>= 0, summing over all l to 1)."""
        ell = np.arange(degree + 1)
        r = float(r)
        if r == 0.0:
            return (ell == 0).astype(float)
        with np.errstate(under="ignore"):
            return (2 * ell + 1) * ive(ell + 0.5, r) * np.sqrt(np.pi / (2 * r))

    @staticmethod
    def multiplicity(degree: int) -> np.ndarray:
        """Each ``g_l`` enters the series once (``|P_l| <= 1``)."""
        return np.ones(degree + 1)

    @staticmethod
    def analysis_cost(m: int, cols: int, degree: int) -> float:
        """Estimated cost of :meth:`analysis` (dense-cost units): one library call per column."""
        return cols * (_call_cost(degree) + m * _POINT_COST[0])

    @staticmethod
    def synthesis_cost(n: int, nodes: int, cols: int, degree: int) -> float:
        """Estimated cost of :meth:`synthesis` at ``n`` points: one library call per node and column."""
        return nodes * cols * (_call_cost(degree) + n * _POINT_COST[1])

    @staticmethod
    def locate(points: np.ndarray) -> np.ndarray:
        """(n, 2) colatitude and longitude of (n, 3) unit vectors: what the transforms take."""
        return _angles(points)

    @staticmethod
    def analysis(loc: np.ndarray, wv: np.ndarray, degree: int, threads: int | None = None) -> np.ndarray:
        """``a[col, idx(l, m)] = sum_j wv[j, col] conj(Y_lm(y_j))`` for m >= 0: (cols, nalm) complex.

        ``loc`` (m, 2) from :meth:`locate`, ``wv`` (m, cols) real; ducc0's layout (m-major).
        The same bits on every call and for every thread count: one single-threaded call per
        column and fixed block of keys, the blocks summed in order.
        """
        from ducc0.sht.experimental import adjoint_synthesis_general

        cols = wv.shape[1]
        nalm = (degree + 1) * (degree + 2) // 2
        if len(loc) == 0:
            return np.zeros((cols, nalm), dtype=complex)
        maps = np.ascontiguousarray(wv.T, dtype=float)
        starts = range(0, len(loc), _ANALYSIS_BLOCK)

        def one(i: int) -> np.ndarray:
            c, start = divmod(i, len(starts))
            rows = slice(starts[start], starts[start] + _ANALYSIS_BLOCK)
            return adjoint_synthesis_general(
                map=maps[c : c + 1, rows], spin=0, lmax=degree, loc=np.ascontiguousarray(loc[rows]),
                epsilon=NUFFT_EPS, nthreads=1,
            )[0]  # fmt: skip

        parts = thread_map(one, range(cols * len(starts)), threads)
        out = np.empty((cols, nalm), dtype=complex)
        for c in range(cols):
            out[c] = parts[c * len(starts)]
            for part in parts[c * len(starts) + 1 : (c + 1) * len(starts)]:
                out[c] += part
        return out

    @staticmethod
    def synthesis(
        coef: np.ndarray, factors: np.ndarray, loc: np.ndarray, threads: int | None = None
    ) -> np.ndarray:
        """``out[i, s, col] = sum_lm factors[s, l] 4 pi / (2l + 1) coef[col, lm] Y_lm(u_i)``: (n, S, cols).

        ``coef`` (cols, nalm) from :meth:`analysis` at a degree L' >= L; ``factors`` (S, L + 1), one
        row per radial node; ``loc`` (n, 2) of the directions ``u_i`` (:meth:`locate`).
        """
        from ducc0.sht.experimental import synthesis_general

        n_nodes, n1 = factors.shape
        degree = n1 - 1
        cols = coef.shape[0]
        out = np.empty((len(loc), n_nodes, cols))
        if len(loc) == 0:
            return out
        full = _degree_of(coef)
        sub = coef[:, _sub_layout(full, degree)]
        ls, _ = _layout(degree)
        fold = 4 * np.pi / (2 * ls + 1)
        loc = np.ascontiguousarray(loc)
        scaled = sub[None, :, :] * (fold * factors[:, ls])[:, None, :]  # (S, cols, nalm)

        def one(i: int, nthreads: int) -> None:
            s, c = divmod(i, cols)
            out[:, s, c] = synthesis_general(
                alm=scaled[s, c : c + 1], spin=0, lmax=degree, loc=loc, epsilon=NUFFT_EPS, nthreads=nthreads
            )[0]

        _run(one, n_nodes * cols, threads)
        return out

    @staticmethod
    def degree_norms(coef: np.ndarray) -> np.ndarray:
        """(cols, L + 1): ``sqrt(4 pi / (2l + 1)) ||a_l||`` with ``||a_l||^2 = sum_{m=-l..l} |a_lm|^2``.

        Degree ``l`` of the synthesised function is at most ``g_l(r)`` times this anywhere
        (Cauchy-Schwarz and the addition theorem); for a point mass it equals ``sum |wv|``.
        """
        full = _degree_of(coef)
        ls, ms = _layout(full)
        power = np.abs(coef) ** 2 * np.where(ms > 0, 2.0, 1.0)  # a_{l,-m} = (-1)^m conj(a_lm)
        norms = np.zeros((coef.shape[0], full + 1))
        for c in range(coef.shape[0]):
            norms[c] = np.sqrt(np.bincount(ls, power[c], minlength=full + 1))
        ell = np.arange(full + 1)
        return norms * np.sqrt(4 * np.pi / (2 * ell + 1))
