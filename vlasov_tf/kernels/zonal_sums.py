"""Sums of zonal kernels over a measure on the sphere: dense and spectral.

For a zonal kernel ``phi`` (:mod:`~vlasov_tf.kernels.zonal`), queries ``x_i`` (n, d) and
weighted keys ``(y_j, w_j)`` (m, d) on the unit sphere, with values ``v_j`` (m, k)::

    S_i = sum_j w_j phi(<x_i, y_j>) [v_j, 1]          (n, k + 1): the last column is the mass

:func:`~vlasov_tf.kernels.choice.zonal_kernel_sums` chooses between the two methods here:

- :func:`zonal_dense_sums`: ``phi`` on tiles of at most 1 MiB of ``<x_i, y_j>`` (clipped to
  [-1, 1]) and two GEMMs, O(n m), round-off only;
- :func:`zonal_spectral_sums` (S^1, S^2): one analysis of the measure (the coefficients of
  ``w_j [v_j, 1]``), the kernel's coefficients ``c_l`` as the one radial factor row, one synthesis
  at the queries: O(L^2 log L + n + m) on S^2 (O(L log L + n + m) on S^1). A constant kernel
  (:func:`constant_value`: its minimum is its maximum) is ``c sum_j w_j [v_j, 1]`` in any
  dimension, O(n + m).

Error of the spectral sums, per column ``c`` and every row (absolute: in the kernel's scale)::

    |S_ic - dense_ic| <= tail T_c + _NOISE eps_lib sum_l |c_l| N_lc + 2 sqrt(L + 1) eps A T_c
                      <= tol sup|phi| T_c,

``T_c = sum_j w_j |[v_j, 1]_c|``, ``tail`` the expansion's tail asked at ``tol / 2`` (proven for
named kernels, measured for callables), ``N_lc`` the degree norms of the analysed measure
(``<= T_c``; :mod:`~vlasov_tf.kernels.spectral`), ``eps_lib`` the accuracy asked of ducc0 or finufft
(the same calibrated model as the exp sums' spectral bound), ``A = sum_l mult_l |c_l|``. The method
refuses (``"auto"`` goes dense) where the a-priori noise ``(_NOISE eps_lib + 2 sqrt(L + 1) eps) A``
could exceed ``tol sup / 2``: kernels whose coefficients cancel a lot relative to ``sup|phi|``, or
``tol`` near 1e-12.

The points must lie on the sphere: the spectral sums see ``x / |x|``; a point off by ``delta``
changes ``phi(<x, y>)`` by up to ``2 delta sup|phi'| = 2 delta sup|phi| / width^2``. They are
accepted while ``delta <= 0.05 tol width^2`` (:func:`unit_limit`), ``width`` the kernel's.

MPI (``split``, :class:`~vlasov_tf.kernels.distributed.Distributed`; every rank passes its block of
the measure and its own queries). Spectral: every rank analyses its block; the coefficients and the
totals ``T_c`` go through one all-reduce; every rank synthesises at its queries. Dense: the keys are
all-gathered (:func:`allgather_keys`: one ``allgather`` of the block sizes, one of the blocks padded
with zero weights), not passed round the ring: ``split.dense`` (:class:`vlasov_tf.parallel.RingSums`)
computes exp sums only, and the :class:`Distributed` protocol is kept as it is. Traffic is the
ring's (every block reaches every rank); memory is the whole measure, ``m (d + k + 1)`` doubles, on
every rank. The gathered keys are in rank order, so a rank's rows are what the serial sums over the
concatenated blocks give.
"""

from __future__ import annotations

import math

import numpy as np

from .cache import derived
from .dense import dense_cost
from .distributed import Distributed
from .spectral import GEOMETRIES
from .threads import blas_single_thread, num_threads, thread_map
from .zonal import ZonalExpansion, ZonalKernel

