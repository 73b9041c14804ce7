"""Low-rank (truncated Taylor) evaluation of exponential kernel sums for general Q, K, V.

For queries ``z_i`` (n, d), weighted keys ``(y_j, w_j)`` (m, d) and values ``v_j`` (m, k) the
sums of :func:`vlasov_tf.kernels.exp_kernel_sums`::

    S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1]

cost O(n m) densely. Centre both sides, ``z' = z - c_z``, ``y' = y - c_y`` (centres of the
bounding boxes, which about minimise the radii ``r_z = max |z'|``, ``r_y = max |y'|``)::

    <z, y> = <z', y'> + <z, c_y> + <c_z, y'>

The second term is a row factor (it goes into ``shift_i``), the third a column factor (it goes
into the key weights ``w'_j = w_j exp(<c_z, y'_j>)``), and the first is expanded with the
multinomial theorem, truncated at total degree p::

    exp(<z', y'>) ~ sum_{|a| <= p} phi_a(z') phi_a(y'),   phi_a(u) = u^a / sqrt(a!)

(``C(p + d, d)`` monomial features; the symmetric scaling ``1/sqrt(a!)`` keeps both factors of
the same size). Then ``S_i ~ exp(shift_i) Phi(z'_i) M`` with the moments
``M = sum_j w'_j phi(y'_j) [v_j, 1]^T`` (F, k + 1): cost O((n + m) F (k + 1)), linear in N.

Error bound (proved). With ``t = <z', y'>``, ``|t| <= rho = r_z r_y``, the truncation is the
Taylor remainder of exp at degree p (the degree-q part of the multinomial sum is exactly
``t^q / q!``), ``R = e^xi t^(p+1) / (p+1)!`` with xi between 0 and t, so relative to the exact
term ``e^t``::

    |R| / e^t = e^(xi - t) |t|^(p+1) / (p+1)! <= e^rho rho^(p+1) / (p+1)! =: delta(rho, p)

(``e^(xi - t) <= 1`` for t >= 0 and ``<= e^|t|`` for t < 0). All weights are positive, so for
every row i and column c::

    |S_i,c - S~_i,c| <= delta * sum_j w_j e^(t_ij) |v_j,c| <= delta * max_j |v_j,c| * S_i,normaliser

i.e. the normaliser has relative error <= delta and each value column an error <= delta
times the normaliser times ``max |v_c|`` (hence the softmax average ``S_v / S_1`` is off by at
most ``2 delta max |v|`` to first order). :func:`taylor_sums` picks the least p with
``delta <= tol / 2``. (This is sharper by e^rho than the bound via the worst-case
normaliser ``>= e^-rho sum w'``.)

Rounding is not in that bound: the expansion sums terms of size up to
``sum_a |phi_a(z')| |phi_a(y')| <= e^rho`` into a result that can be as small as ``e^-rho``,
so round-off is amplified by up to ``e^(2 rho)``. The other half of ``tol`` is its budget
(estimate ``e^(2 rho) * 4 eps sqrt(F)``); where it does not fit, or where p or F would
exceed the caps, :func:`taylor_sums` raises ValueError and :func:`taylor_cost` returns inf.
On the sphere with ``z = B x`` this means ``rho ~ ||B||`` of a few units (beta <~ 5 at
tol = 1e-8): the dense path is the method for sharp kernels.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from .cache import derived
from .threads import blas_single_thread, num_threads, thread_map

__all__ = ["radii", "taylor_bound", "taylor_cost", "taylor_degree", "taylor_sums"]

#: Largest total degree p of the expansion.
MAX_DEGREE = 60
#: Largest number of monomial features C(p + d, d) (the features of a block of points take
#: ``_BLOCK * F * 8`` bytes).
MAX_FEATURES = 20_000
# Points per block when building features: bounds the (F, block) temporary to ~80 MiB at F = 5000.
_BLOCK = 2048
_EPS = np.finfo(float).eps
# Cost units per feature and point, on the scale of kernels.dense_cost (whose unit is a flop at the
# fused dense kernel's speed): building a feature is a row gather and a multiply at memory speed,
# and the moments / evaluation GEMMs are skinny ((F, b) x (b, k + 1)). Measured with
# scripts/bench_field.py (d = k = 3): ~5x the dense kernel's time per unit, so 5 (2 (k + 1) + 8).
_FEATURE_FLOPS = 8.0
_TAYLOR_UNIT = 5.0


def taylor_bound(rho: float, p: int) -> float:
    """Proved truncation bound ``delta(rho, p) = e^rho rho^(p+1) / (p+1)!`` (module docstring)."""
    if rho == 0.0:
        return 0.0
    log_bound = rho + (p + 1) * math.log(rho) - math.lgamma(p + 2)
    return math.inf if log_bound > 700.0 else math.exp(log_bound)  # large beta: no overflow, just inf


def _rounding(rho: float, n_features: int) -> float:
    """Estimated round-off of the expansion relative to the normaliser (not a proof)."""
    return math.exp(2.0 * rho) * 4.0 * _EPS * math.sqrt(n_features)


def _n_features(p: int, d: int) -> int:
    """Monomial features of total degree <= p in d variables: ``C(p + d, d)``."""
    return math.comb(p + d, d)


def taylor_degree(rho: float, d: int, tol: float) -> int:
    """Least degree p with ``taylor_bound(rho, p) <= tol / 2``.

    Raises ValueError if p would exceed :data:`MAX_DEGREE`, the features :data:`MAX_FEATURES`,
    or the estimated round-off ``tol / 2``, saying which.
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    p = 0
    while taylor_bound(rho, p) > tol / 2:
        p += 1
        if p > MAX_DEGREE:
            raise ValueError(
                f"taylor_sums: rho = r_z r_y = {rho:.3g} needs a degree above the cap MAX_DEGREE = "
                f"{MAX_DEGREE} for tol = {tol:g}; use the dense sums (method='dense')"
            )
    nf = _n_features(p, d)
    if nf > MAX_FEATURES:
        raise ValueError(
            f"taylor_sums: rho = r_z r_y = {rho:.3g}, d = {d} needs degree {p} with {nf} features, above "
            f"the cap MAX_FEATURES = {MAX_FEATURES} for tol = {tol:g}; use the dense sums (method='dense')"
        )
    if _rounding(rho, nf) > tol / 2:
        raise ValueError(
            f"taylor_sums: rho = r_z r_y = {rho:.3g} amplifies round-off by up to e^(2 rho) = "
            f"{math.exp(2 * rho):.3g}, beyond tol = {tol:g}; use method='dense' or a larger tol"
        )
    return p


