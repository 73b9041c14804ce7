"""Distances between measures (and between labelled tokens), to compare solvers and depths.

A measure is a weighted point cloud ``(points, weights)`` as in
:mod:`vlasov_tf.geometry.measures`. The distances are Wasserstein distances; the
general ones come from POT (``import ot``).

Design notes: docs/numerics.md §5 (distances).
"""

from __future__ import annotations

import numpy as np
import ot
from scipy.spatial.distance import cdist

from vlasov_tf import memory
from vlasov_tf.geometry.measures import check_points, check_weights, circle_to_angles
from vlasov_tf.memory import BYTES_PER_COST_PAIR, BYTES_PER_OT_PAIR, check_memory

__all__ = [
    "SlicedSphere",
    "coupling_w1",
    "geodesic_cost",
    "geodesic_distance",
    "sliced_wasserstein_sphere",
    "w2_to_dirac",
    "wasserstein",
    "wasserstein_circle",
]

_TWO_PI = 2.0 * np.pi
# Stopping tolerance of POT's bisection on the shift c for p > 1. Far above
# the spacing of doubles near 1 (a tolerance below it would never be met),
# and 1e4 times more accurate than POT's default.
_POT_EPS = 1e-10
# Cost matrices of more pairs than this (32 MB) are checked against the memory available.
_CHECKED_PAIRS = 1_000_000


def wasserstein_circle(
    points_a: np.ndarray,
    weights_a: np.ndarray | None,
    points_b: np.ndarray,
    weights_b: np.ndarray | None,
    p: float = 1,
) -> float:
    """``W_p`` on the unit circle S^1 (geodesic metric, length 2 pi) between two measures.

    With ``mu = sum_i a_i delta_{x_i}`` and ``nu = sum_j b_j delta_{y_j}``
    (each weight vector normalised to total mass 1)::

        W_p(mu, nu)^p = min_{gamma in Pi(mu, nu)} sum_ij gamma_ij d(x_i, y_j)^p,
        d(x, y) = arccos <x, y> in [0, pi]   (arc length).

    On the circle this is one-dimensional. With angles ``theta`` in [0, 2 pi)
    and ``F``, ``G`` the cumulative distribution functions of mu and nu there
    (Delon, Salomon & Sobolevski, SIAM J. Appl. Math. 70 (2010))::

        W_1 = min_c int_0^{2 pi} | F(theta) - G(theta) - c | dtheta,

    the minimum being reached at a median ``c`` of ``F - G`` (for the
    Lebesgue measure on the circle); and for ``p > 1``, on the circle
    rescaled to [0, 1) (``s = theta / (2 pi)``)::

        W_p^p = (2 pi)^p inf_c int_0^1 | F^{-1}(q) - (G - c)^{-1}(q) |^p dq.

    ``p = 1`` is evaluated exactly by the first formula, O((N + M) log(N + M)).
    ``p > 1`` uses ``ot.wasserstein_circle``, which returns the cost ``W_p^p``
    on the circle of length 1; the distance scales linearly with the length,
    so the result is ``2 pi * cost^(1/p)``. Its bisection on ``c`` stops at a
    tolerance, ``eps = 1e-10`` here: relative error below 1e-7 (absolute
    about 1e-9 near ``W_p = 0``, where the p-th root amplifies round-off).
    POT's default 1e-6 gave relative errors up to 5e-4 for p = 3 when the
    optimal ``c`` is an integer, e.g. for two Diracs on either side of angle 0.

    Why ``p = 1`` does not go through POT 0.9.7: ``ot.wasserstein_circle``
    (a) has the bisection error above (0.2000002 instead of 0.2 for Diracs
    at +-0.1 rad) and (b) returns a wrong value, too large by up to a factor
    10, when round-off makes the optimal shift a tiny negative number
    (``c - floor(c)`` rounds to 1; about 0.1 % of random cases with
    non-uniform weights); POT's ``wasserstein1_circle`` drops the arc before
    the first point (0.1 instead of 0.2 for the Diracs above). For ``p > 1``,
    failure (b) gives a cost above the largest possible one, ``(1/2)^p``; it
    is detected and the cost recomputed by the exact linear program
    ``ot.emd2`` (O(N M) memory).

    Parameters
    ----------
    points_a : (N, 2) points on the unit circle (support of mu).
    weights_a : (N,) non-negative weights with a positive total (``None``: uniform).
    points_b : (M, 2) points on the unit circle (support of nu).
    weights_b : (M,) non-negative weights with a positive total (``None``: uniform).
    p : order of the distance, a finite number ``>= 1``.

    Returns
    -------
    ``W_p(mu, nu)`` in radians, in ``[0, pi]``.
    """
    if not (np.isfinite(p) and p >= 1):
        raise ValueError(f"the Wasserstein order p must be a finite number >= 1; got {p}")
    xa = check_points(points_a, name="points_a", dim=2)
    xb = check_points(points_b, name="points_b", dim=2)
    wa = check_weights(weights_a, len(xa), name="weights_a")
    wb = check_weights(weights_b, len(xb), name="weights_b")
    wa, wb = wa / wa.sum(), wb / wb.sum()
    ta, tb = circle_to_angles(xa), circle_to_angles(xb)
    if p == 1:
        return _w1_circle(ta, wa, tb, wb)
    return _wp_circle_pot(ta, wa, tb, wb, float(p))


