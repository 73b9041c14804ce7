"""Spectral kernel sums on S^1 and S^2 for any score matrix, with a per-row error bound.

For keys ``y_j`` on the unit sphere (d = 2: the circle, d = 3: S^2) and a query
``z = r u`` (``r = |z|``, ``u`` a unit vector)::

    exp(<z, y>) = e^r sum_l g_l(r) P_l(<u, y>)

with the radial factors ``g_l >= 0``, ``sum_l g_l(r) = 1`` and basis functions bounded
by 1 (:class:`~vlasov_tf.kernels.sphere.Sphere`: Funk-Hecke, ``(2l + 1) i_l(r)
e^{-r}`` and Legendre polynomials; :class:`~vlasov_tf.kernels.circle.Circle`:
``I_k(r) e^{-r}`` and ``e^{ik(.)}``). The sums::

    S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1] = exp(shift_i) sums_i,   shift_i = r_i + log sum_j w_j,

are then one *analysis* of the measure (coefficients of ``wv_j = w_j [v_j, 1] / sum w``,
ducc0 or finufft), the radial factors of each query, and a *synthesis* at the query
directions ``u_i``: O(L^2 log L + n + m) instead of O(n m).

Zonal heads (``B = s R``, ``R`` orthogonal; Q = K = I among them) have one radius
``r_i = s``: one synthesis. For a general ``B`` the radius ``|B x|`` varies over
``[sigma_min(B), sigma_max(B)]``; the queries are put in radial bins of a fixed lattice
(``[0, 1]``, then ratio ``_BIN_RATIO``) and within a bin the ``g_l(r)`` are interpolated
in ``r`` at ``K`` Chebyshev points: one synthesis per node, combined per query by the
barycentric formula. ``K`` is the least for which the interpolation error, summed over
the degrees, is below ``_INTERP_TOL``.

Error. Every row ``i`` (relative to ``e^{r_i} sum w``, per column ``c``)::

    |sums_ic - exact_ic| <= (tail_L(r) + interp) T_c + noise_c,
    tail_L(r) = sum_{l > L} mult_l g_l(r)          (proved: |P_l| <= 1, g_l >= 0),
    interp    = sum_l mult_l max_bin |g_l - p_l|   (measured on 256 points per bin, doubled),
    noise_c   = _NOISE eps_nufft Lambda_K max_nodes sum_l g_l(r_k) N_lc + 2 sqrt(L + 1) eps T_c,

with ``T_c = sum_j |wv_jc|``, ``N_lc`` a bound of degree ``l`` of the synthesised function
(``degree_norms``), ``Lambda_K`` the Lebesgue constant of the interpolation and
``eps_nufft`` the accuracy asked of the library. The degree ``L`` brings the tail under
``_TAIL_TOL`` (round-off level), so the noise term dominates; it is an estimate: the actual
error stayed between 0.002 and 0.2 of it over uniform, clustered, point-mass and two-point
measures, zonal and general heads, beta = 0.1 to 1000 (tests/test_spectral.py checks a
margin of at least 2). The error is absolute while a row's normaliser can be as small
as ``e^{-2 r} sum w`` (all mass opposite the query): rows whose normaliser the error could
spoil beyond ``tol`` are summed over the keys that can matter to them (the *fix-up*,
:mod:`~vlasov_tf.kernels.pruned`), so every row ends within ``tol`` of the dense sum relative
to its normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .cache import derived, frozen
from .circle import Circle
from .dense import exp_kernel_sums
from .distributed import Distributed
from .pruned import pruned_sums, split_pruned_sums
from .row_tolerance import RowBudget, rows_to_fix, value_bound
from .sphere import Sphere

__all__ = [
    "GEOMETRIES",
    "RadialBin",
    "Scales",
    "fixup_share",
    "local_scales",
    "radial_bins",
    "spectral_approximation",
    "spectral_cost",
    "spectral_sums",
    "tail_degree",
]

Geometry = type[Circle] | type[Sphere]
GEOMETRIES: dict[int, Geometry] = {2: Circle, 3: Sphere}
# The caches below are keyed by the geometry's dimension d, not its class: the classes are hashable
# but mypy does not see a union of them as Hashable (python/mypy#11470).

#: Truncation tail per unit weight (relative to e^r) that fixes the degree: below round-off.
_TAIL_TOL = 1e-17
#: Radial interpolation error per unit weight that fixes the number of Chebyshev nodes of a bin.
_INTERP_TOL = 1e-13
#: Factor on eps_nufft times the synthesised function's bound: the library's error (see above).
_NOISE = 5.0
#: Radial bins: [0, _BIN_START], then [_BIN_START q^(j-1), _BIN_START q^j] with q = _BIN_RATIO.
_BIN_START = 1.0
_BIN_RATIO = 2.0**0.5
#: Samples per bin on which the interpolation error is measured.
_CHECK_POINTS = 256
#: Largest degree used (the dense sums are far cheaper long before: L ~ 2700 at r = 1e5).
MAX_DEGREE = 6000
#: Rows sampled by :func:`fixup_share` (summed densely over all keys: FIXUP_SAMPLE / n of the dense sums).
FIXUP_SAMPLE = 32
#: The expansion's typical error per unit weight, relative to ``e^r``, in units of the library's
#: accuracy: measured 0.8 to 3 of ``eps_nufft`` (sphere levels 2 grids, beta 1 to 100).
_TYPICAL_ERROR = 2.0
#: Keys must lie on the sphere to this, relative to 1 / max(r, 1): a key off by delta changes its
#: kernel by a factor exp(r delta).
UNIT_RTOL = 1e-12


@lru_cache(maxsize=256)
def _tails(d: int, r: float) -> np.ndarray:
    """``tail[L] = sum_{l > L} mult_l g_l(r)`` for L = 0.. while the terms exceed 1e-32 (read-only), in
    dimension ``d``."""
    geometry = GEOMETRIES[d]
    top = int(r + 12 * np.sqrt(r) + 60)
    while True:
        g = geometry.radial(r, top) * geometry.multiplicity(top)
        if g[-1] < 1e-32 or top > 4 * MAX_DEGREE:
            break
        top *= 2
    tails = np.r_[np.cumsum(g[::-1])[::-1][1:], 0.0]
    tails.flags.writeable = False
    return tails


def tail_degree(geometry: Geometry, r: float, tol: float = _TAIL_TOL) -> int:
    """Least degree ``L`` with ``sum_{l > L} mult_l g_l(r) <= tol``; ValueError above MAX_DEGREE."""
    tails = _tails(geometry.d, float(r))
    ok = tails <= tol
    degree = int(np.argmax(ok)) if ok.any() else len(tails)
    if degree > MAX_DEGREE:
        raise ValueError(f"scale {r:.4g} needs degree {degree} > {MAX_DEGREE}: use the dense sums")
    return degree


@dataclass(frozen=True)
class RadialBin:
    """Radii ``[lo, hi]`` served by ``K`` Chebyshev nodes and one truncation degree.

    ``nodes`` (K,), ``bary`` (K,) barycentric weights, ``degree`` L, ``error`` the bound
    ``max_r tail_L(r) + interp`` per unit weight, ``lebesgue`` the interpolation's
    Lebesgue constant (bounds how node errors add up).
    """

    lo: float
    hi: float
    nodes: np.ndarray
    bary: np.ndarray
    degree: int
    error: float
    lebesgue: float

    def weights(self, r: np.ndarray) -> np.ndarray:
        """(n, K) barycentric interpolation weights at radii ``r`` (n,): ``p(r) = W @ values``."""
        if len(self.nodes) == 1:
            return np.ones((len(r), 1))
        diff = r[:, None] - self.nodes[None, :]
        exact = diff == 0
        hit = exact.any(axis=1)
        q = exact.astype(float)  # rows on a node take that node's value
        q[~hit] = self.bary / diff[~hit]
        q[~hit] /= q[~hit].sum(axis=1, keepdims=True)
        return q

    def factors(self, geometry: Geometry) -> np.ndarray:
        """(K, L + 1): ``g_l`` at the nodes."""
        return np.array([geometry.radial(r, self.degree) for r in self.nodes])


def _chebyshev(lo: float, hi: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Chebyshev points of the second kind on [lo, hi] and their barycentric weights."""
    j = np.arange(k)
    x = np.cos(np.pi * j / (k - 1))[::-1]
    bary = (-1.0) ** j
    bary[[0, -1]] *= 0.5
    return lo + (hi - lo) * (x + 1) / 2, bary