def _centre(u: np.ndarray) -> tuple[np.ndarray, float]:
    """Bounding-box centre of the rows of ``u`` (n, d) and the radius about it."""
    c = 0.5 * (u.min(axis=0) + u.max(axis=0))
    return c, float(np.sqrt(((u - c) ** 2).sum(axis=1).max()))


def radii(z: np.ndarray, y: np.ndarray) -> float:
    """``rho = r_z r_y``: the product of the radii of queries and keys about their box centres."""
    return _centre(z)[1] * _centre(y)[1]


def _half_width(u: np.ndarray) -> float:
    return float((u.max(axis=0) - u.min(axis=0)).max()) / 2


def _radius(u: np.ndarray) -> float:
    return _centre(u)[1]


def taylor_cost(z: np.ndarray, y: np.ndarray, tol: float, *, k: int | None = None) -> float:
    """Estimated flop-equivalents of :func:`taylor_sums` (inf where it would refuse).

    ``z`` (n, d), ``y`` (m, d); ``k`` value columns (default d, the attention velocity).
    Cost ``5 (n + m) F (2 (k + 1) + 8)`` with ``F = C(p + d, d)``: features and the two skinny
    GEMMs (moments and evaluation), in the units of dense_cost (measured factor 5). Compare with
    :func:`vlasov_tf.kernels.dense_cost`.
    """
    n, d = z.shape
    m = y.shape[0]
    if n == 0 or m == 0:
        return 0.0
    k = d if k is None else k
    # The radius about the box centre is at least half the box's widest side, and a subset's box is
    # inside the whole one: cheap lower bounds of rho that rule sharp kernels out before the radii
    # are computed.
    try:
        few = [a[:: max(1, len(a) // 1024)] for a in (z, y)]
        taylor_degree(_half_width(few[0]) * _half_width(few[1]), d, tol)
        half = [derived(a, "half width", _half_width) for a in (z, y)]
        taylor_degree(half[0] * half[1], d, tol)
        p = taylor_degree(derived(z, "radius", _radius) * derived(y, "radius", _radius), d, tol)
    except ValueError:
        return math.inf
    return float((n + m) * _n_features(p, d) * _TAYLOR_UNIT * (2.0 * (k + 1) + _FEATURE_FLOPS))


@cache
def _multi_indices(p: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Graded multi-indices |a| <= p as a recursion table.

    Returns ``starts`` (p + 2,) offsets of each degree, ``parent`` (F,), ``coord`` (F,) and
    ``scale`` (F,) such that ``phi_a = phi_parent * u[coord] * scale`` with
    ``a = parent + e_coord`` (coord = the last non-zero coordinate of a, so each a has one
    parent) and ``scale = 1 / sqrt(a_coord)``.
    """
    levels = [[(0,) * d]]
    for _ in range(p):
        nxt = []
        for a in levels[-1]:
            last = max((c for c in range(d) if a[c]), default=0)
            for c in range(last, d):  # extend only at or after the last non-zero: unique parents
                b = list(a)
                b[c] += 1
                nxt.append(tuple(b))
        levels.append(nxt)
    index = {a: i for i, a in enumerate(a for lvl in levels for a in lvl)}
    nf = len(index)
    parent = np.zeros(nf, dtype=np.intp)
    coord = np.zeros(nf, dtype=np.intp)
    scale = np.ones(nf)
    for a, i in index.items():
        if i == 0:
            continue
        c = max(c for c in range(d) if a[c])
        b = list(a)
        b[c] -= 1
        parent[i], coord[i], scale[i] = index[tuple(b)], c, 1.0 / math.sqrt(a[c])
    starts = np.cumsum([0] + [len(lvl) for lvl in levels])
    return starts, parent, coord, scale


def _features_t(u: np.ndarray, p: int) -> np.ndarray:
    """``phi_a(u)`` for |a| <= p, transposed: (F, n) with ``phi_a(u) = u^a / sqrt(a!)``.

    Built degree by degree from the parents' rows (contiguous rows, so each degree is one
    row gather and one multiply).
    """
    starts, parent, coord, scale = _multi_indices(p, u.shape[1])
    ut = np.ascontiguousarray(u.T)
    phi = np.empty((len(parent), u.shape[0]))
    phi[0] = 1.0
    for q in range(1, p + 1):
        sl = slice(starts[q], starts[q + 1])
        np.multiply(phi[parent[sl]], ut[coord[sl]], out=phi[sl])
        phi[sl] *= scale[sl, None]
    return phi


def taylor_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as :func:`vlasov_tf.kernels.exp_kernel_sums`, by a truncated Taylor expansion.

    Parameters
    ----------
    z : (n, d) queries; y : (m, d) keys; weights : (m,) >= 0, some > 0;
    values : (m, k) or None (k = 0); tol : error target;
    threads : worker threads over blocks of points (default :func:`~vlasov_tf.kernels.num_threads`).

    Returns
    -------
    shift : (n,), sums : (n, k + 1) with ``S_i = exp(shift_i) sums_i``.

    Error: for every row, ``|normaliser error| <= tol * normaliser`` and
    ``|value column c error| <= tol * normaliser * max_j |v_jc|`` -- the proved truncation bound
    ``e^rho rho^(p+1)/(p+1)! <= tol / 2`` (``rho = r_z r_y``, module docstring) plus an
    estimated round-off budget of ``tol / 2``.

    Raises ValueError where the degree p, the number of features ``C(p + d, d)`` or the
    round-off amplification ``e^(2 rho)`` exceeds its cap (:data:`MAX_DEGREE`,
    :data:`MAX_FEATURES`); the message names which.
    """
    keep = weights > 0
    y, w = y[keep], weights[keep]
    n, d = z.shape
    k = 0 if values is None else values.shape[1]
    vals = np.ones((y.shape[0], k + 1))
    if values is not None:
        vals[:, :k] = values[keep]
    c_z, r_z = _centre(z)
    c_y, r_y = _centre(y)
    rho = r_z * r_y
    p = taylor_degree(rho, d, tol)

    zc, yc = z - c_z, y - c_y
    # exp(<c_z, y'>) goes into the key weights, normalised by their max so that none overflows.
    lw = np.log(w) + yc @ c_z
    top = lw.max()
    wv = np.exp(lw - top)[:, None] * vals
    # Symmetric radii: scaling z' by s and y' by 1/s leaves <z', y'> unchanged and balances
    # the sizes of the two feature matrices (both bounded by e^(rho / 2) in sum).
    s = math.sqrt(r_y / r_z) if r_z > 0 and r_y > 0 else 1.0
    zc *= s
    yc /= s

    nthreads = num_threads() if threads is None else threads

    def run(fn, items):
        return thread_map(fn, items, nthreads)

    # Blocks run on the dense sums' thread pool with BLAS pinned to one thread: the GEMMs are
    # skinny ((F, b) x (b, k + 1)) and OpenBLAS's own threads only spin on them.
    with blas_single_thread():
        parts = run(
            lambda j: _features_t(yc[j : j + _BLOCK], p) @ wv[j : j + _BLOCK], range(0, len(yc), _BLOCK)
        )
        moments = np.sum(parts, axis=0)  # fixed block order: the result does not depend on threads
        sums = np.empty((n, k + 1))

        def evaluate(i: int) -> None:
            sums[i : i + _BLOCK] = _features_t(zc[i : i + _BLOCK], p).T @ moments

        run(evaluate, range(0, n, _BLOCK))
    shift = z @ c_y + top
    return shift, sums