def _w1_circle(ta: np.ndarray, wa: np.ndarray, tb: np.ndarray, wb: np.ndarray) -> float:
    """Exact W_1 between probability measures on the circle; angles (N,), (M,) in [0, 2 pi)."""
    theta = np.concatenate([ta, tb])
    mass = np.concatenate([wa, -wb])
    order = np.argsort(theta, kind="stable")
    theta, mass = theta[order], mass[order]
    # diff[k] = (F - G) on the arc [theta_k, theta_{k+1}); the last arc wraps
    # past 2 pi to theta_0, where F - G is the total 0, as it is before theta_0.
    diff = np.cumsum(mass)
    arcs = np.diff(np.r_[theta, theta[0] + _TWO_PI])
    # A weighted median of diff (weights: arc lengths) is an optimal c.
    by_value = np.argsort(diff, kind="stable")
    cum = np.cumsum(arcs[by_value])
    c = diff[by_value][min(np.searchsorted(cum, 0.5 * cum[-1]), len(cum) - 1)]
    return float(np.sum(arcs * np.abs(diff - c)))


def _wp_circle_pot(ta: np.ndarray, wa: np.ndarray, tb: np.ndarray, wb: np.ndarray, p: float) -> float:
    """W_p (p > 1) by ``ot.wasserstein_circle``, with the exact LP where POT's answer is impossible."""
    # ``% 1.0``: an angle that rounds to exactly 2 pi must map to 0, not 1.
    sa, sb = (ta / _TWO_PI) % 1.0, (tb / _TWO_PI) % 1.0
    cost = float(np.asarray(ot.wasserstein_circle(sa, sb, wa, wb, p=p, eps=_POT_EPS)).reshape(-1)[0])
    # No two points of the unit-length circle are more than 1/2 apart.
    if not 0.0 <= cost <= 0.5**p * (1 + 1e-9):
        gap = np.abs(sa[:, None] - sb[None, :])
        cost = float(ot.emd2(wa, wb, np.minimum(gap, 1.0 - gap) ** p))
    return _TWO_PI * max(cost, 0.0) ** (1.0 / p)