@lru_cache(maxsize=512)
def _lattice_bin(d: int, j: int) -> RadialBin:
    """Lattice bin ``j`` in dimension ``d``: ``[0, _BIN_START]`` for j = 0, then ratio ``_BIN_RATIO``."""
    geometry = GEOMETRIES[d]
    lo = 0.0 if j == 0 else _BIN_START * _BIN_RATIO ** (j - 1)
    hi = _BIN_START * _BIN_RATIO**j
    degree = tail_degree(geometry, hi)
    mult = geometry.multiplicity(degree)
    check = lo + (hi - lo) * (0.5 - 0.5 * np.cos(np.pi * (np.arange(_CHECK_POINTS) + 0.5) / _CHECK_POINTS))
    exact = np.array([geometry.radial(r, degree) for r in check])  # (P, L + 1)
    tail = max(float(_tails(d, float(r))[degree]) for r in (lo, hi, *check[:: _CHECK_POINTS // 8]))
    for k in range(3, 65):
        nodes, bary = _chebyshev(lo, hi, k)
        trial = RadialBin(lo, hi, nodes, bary, degree, 0.0, 1.0)
        approx = trial.weights(check) @ trial.factors(geometry)
        interp = 2.0 * float((np.abs(approx - exact).max(axis=0) * mult).sum())
        if interp <= _INTERP_TOL:
            lebesgue = 2.0 / np.pi * np.log(k - 1) + 1.0  # bound for Chebyshev points of the 2nd kind
            return RadialBin(lo, hi, nodes, bary, degree, tail + interp, lebesgue)
    raise RuntimeError(f"radial interpolation on [{lo}, {hi}] did not reach {_INTERP_TOL}")


def _lattice_index(r: np.ndarray) -> np.ndarray:
    """Lattice bin of each radius (bins are closed: a radius on an edge takes the lower bin)."""
    with np.errstate(divide="ignore"):
        j = np.ceil(np.log(np.maximum(r, 1e-300) / _BIN_START) / np.log(_BIN_RATIO) - 1e-12).astype(int)
    return np.maximum(j, 0)


@dataclass(frozen=True)
class Scales:
    """Global facts the method needs (the same on every rank of a split measure).

    ``lo``, ``hi``: smallest and largest query radius ``|z_i|``; ``n``, ``m``: numbers of
    queries and keys with positive weight.
    """

    lo: float
    hi: float
    n: int
    m: int


def radial_bins(geometry: Geometry, scales: Scales, tol: float) -> list[RadialBin]:
    """The bins serving radii in ``[scales.lo, scales.hi]``: one node when the radii agree to
    ``tol / 20`` (zonal heads), else the lattice bins that meet the range."""
    lo, hi = scales.lo, scales.hi
    if 2.0 * (hi - lo) <= 0.1 * tol:
        r = 0.5 * (lo + hi)
        degree = tail_degree(geometry, r)
        # Radii off the node by delta change each term by exp(delta (<u, y> - 1)): relative 2 delta,
        # well below tol here; it enters the error as a relative term (spectral_approximation).
        tail = float(_tails(geometry.d, r)[degree])
        return [RadialBin(lo, hi, np.array([r]), np.ones(1), degree, tail, 1.0)]
    j_lo, j_hi = _lattice_index(np.array([lo, hi]))
    return [_lattice_bin(geometry.d, j) for j in range(j_lo, j_hi + 1)]


def spectral_cost(geometry: Geometry, scales: Scales, cols: int, tol: float = 1e-10) -> float:
    """Estimated cost of :func:`spectral_sums` in dense-cost units (inf where it does not apply).

    The analysis of the ``m`` keys and, per radial bin, the synthesis of every node (rows
    counted as if all were in the bin with the most nodes), each with the library calls' fixed
    costs (:meth:`Sphere.analysis_cost <vlasov_tf.kernels.sphere.Sphere.analysis_cost>` and
    ``synthesis_cost``). Not included: the dense fix-up of rows with tiny normalisers (none for
    spread measures; up to all rows far from concentrated mass at large beta).
    """
    try:
        bins = radial_bins(geometry, scales, tol)
    except ValueError:
        return float("inf")
    degree = max(b.degree for b in bins)
    k_rows = max(len(b.nodes) for b in bins)
    cost = geometry.analysis_cost(scales.m, cols, degree)
    cost += sum(geometry.synthesis_cost(0, len(b.nodes), cols, b.degree) for b in bins)
    cost += geometry.synthesis_cost(scales.n, k_rows, cols, degree) - geometry.synthesis_cost(
        0, k_rows, cols, degree
    )
    return float(cost)


def fixup_share(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    tol: float = 1e-10,
    *,
    split: Distributed | None = None,
    row_tol: np.ndarray | None = None,
) -> float:
    """Estimated share of the rows :func:`spectral_sums` leaves to the fix-up (for the method choice).

    A row needs the fix-up where ``eps e^{rho}`` exceeds ``tol``, ``rho = r + log sum w - log S`` the
    log of its normaliser's smallness (``eps = _TYPICAL_ERROR eps_nufft``). ``rho`` is computed
    exactly at up to :data:`FIXUP_SAMPLE` evenly spaced rows (dense over all keys). Under ``split``
    every rank samples its own rows (a collective call: the ring and one all-reduce). ``row_tol``
    (n,): per-row tolerances (:mod:`~vlasov_tf.kernels.row_tolerance`), each row's own in place of
    ``tol``; the rows of ``inf`` never take the fix-up, the sample is drawn from the others, and
    the share is of all rows.
    """
    geometry = GEOMETRIES[z.shape[1]]
    strict = np.arange(len(z)) if row_tol is None else np.flatnonzero(np.isfinite(row_tol))
    rows = strict[np.unique(np.linspace(0, len(strict) - 1, min(FIXUP_SAMPLE, len(strict))).astype(int))]
    sample = z[rows]
    if split is None:
        shift, sums = exp_kernel_sums(sample, y, weights)
        total = float(weights.sum())
    else:
        shift, sums = split.dense(sample, y, weights, None)
        total = float(split.allreduce(np.array([weights.sum()]))[0])
    rho = np.linalg.norm(sample, axis=1) + np.log(total) - shift - np.log(sums[:, -1])
    asked = tol if row_tol is None else row_tol[rows]
    fixed = np.count_nonzero(_TYPICAL_ERROR * geometry.nufft_eps * np.exp(rho) > asked)
    if row_tol is None:
        counts = np.array([fixed, len(rows)], dtype=float)
    else:
        # Each rank's sample stands for its strict rows: the share of all rows, over the ranks.
        counts = np.array([fixed * len(strict) / max(len(rows), 1), len(z)], dtype=float)
    if split is not None:
        counts = split.allreduce(counts)
    return float(counts[0] / counts[1]) if counts[1] else 0.0


def _directions(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radii (n,) and unit directions (n, d) of the queries (any direction where r = 0), read-only."""
    r = np.linalg.norm(z, axis=1)
    u = np.zeros_like(z)
    u[:, -1] = 1.0
    pos = r > 0
    u[pos] = z[pos] / r[pos, None]
    return frozen(r), frozen(u)


def _radius_range(z: np.ndarray) -> tuple[float, float]:
    r = derived(z, "directions", _directions)[0]
    return (float(r.min()), float(r.max())) if len(r) else (np.inf, -np.inf)


def local_scales(z: np.ndarray, weights: np.ndarray) -> Scales:
    """:class:`Scales` of one process's queries and keys."""
    lo, hi = derived(z, "radius range", _radius_range)
    return Scales(lo, hi, len(z), int(np.count_nonzero(weights > 0)))


def _rows_by_bin(r: np.ndarray) -> dict[int, np.ndarray]:
    """The rows of each lattice bin (:func:`_lattice_index`)."""
    if len(r) == 0:
        return {}
    which = _lattice_index(r)
    order = np.argsort(which, kind="stable")
    bins, starts = np.unique(which[order], return_index=True)
    return dict(zip(bins.tolist(), np.split(order, starts[1:]), strict=True))


def spectral_approximation(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
    split: Distributed | None = None,
    scales: Scales | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The expansion without the fix-up: ``(shift (n,), sums (n, k + 1), error (n,))``.

    ``error_i`` bounds ``max_c |sums_ic - exact_ic|`` (exact: ``exp(-shift_i) S_ic``), per the
    module docstring; arguments as :func:`spectral_sums`.
    """
    geometry = GEOMETRIES[z.shape[1]]
    n = len(z)
    k1 = 1 if values is None else values.shape[1] + 1
    if scales is None:
        scales = local_scales(z, weights)
    if scales.n == 0:  # no query anywhere (on every rank: scales are global under split)
        return np.zeros(0), np.zeros((0, k1)), np.zeros(0)
    bins = radial_bins(geometry, scales, tol)
    degree = max(b.degree for b in bins)

    wv = weights[:, None] * (np.ones((len(y), 1)) if values is None else np.c_[values, np.ones(len(y))])
    coef = geometry.analysis(derived(y, "locate", geometry.locate), wv, degree, threads)
    totals = np.abs(wv).sum(axis=0)
    total = float(weights.sum())
    if split is not None:  # one all-reduce: coefficients (as real numbers), |wv| totals, total weight
        packed = split.allreduce(np.r_[coef.view(float).ravel(), totals, total])
        coef = packed[: 2 * coef.size].view(complex).reshape(coef.shape)
        totals, total = packed[2 * coef.size : -1], float(packed[-1])
    coef = coef / total
    totals = totals / total
    norms = geometry.degree_norms(coef)  # (cols, L + 1)

    if n == 0:  # this rank has no queries: it took part in the all-reduce, nothing to synthesise
        return np.zeros(0), np.zeros((0, k1)), np.zeros(0)
    r, u = derived(z, "directions", _directions)
    loc = derived(u, "locate", geometry.locate)
    shift = r + np.log(total)
    sums = np.full((n, k1), np.nan)
    err = np.full(n, np.nan)
    if len(bins) == 1:
        groups = {0: np.arange(n)}
    else:
        groups = derived(r, "rows by bin", _rows_by_bin)
    first = int(_lattice_index(np.array([scales.lo]))[0]) if len(bins) > 1 else 0
    eps = np.finfo(float).eps
    for b, rb in enumerate(bins):
        rows = groups.get(first + b)
        if rows is None or rows.size == 0:
            continue
        factors = rb.factors(geometry)  # (K, L_b + 1)
        vals = geometry.synthesis(coef, factors, loc[rows], threads)  # (n_b, K, cols)
        sums[rows] = np.einsum("nk,nkc->nc", rb.weights(r[rows]), vals)
        bound = (factors[:, None, :] * norms[None, :, : rb.degree + 1]).sum(axis=2).max(axis=0)  # (cols,)
        noise = _NOISE * geometry.nufft_eps * rb.lebesgue * bound + 2 * np.sqrt(rb.degree + 1) * eps * totals
        err[rows] = float((rb.error * totals + noise).max())
    if np.isnan(err).any():
        raise RuntimeError("spectral sums: query radii outside the bins of the given scales")
    if len(bins) == 1 and len(bins[0].nodes) == 1:
        # One node for radii that differ by delta: each term off by a factor up to exp(2 delta), so
        # column c by at most 2 delta max_j |v_jc| times the normaliser (radial_bins).
        vmax = 1.0 if values is None or not len(values) else max(1.0, float(np.abs(values).max()))
        err += 2.0 * (scales.hi - scales.lo) * vmax * np.abs(sums[:, -1])
    return shift, sums, err


def spectral_sums(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    threads: int | None = None,
    split: Distributed | None = None,
    scales: Scales | None = None,
    row_tol: np.ndarray | RowBudget | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled sums ``S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1] = exp(shift_i) sums_i`` (module docstring).

    Parameters
    ----------
    z : (n, d) queries, any norms, d = 2 or 3.
    y : (m, d) keys on the unit sphere (to ``UNIT_RTOL / max(r, 1)``; not checked here).
    weights : (m,) >= 0 with a positive total (over all ranks of ``split``).
    values : (m, k) or None.
    tol : every row within ``tol`` of the dense sum, relative to its normaliser
        (``max_c |error_ic| <= tol * normaliser_i``).
    threads : threads of the library transforms (default :func:`~vlasov_tf.kernels.threads.num_threads`).
    split : the measure is split across MPI ranks (``y``, ``weights``, ``values`` this rank's
        block): the coefficients are summed over the ranks with one all-reduce and the fix-up
        rows are gathered and summed over every rank's keys
        (:func:`~vlasov_tf.kernels.pruned.split_pruned_sums`). Every rank must call.
    scales : global :class:`Scales` (computed here from the local data when None; under
        ``split`` they must be the global ones).
    row_tol : (n,) per-row tolerances ``>= tol`` (:mod:`~vlasov_tf.kernels.row_tolerance`): row
        ``i`` within ``row_tol[i]``; rows of ``inf`` that the expansion cannot serve keep its value,
        clipped, instead of the fix-up (the fix-up sums the others within ``tol``); a
        :class:`~vlasov_tf.kernels.row_tolerance.RowBudget`: the tolerances it allocates from this
        expansion's error bounds (under ``split`` one more all-reduce).

    Returns ``shift`` (n,) and ``sums`` (n, k + 1), as :func:`~vlasov_tf.kernels.dense.exp_kernel_sums`.
    """
    shift, sums, err = spectral_approximation(
        z, y, weights, values, tol=tol, threads=threads, split=split, scales=scales
    )
    if row_tol is None:
        bad = np.flatnonzero(~(sums[:, -1] >= err / tol))
    else:
        bad = np.flatnonzero(rows_to_fix(sums, err, tol, row_tol, value_bound(weights, values, split), split))
    # The rows the expansion cannot serve: summed over the keys that can matter to them (pruned).
    if split is not None:
        shift[bad], sums[bad] = split_pruned_sums(z[bad], y, weights, values, split, tol=tol, threads=threads)
    elif bad.size:
        shift[bad], sums[bad] = pruned_sums(z[bad], y, weights, values, tol=tol, threads=threads)
    return shift, sums
