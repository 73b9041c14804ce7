"""Clusters of a measure at a stated scale, the same definition for tokens and grids; merges and
plateaus over time.

A measure ``mu = sum_i m_i delta_{x_i}`` (tokens: positions and weights; a grid: its cell masses
at its cell centres) has, at linking distance ``r`` (:func:`linking_distance`: a multiple of the
kernel width ``beta^{-1/2}``, the scale of ``exp(beta <x, y>) = e^beta exp(-beta |x - y|^2 / 2)``),
the clusters found by :func:`find_clusters`:

1. trim: the points of lowest local density holding a fraction ``trim`` of the mass are left out
   (a grid: its cell densities ``m_c / |c|``, so the exponentially thin tails around a collapsed
   cluster do not join it to its neighbours; tokens: the kernel density at width ``r``, so
   stray tokens between clusters do not chain them);
2. link: the remaining points, single linkage in geodesic distance (Euclidean in R^d) at ``r``
   (the connected components of the graph "closer than r"; scipy's k-d tree and csgraph);
3. keep: the components of mass at least ``min_mass`` are the clusters (the rest is unclustered).

Each cluster has its mass (a fraction of the measure's total), its centre (the mass-weighted mean,
normalised on the sphere) and its spread (the mass-weighted RMS geodesic distance to the centre).
A grid resolves this only when its cells are smaller than ``r``.

Over time (:func:`merges`): the clusters at one output time are matched to those at the next, each
to the nearest centre; a cluster reached by two or more is a merge at that time. :func:`plateaus`
are the maximal intervals of constant count, with their durations: the metastable states.

Two clusters of equal mass an angle theta apart (Q = K = V = I, SA) move like two point masses:
``d theta / dt = -2 sin theta / (1 + exp(beta (1 - cos theta)))`` (:func:`two_cluster_merge_time`
integrates it), so their lifetime grows like ``exp(beta (1 - cos theta_0))``.

Design notes: docs/numerics.md §6 (clusters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree

from vlasov_tf.kernels import kernel_sums

__all__ = [
    "MIN_MASS",
    "MIN_MIN_MASS",
    "SCALE",
    "TRIM",
    "Clusters",
    "Merge",
    "find_clusters",
    "linking_distance",
    "merges",
    "plateaus",
    "two_cluster_merge_time",
]

#: Default linking distance in kernel widths beta^{-1/2}.
SCALE = 1.0
#: Default smallest cluster mass (a fraction of the total).
MIN_MASS = 0.01
#: Default fraction of the mass, the lowest local densities, left out before linking.
TRIM = 0.01
#: The smallest ``min_mass`` allowed: at most 10^4 clusters (a run file lays a row out for each).
MIN_MIN_MASS = 1e-4
_RTOL = 1e-12


@dataclass(frozen=True)
class Clusters:
    """The clusters of one measure, heaviest first: ``masses`` (K,) fractions of the total,
    ``centres`` (K, d), ``spreads`` (K,) RMS geodesic distances to the centre; ``unclustered``:
    the mass fraction in no cluster."""

    masses: np.ndarray
    centres: np.ndarray
    spreads: np.ndarray
    unclustered: float

    @property
    def count(self) -> int:
        return len(self.masses)

    def table(self, rows: int) -> np.ndarray:
        """(rows, d + 2) [mass, spread, centre...] per cluster, NaN below the last (run files)."""
        out = np.full((rows, self.centres.shape[1] + 2), np.nan)
        k = min(rows, self.count)
        out[:k, 0], out[:k, 1], out[:k, 2:] = self.masses[:k], self.spreads[:k], self.centres[:k]
        return out

    @classmethod
    def from_table(cls, table: np.ndarray) -> Clusters:
        """Inverse of :meth:`table` (``unclustered`` from the masses)."""
        rows = table[np.isfinite(table[:, 0])]
        return cls(rows[:, 0], rows[:, 2:], rows[:, 1], float(1.0 - rows[:, 0].sum()))


def linking_distance(beta: float, scale: float = SCALE) -> float:
    """``scale * beta^{-1/2}`` (at most pi): the distance at which :func:`find_clusters` links."""
    if not (beta > 0 and scale > 0):
        raise ValueError(f"beta and scale must be > 0; got beta = {beta}, scale = {scale}")
    return min(scale / math.sqrt(beta), math.pi)


def _geodesic(a: np.ndarray, b: np.ndarray, sphere: bool) -> np.ndarray:
    if not sphere:
        return np.linalg.norm(a - b, axis=-1)
    # 2 asin(|a - b| / 2): accurate for small angles, unlike arccos <a, b>.
    return 2.0 * np.arcsin(np.clip(np.linalg.norm(a - b, axis=-1) / 2.0, 0.0, 1.0))


def find_clusters(
    points: np.ndarray,
    masses: np.ndarray | None,
    radius: float,
    *,
    density: np.ndarray | None = None,
    trim: float = TRIM,
    min_mass: float = MIN_MASS,
    sphere: bool = True,
) -> tuple[Clusters, np.ndarray]:
    """The clusters of ``sum_i masses_i delta_{points_i}`` at linking distance ``radius`` (module
    docstring), and the (n,) cluster index of every point (-1: in none).

    ``points`` (n, d) (unit vectors when ``sphere``), ``masses`` (n,) >= 0 (None: equal);
    ``density`` (n,) >= 0: the local density that orders the trimming (a grid passes ``m_c / |c|``;
    default, for tokens: the kernel density at width ``radius``, see :func:`_log_density`).
    """
    x = np.asarray(points, dtype=np.float64)
    n = len(x)
    m = np.full(n, 1.0 / max(n, 1)) if masses is None else np.asarray(masses, dtype=np.float64)
    if x.ndim != 2 or m.shape != (n,) or n == 0:
        raise ValueError(f"points must be (n, d) and masses (n,), n >= 1; got {x.shape}, {m.shape}")
    if not (np.isfinite(m).all() and (m >= 0).all() and m.sum() > 0):
        raise ValueError("masses must be finite, >= 0, with a positive total")
    if not (0 <= trim < 1 and MIN_MIN_MASS <= min_mass <= 1 and radius > 0):
        raise ValueError(f"need 0 <= trim < 1, {MIN_MIN_MASS:g} <= min_mass <= 1, radius > 0"
                         f"; got {trim}, {min_mass}, {radius}")
    m = m / m.sum()
    # On the sphere geodesic < r is chord < 2 sin(r / 2): distances are taken in R^d.
    chord = 2.0 * math.sin(min(radius, math.pi) / 2.0) if sphere else radius
    if density is None:
        log_density = _log_density(x, m, radius, sphere)
    else:
        with np.errstate(divide="ignore"):
            log_density = np.log(np.maximum(np.asarray(density, dtype=np.float64), 0.0))
    order = np.argsort(log_density, kind="stable")
    # Relative tolerances: N masses of 1/N sum to trim = k/N up to round-off (either way).
    cut = int(np.searchsorted(np.cumsum(m[order]), trim * (1 + _RTOL), side="right"))
    # Points as dense as the first one kept stay too (to round-off): a collapsed cluster or a
    # uniform measure loses nothing to ties.
    keep = log_density >= log_density[order[min(cut, n - 1)]] - 1e-9 if cut else np.ones(n, dtype=bool)
    kept = np.flatnonzero(keep)
    edges = kept[_close_pairs(x[kept], chord, sphere)]
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    component[~keep] = -1
    mass_of = np.bincount(component[keep], weights=m[keep], minlength=component.max() + 1)
    big = np.flatnonzero(mass_of >= min_mass * (1 - _RTOL))
    big = big[np.argsort(-mass_of[big], kind="stable")]
    label = np.full(component.max() + 2, -1)
    label[big] = np.arange(len(big))
    labels = label[component]  # component -1 reads label[-1] = -1
    masses_k = mass_of[big]
    centres = np.zeros((len(big), x.shape[1]))
    np.add.at(centres, labels[labels >= 0], m[labels >= 0, None] * x[labels >= 0])
    centres /= masses_k[:, None]
    if sphere:
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    inside = labels >= 0
    dist = _geodesic(x[inside], centres[labels[inside]], sphere)
    spreads = np.sqrt(np.bincount(labels[inside], weights=m[inside] * dist**2, minlength=len(big)) / masses_k)
    return Clusters(masses_k, centres, spreads, float(1.0 - masses_k.sum())), labels


def _log_density(x: np.ndarray, m: np.ndarray, radius: float, sphere: bool) -> np.ndarray:
    """The log of each token's kernel density at width r, ``sum_j m_j exp(-|x_i - x_j|^2 / (2 r^2))``
    up to a constant: on the sphere ``exp(<x_i, x_j> / r^2)``, the attention kernel's own
    smoothing at beta = r^-2 (fast kernel sums)."""
    if sphere:
        shift, sums = kernel_sums(x / radius**2, x, m)
        return shift + np.log(sums[:, -1])
    # R^d: the Gaussian summed over the neighbours within 8 r (exp(-32) of the rest is below the
    # round-off of a point's own term), in the differences: nothing depends on the origin.
    tree = cKDTree(x)
    near = tree.sparse_distance_matrix(tree, 8.0 * radius, output_type="coo_matrix")
    terms = np.exp(-(near.data**2) / (2 * radius**2)) * m[near.col]
    out = m.copy()  # each point's own term (distance 0 is not stored)
    np.add.at(out, near.row, np.where(near.row != near.col, terms, 0.0))
    return np.log(out)


def _close_pairs(x: np.ndarray, chord: float, sphere: bool) -> np.ndarray:
    """(E, 2) index pairs closer than ``chord`` whose connected components are those of all such
    pairs (single linkage). On S^1 and S^2 only the Delaunay neighbours (the sorted angles; the
    convex hull's edges), which hold the minimum spanning tree: O(n log n) where all pairs within
    r of a fine grid are ~n (r / h)^2."""
    n, d = x.shape
    if n < 2:
        return np.zeros((0, 2), dtype=np.intp)
    if sphere and d == 2:
        order = np.argsort(np.arctan2(x[:, 1], x[:, 0]), kind="stable")
        pairs = np.c_[order, np.roll(order, -1)]
    elif sphere and d == 3 and n >= 5:
        # Copies of one point (collapsed tokens) are one hull vertex: link each to its first copy.
        unique, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
        copies = np.c_[np.arange(n), first[inverse.ravel()]]
        try:
            # "Qc Qi": points on a facet's plane (near-duplicates) are listed with their nearest vertex.
            hull = ConvexHull(unique, qhull_options="Qc Qi")
        except QhullError:  # all on one great circle, or fewer than 4 distinct points
            return cKDTree(x).query_pairs(chord, output_type="ndarray")
        tri = hull.simplices
        pairs = np.r_[tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]
        if len(hull.coplanar):
            pairs = np.r_[pairs, hull.coplanar[:, [0, 2]]]
        pairs = np.r_[first[pairs], copies]
    else:
        return cKDTree(x).query_pairs(chord, output_type="ndarray")
    close = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1) < chord
    return pairs[close]


@dataclass(frozen=True)
class Merge:
    """Clusters ``before`` (indices at the previous output time) became cluster ``after`` at ``t``."""

    t: float
    before: tuple[int, ...]
    after: int


def merges(times: np.ndarray, history: list[Clusters], *, sphere: bool = True) -> list[Merge]:
    """The merges along ``history`` (the clusters at each of ``times``): each cluster is matched
    to the nearest centre at the next time; one reached by two or more is a merge there."""
    out = []
    for k in range(1, len(history)):
        a, b = history[k - 1], history[k]
        if not a.count or not b.count:
            continue
        dist = _geodesic(a.centres[:, None, :], b.centres[None, :, :], sphere)
        nearest = np.argmin(dist, axis=1)
        for j in range(b.count):
            came = tuple(int(i) for i in np.flatnonzero(nearest == j))
            if len(came) > 1:
                out.append(Merge(float(times[k]), came, j))
    return out


def plateaus(times: np.ndarray, counts: np.ndarray) -> list[tuple[int, float, float]]:
    """Maximal runs of equal cluster count: (count, first time, last time) in time order."""
    out: list[tuple[int, float, float]] = []
    for t, c in zip(np.asarray(times, dtype=float), np.asarray(counts), strict=True):
        if out and out[-1][0] == int(c):
            out[-1] = (out[-1][0], out[-1][1], float(t))
        else:
            out.append((int(c), float(t), float(t)))
    return out


def two_cluster_merge_time(theta0: float, theta1: float, beta: float) -> float:
    """Time for two equal point masses (Q = K = V = I, SA, on a great circle) to close from the
    angle ``theta0`` to ``theta1``: the integral of ``(1 + exp(beta (1 - cos theta))) / (2 sin
    theta)`` over [theta1, theta0]."""
    if not 0 < theta1 < theta0 < math.pi:
        raise ValueError(f"need 0 < theta1 < theta0 < pi; got {theta1}, {theta0}")

    def dt(theta: float) -> float:
        return (1.0 + math.exp(beta * (1.0 - math.cos(theta)))) / (2.0 * math.sin(theta))

    value, _ = integrate.quad(dt, theta1, theta0, epsabs=0.0, epsrel=1e-12, limit=200)
    return float(value)