def geodesic_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Arc length between corresponding rows of (N, d) unit vectors ``a``, ``b``; shape (N,).

    ``atan2(|a ^ b|, <a, b>)`` rather than ``arccos <a, b>``: arccos loses
    half the digits near 0 (an error of 1e-9 would read as 1e-8 or 0).
    """
    dot = np.einsum("ij,ij->i", a, b)
    # The wedge a_i b_j - a_j b_i has Frobenius norm sqrt(2) |a| |b| sin(angle),
    # accurate for small angles, unlike sqrt(1 - <a, b>^2).
    wedge = a[:, :, None] * b[:, None, :] - b[:, :, None] * a[:, None, :]
    return np.arctan2(np.linalg.norm(wedge, axis=(1, 2)) / np.sqrt(2.0), dot)


def geodesic_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, M) arc lengths between unit rows of ``x`` (N, d) and ``y`` (M, d).

    ``2 arcsin(|x - y| / 2)`` with the chord from differences (``cdist``): accurate near 0, where
    ``arccos <x, y>`` loses half the digits and ``|x|^2 + |y|^2 - 2 <x, y>`` cancels.
    Refuses (:class:`~vlasov_tf.memory.TooLarge`) a matrix beyond the machine's memory.
    """
    pairs = len(x) * len(y)
    if pairs > _CHECKED_PAIRS:  # small ones unchecked: this is called in loops, the check reads a file
        check_memory(BYTES_PER_COST_PAIR * pairs, f"geodesic_cost: a {len(x)} x {len(y)} cost matrix")
    return 2.0 * np.arcsin(np.minimum(cdist(x, y) / 2.0, 1.0))


def w2_to_dirac(points: np.ndarray, weights: np.ndarray | None, target: np.ndarray) -> float:
    """Geodesic W2 between ``sum_j w_j delta_{x_j}`` (normalised) and ``delta_y``.

    The only coupling with a Dirac is the product one, so
    ``W2 = sqrt(sum_j w_j dist(x_j, y)^2 / sum_j w_j)`` with the arc length
    ``dist``. ``points`` (n, d) on the sphere, ``weights`` (n,) or None (uniform),
    ``target`` (d,) unit.
    """
    x = check_points(points, name="points")
    w = check_weights(weights, len(x))
    y = np.asarray(target, dtype=float).reshape(1, -1)
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"target must have d = {x.shape[1]} entries; got {y.shape[1]}")
    dist = geodesic_cost(x, y)[:, 0]
    return float(np.sqrt(np.dot(w, dist**2) / w.sum()))


def sliced_wasserstein_sphere(
    points_a: np.ndarray,
    weights_a: np.ndarray | None,
    points_b: np.ndarray,
    weights_b: np.ndarray | None,
    *,
    n_projections: int = 200,
    seed: int = 0,
) -> float:
    """Spherical sliced W1 (Bonet et al. 2023) with a fixed seed: the mean over random 2-planes U
    of W1 on the great circle of the projections ``U^T x / |U^T x|``.

    Same construction as ``ot.sliced_wasserstein_sphere`` but each circle distance is the exact
    one of :func:`wasserstein_circle` (POT's goes through the ``ot.wasserstein_circle`` bisection
    discussed there). Points on S^{d-1}, shapes (N, d), (M, d). It is a different metric from W1:
    compare only values computed the same way (same ``n_projections`` and ``seed``).
    """
    xa = check_points(points_a, name="points_a")
    xb = check_points(points_b, name="points_b", dim=xa.shape[1])
    wa = check_weights(weights_a, len(xa), name="weights_a")
    wb = check_weights(weights_b, len(xb), name="weights_b")
    wa, wb = wa / wa.sum(), wb / wb.sum()
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(n_projections):
        u, _ = np.linalg.qr(rng.standard_normal((xa.shape[1], 2)))  # (d, 2) orthonormal
        pa, pb = xa @ u, xb @ u
        # Points orthogonal to the plane have no projection; they carry measure zero for
        # continuous laws, and atan2(0, 0) = 0 keeps them harmless otherwise.
        ta, tb = (
            np.mod(np.arctan2(pa[:, 1], pa[:, 0]), _TWO_PI),
            np.mod(np.arctan2(pb[:, 1], pb[:, 0]), _TWO_PI),
        )
        total += _w1_circle(ta, wa, tb, wb)
    return total / n_projections