__all__ = [
    "allgather_keys",
    "constant_value",
    "unit_deviation",
    "unit_limit",
    "zonal_dense_cost",
    "zonal_dense_sums",
    "zonal_spectral_approximation",
    "zonal_spectral_cost",
    "zonal_spectral_refusal",
    "zonal_spectral_sums",
]

# Elements in one tile of <x_i, y_j> (1 MiB of float64, as the exp sums' numpy path: kernels.dense).
_TILE = 1 << 17
# Below this many pairs threads cost more than they save.
_THREAD_MIN_PAIRS = 1 << 18
# Factor on eps_lib times the synthesised function's bound: the library's error (as kernels.spectral).
_NOISE = 5.0
# Off-sphere points: accepted while the change of phi they cause is <= this fraction of tol sup.
_UNIT_FRACTION = 0.05
# Cost of a dense zonal pair relative to kernels.dense.dense_cost (numpy tiles, phi by numpy
# ufuncs in place: measured 1.1x (constant), 1.6x (exp) to 2.8x (exp_difference, degree-5 polynomial)
# the fused exp kernel's pair at d = k = 3).
_DENSE_FACTOR = 2.0


def _mass_values(weights: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """(m, k + 1): ``w_j [v_j, 1]``."""
    if values is None:
        return weights[:, None].astype(float)
    return weights[:, None] * np.c_[values, np.ones(len(weights))]


def _tile_shape(m: int) -> tuple[int, int]:
    """(query rows, keys) of a tile for m keys: at most _TILE elements."""
    bq = min(max(_TILE // max(m, 1), 16), 256)
    return bq, max(1, _TILE // bq)


def zonal_dense_cost(n: int, m: int, d: int, k: int) -> float:
    """Estimated cost of :func:`zonal_dense_sums` in units of :func:`~vlasov_tf.kernels.dense.dense_cost`."""
    return _DENSE_FACTOR * dense_cost(n, m, d, k)


def zonal_dense_sums(
    kernel: ZonalKernel,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """``S_i = sum_j w_j phi(<x_i, y_j>) [v_j, 1]``, (n, k + 1), exact to round-off, O(n m).

    Zero weights are dropped. Tiles of at most 1 MiB of ``<x_i, y_j>`` (clipped to [-1, 1]: rounding
    can leave [-1, 1] and ``phi`` may be defined on it only), ``phi`` on the tile, one GEMM with
    ``w_j [v_j, 1]``. Query blocks run on the thread pool with BLAS on one thread; every row is
    summed the same way whatever ``threads``, so the result does not depend on it.
    """
    k = 0 if values is None else values.shape[1]
    keep = weights > 0
    y = np.ascontiguousarray(y[keep])
    wv = _mass_values(weights[keep], None if values is None else values[keep])
    n, m = len(x), len(y)
    out = np.zeros((n, k + 1))
    if n == 0 or m == 0:
        return out
    yt = np.ascontiguousarray(y.T)
    bq, bk = _tile_shape(m)
    blocks = list(range(0, n, bq))
    nthreads = 1 if n * m < _THREAD_MIN_PAIRS else threads or num_threads()
    # Row blocks in groups, one pair of tile buffers per group (fresh 1 MiB arrays per tile cost page
    # faults: 3x the sums). The blocks, hence every row's arithmetic, do not depend on the groups.
    groups = np.array_split(np.array(blocks), min(len(blocks), 4 * nthreads))

    def work(g: int) -> None:
        scores, phi = np.empty((bq, min(bk, m))), np.empty((bq, min(bk, m)))
        for i in groups[g].tolist():
            rows = min(bq, n - i)
            for j in range(0, m, bk):
                cols = min(bk, m - j)
                tile, vals = scores[:rows, :cols], phi[:rows, :cols]
                np.matmul(x[i : i + bq], yt[:, j : j + bk], out=tile)
                np.clip(tile, -1.0, 1.0, out=tile)
                kernel.evaluate(tile, vals)
                out[i : i + bq] += vals @ wv[j : j + bk]

    if nthreads == 1 or len(groups) == 1:
        with blas_single_thread():
            for g in range(len(groups)):
                work(g)
    else:
        thread_map(work, range(len(groups)), nthreads)
    return out


def allgather_keys(
    split: Distributed, y: np.ndarray, weights: np.ndarray, values: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every rank's keys with positive weight, in rank order: ``(y, weights, values)`` (collective)."""
    d, k = y.shape[1], 0 if values is None else values.shape[1]
    keep = weights > 0
    counts = split.allgather(np.array([float(np.count_nonzero(keep))]))[:, 0].astype(int)
    block = np.zeros((int(counts.max(initial=0)), d + 1 + k))
    mine = int(np.count_nonzero(keep))
    block[:mine, :d], block[:mine, d] = y[keep], weights[keep]
    if k and values is not None:
        block[:mine, d + 1 :] = values[keep]
    rows = split.allgather(block)  # (P, max count, d + 1 + k), padded with zero weights
    every = np.concatenate([rows[p, :c] for p, c in enumerate(counts)]) if len(counts) else block[:0]
    return every[:, :d], every[:, d], (every[:, d + 1 :] if k else None)


def unit_deviation(points: np.ndarray) -> float:
    """``max_i | |p_i| - 1 |`` (0 for no points)."""
    if len(points) == 0:
        return 0.0
    return float(np.abs(np.sqrt(np.einsum("ij,ij->i", points, points)) - 1.0).max())


def unit_limit(kernel: ZonalKernel, tol: float) -> float:
    """Largest ``| |p| - 1 |`` the spectral sums take: ``0.05 tol width^2`` (module docstring)."""
    return _UNIT_FRACTION * tol * kernel.width**2


def constant_value(kernel: ZonalKernel) -> float | None:
    """``c`` when ``phi = c`` on [-1, 1] (its minimum is its maximum), else None."""
    lo, hi = kernel.minimum(), kernel.maximum()
    return hi if lo == hi else None


def _expansion(kernel: ZonalKernel, d: int, tol: float) -> ZonalExpansion:
    """The kernel's expansion for the spectral sums: the tail gets half of ``tol``."""
    return kernel.coefficients(d, 0.5 * tol)


def _a_priori_noise(geometry, expansion: ZonalExpansion) -> float:
    """Bound of the transforms' error per unit ``T_c`` (module docstring)."""
    eps = np.finfo(float).eps
    return (_NOISE * geometry.nufft_eps + 2.0 * math.sqrt(expansion.degree + 1) * eps) * expansion.abs_sum()


def zonal_spectral_refusal(kernel: ZonalKernel, d: int, tol: float, deviation: float) -> str | None:
    """Why the spectral sums do not apply (or None): dimension, degree, noise, points off the sphere.

    ``deviation``: the largest ``| |p| - 1 |`` of the queries and the weighted keys (global under MPI).
    """
    if constant_value(kernel) is not None:
        return None  # degree 0 in any dimension: no transform
    if d not in GEOMETRIES:
        return f"the spectral zonal sums are for S^1 and S^2 (d = 2, 3), got d = {d}"
    expansion = _expansion(kernel, d, tol)
    if not expansion.within_cap:
        return (
            f"the {kernel.name} kernel needs a degree above {expansion.degree} to reach tol = {tol:.3g} "
            f"(tail {expansion.tail:.3g} of sup {expansion.sup:.3g} there)"
        )
    noise = _a_priori_noise(GEOMETRIES[d], expansion)
    if noise > 0.5 * tol * expansion.sup:
        return (
            f"the transforms' round-off ({noise:.3g} per unit mass) could exceed tol sup |phi| / 2 = "
            f"{0.5 * tol * expansion.sup:.3g}: the {kernel.name} kernel's coefficients cancel too much"
        )
    limit = unit_limit(kernel, tol)
    if deviation > limit:
        return f"the points must lie on the unit sphere to {limit:.3g}; they are off by up to {deviation:.3g}"
    return None


def zonal_spectral_cost(kernel: ZonalKernel, d: int, n: int, m: int, cols: int, tol: float) -> float:
    """Estimated cost of :func:`zonal_spectral_sums` (units of ``dense_cost``) for ``n`` queries and
    ``m`` weighted keys, ``cols = k + 1`` columns, where :func:`zonal_spectral_refusal` has none."""
    if constant_value(kernel) is not None:
        return float((n + m) * cols)
    geometry = GEOMETRIES[d]
    degree = _expansion(kernel, d, tol).degree
    return float(geometry.analysis_cost(m, cols, degree) + geometry.synthesis_cost(n, 1, cols, degree))


def zonal_spectral_approximation(
    kernel: ZonalKernel,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
    split: Distributed | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The spectral sums and their error bound: ``(sums (n, k + 1), error (k + 1,))``.

    ``error_c`` bounds ``|sums_ic - exact_ic|`` for every row (module docstring), the same on every
    rank of ``split``. Arguments as :func:`zonal_spectral_sums`; the refusals are not checked here.
    """
    d = x.shape[1]
    keep = weights > 0
    wv = _mass_values(weights[keep], None if values is None else values[keep])
    totals = np.abs(wv).sum(axis=0)
    eps = np.finfo(float).eps
    c = constant_value(kernel)
    if c is not None:  # c sum_j w_j [v_j, 1]: pairwise summation
        mass = wv.sum(axis=0)
        count = float(len(wv))
        if split is not None:
            packed = split.allreduce(np.r_[mass, totals, count])
            mass, totals, count = packed[: len(mass)], packed[len(mass) : -1], float(packed[-1])
        error = abs(c) * totals * (math.log2(max(count, 1.0)) + 2.0) * eps
        return np.broadcast_to(c * mass, (len(x), len(mass))).copy(), error
    geometry = GEOMETRIES[d]
    expansion = _expansion(kernel, d, tol)
    degree = expansion.degree
    # The locations of fixed (read-only) points, e.g. a grid's, are computed once (kernels.cache).
    keys = y if keep.all() else y[keep]
    coef = geometry.analysis(derived(keys, "locate", geometry.locate), wv, degree, threads)
    if split is not None:  # one all-reduce: the coefficients (as real numbers) and the totals
        packed = split.allreduce(np.r_[coef.view(float).ravel(), totals])
        coef = packed[: 2 * coef.size].view(complex).reshape(coef.shape)
        totals = packed[2 * coef.size :]
    factors = expansion.factors
    norms = geometry.degree_norms(coef)  # (cols, L + 1)
    error = (
        expansion.tail * totals
        + _NOISE * geometry.nufft_eps * (norms * np.abs(factors)).sum(axis=1)
        + 2.0 * math.sqrt(degree + 1) * eps * expansion.abs_sum() * totals
    )
    if len(x) == 0:
        return np.zeros((0, wv.shape[1])), error
    sums = geometry.synthesis(coef, factors[None, :], derived(x, "locate", geometry.locate), threads)[:, 0, :]
    return sums, error


def zonal_spectral_sums(
    kernel: ZonalKernel,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
    split: Distributed | None = None,
) -> np.ndarray:
    """``S_i = sum_j w_j phi(<x_i, y_j>) [v_j, 1]`` by harmonic expansion, (n, k + 1).

    ``x`` (n, d), ``y`` (m, d) on the unit sphere, d = 2 or 3 (any d for a constant kernel);
    ``weights`` (m,) >= 0; ``values`` (m, k) or None. Every entry within ``tol sup|phi| T_c`` of the
    dense sums (module docstring) where :func:`zonal_spectral_refusal` has no objection.
    ``split``: this rank's block of the measure and its own queries; every rank must call.
    """
    return zonal_spectral_approximation(kernel, x, y, weights, values, tol=tol, threads=threads, split=split)[
        0
    ]