class SlicedSphere:
    """Spherical sliced W1 on fixed great circles, by angular histograms: for large measures.

    The mean over ``n_projections`` random 2-planes ``U`` (seeded, the same for every pair
    compared) of the circle W1 between the projections ``U^T x / |U^T x|`` (as
    :func:`sliced_wasserstein_sphere`), each projected measure binned into ``bins`` equal arcs:
    binning moves every point by at most ``pi / bins``, so each circle W1, and their mean, is
    within :attr:`error_bound` ``= 2 pi / bins`` of the unbinned one. The cost per measure is
    O(n_projections (N + bins)), with no sorting, and a measure's histograms
    (:meth:`histograms`) serve every comparison with it. :meth:`compare` also returns the
    standard error of the mean over the directions (their spread / sqrt(n_projections)): the
    Monte Carlo error of the sliced distance itself. Like every sliced distance it is a
    different metric from W1: compare only values computed with the same settings.
    """

    def __init__(self, d: int = 3, n_projections: int = 64, bins: int = 1 << 16, seed: int = 0) -> None:
        if d < 2 or n_projections < 1 or bins < 2:
            raise ValueError(f"need d >= 2, n_projections >= 1, bins >= 2; got {d}, {n_projections}, {bins}")
        # The histograms of a measure and a comparison's differences: three (n_projections, bins)
        # float arrays.
        check_memory(24.0 * n_projections * bins, f"SlicedSphere: {n_projections} projections x {bins} bins")
        self.d, self.n_projections, self.bins, self.seed = d, n_projections, bins, seed
        rng = np.random.default_rng(seed)
        self.planes = np.stack([np.linalg.qr(rng.standard_normal((d, 2)))[0] for _ in range(n_projections)])

    @property
    def error_bound(self) -> float:
        """Largest difference the binning makes to a projected W1 (both measures binned)."""
        return _TWO_PI / self.bins

    def histograms(self, points: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(n_projections, bins) masses of the normalised measure per arc of each great circle."""
        x = check_points(points, name="points", dim=self.d)
        w = check_weights(weights, len(x))
        w = w / w.sum()
        out = np.empty((self.n_projections, self.bins))
        scale = self.bins / _TWO_PI
        for k, u in enumerate(self.planes):
            p = np.dot(x, u)
            # Angles in [-pi, pi] from bin 0 on (the circle's origin is immaterial to W1); atan2(0, 0)
            # = 0 puts points orthogonal to the plane (measure zero for densities) mid-circle.
            b = ((np.arctan2(p[:, 1], p[:, 0]) + np.pi) * scale).astype(np.int64)
            out[k] = np.bincount(np.minimum(b, self.bins - 1), w, self.bins)
        return out

    def distances(self, hist_a: np.ndarray, hist_b: np.ndarray) -> np.ndarray:
        """(n_projections,) circle W1 between two measures' histograms, one per great circle."""
        diff = np.cumsum(hist_a - hist_b, axis=1)
        # Equal arcs: the weighted median of the CDF difference is its plain median.
        c = np.median(diff, axis=1, keepdims=True)
        return (_TWO_PI / self.bins) * np.abs(diff - c).sum(axis=1)

    def compare(self, hist_a: np.ndarray, hist_b: np.ndarray) -> tuple[float, float]:
        """``(sliced W1, standard error over the directions)`` of two measures' histograms."""
        per = self.distances(hist_a, hist_b)
        spread = float(per.std(ddof=1)) if len(per) > 1 else 0.0
        return float(per.mean()), spread / np.sqrt(len(per))


def coupling_w1(points_a: np.ndarray, points_b: np.ndarray, weights: np.ndarray | None = None) -> float:
    """``sum_i w_i d(a_i, b_i) / sum_i w_i``: the cost of moving each token to its own image.

    An upper bound of W1 between ``sum w_i delta_{a_i}`` and ``sum w_i delta_{b_i}`` (one
    admissible coupling), equal to it when no two tokens are better swapped (displacements
    small against the spacing). For the same tokens through two integrators it is the
    mean displacement, at cost O(N) where exact W1 is O(N^3).
    """
    a = check_points(points_a, name="points_a")
    b = check_points(points_b, name="points_b", dim=a.shape[1])
    if a.shape != b.shape:
        raise ValueError(f"points_a and points_b must have the same shape; got {a.shape}, {b.shape}")
    w = check_weights(weights, len(a))
    return float(np.dot(w, geodesic_distance(a, b)) / w.sum())


def wasserstein(
    points_a: np.ndarray,
    weights_a: np.ndarray | None,
    points_b: np.ndarray,
    weights_b: np.ndarray | None,
    *,
    geometry: str,
    method: str = "auto",
    max_pairs: float = 4e7,
    n_projections: int = 200,
    seed: int = 0,
) -> tuple[float, str]:
    """W1 between two weighted point clouds; returns ``(distance, method used)``.

    geometry ``"circle"``: exact (:func:`wasserstein_circle`). ``"sphere"``: exact optimal
    transport (``ot.emd2``) with the geodesic cost while ``N M <= max_pairs`` (the cost matrix
    takes 8 N M bytes), else :func:`sliced_wasserstein_sphere`. ``"euclidean"``: ``ot.emd2``
    with the Euclidean cost, else POT's sliced distance. ``method`` forces ``"exact"`` or
    ``"sliced"``. Both sides always use the same ground metric. ``"auto"`` also takes the sliced
    distance when exact transport would need more memory than is available (about 96 B a pair);
    a forced ``"exact"`` is then refused (:class:`~vlasov_tf.memory.TooLarge`, naming N and M).
    """
    if geometry not in ("circle", "sphere", "euclidean"):
        raise ValueError(f"unknown geometry {geometry!r}; choose circle, sphere or euclidean")
    if method not in ("auto", "exact", "sliced"):
        raise ValueError(f"unknown method {method!r}; choose auto, exact or sliced")
    if geometry == "circle":
        return wasserstein_circle(points_a, weights_a, points_b, weights_b), "exact"
    sphere = geometry == "sphere"
    xa = check_points(points_a, name="points_a", sphere=sphere)
    xb = check_points(points_b, name="points_b", dim=xa.shape[1], sphere=sphere)
    wa = check_weights(weights_a, len(xa), name="weights_a")
    wb = check_weights(weights_b, len(xb), name="weights_b")
    wa, wb = wa / wa.sum(), wb / wb.sum()
    pairs = len(xa) * len(xb)
    need = BYTES_PER_OT_PAIR * pairs
    available = memory.available_memory() if pairs > _CHECKED_PAIRS else 0
    if method == "exact" and available:
        check_memory(need, f"exact W1 between {len(xa)} and {len(xb)} atoms ({pairs} pairs)",
                     hint="; method='sliced' needs no cost matrix")  # fmt: skip
    fits = not available or need <= available
    exact = method == "exact" or (method == "auto" and pairs <= max_pairs and fits)
    if not exact:
        if sphere:
            return sliced_wasserstein_sphere(xa, wa, xb, wb, n_projections=n_projections, seed=seed), "sliced"
        value = ot.sliced_wasserstein_distance(xa, xb, wa, wb, n_projections=n_projections, p=1, seed=seed)
        return float(value), "sliced"
    cost = geodesic_cost(xa, xb) if sphere else cdist(xa, xb)
    value, log = ot.emd2(wa, wb, cost, numItermax=10_000_000, log=True)
    if log.get("warning"):
        raise RuntimeError(f"exact optimal transport did not converge: {log['warning']}")
    return float(value), "exact"
