"""Ensembles over beta: random parameters and tokens, batched flows, phase diagrams of clustering.

A sweep (a case's ``[sweep]`` table, :class:`~vlasov_tf.runs.case_tables.SweepSpec`) runs, for each beta of
a list, ``members`` copies of the continuous-time flow of N tokens on S^{d-1} (RK4, fixed
steps): member m starts from the case's tokens of sample m (:meth:`Case.initial_tokens`) and,
unless ``parameters = "identity"`` (Q = K = V = I), has its own single head Q, K, V drawn from a
random-matrix ensemble (:func:`random_qkv`), drawn again every ``redraw`` time units when that is
positive (B = beta K^T Q). Every draw comes from its own stream keyed by (seed, member, period),
the same for every beta, so a member's trajectory does not depend on how the members are batched
or spread over MPI ranks, and the maps vary over beta by beta alone.

The members of a batch of betas move together: the velocity of all of them is one batched
computation (:func:`batched_velocity`: (M, N, N) scores, softmax, values, projection), the
same formula as :func:`vlasov_tf.models.attention.velocity` for one head (tested against it).

At every output time each member gives its number of clusters (:func:`cluster_counts`: the
definition of :mod:`vlasov_tf.analysis.clusters`, at the linking distance ``clusters.scale
beta^{-1/2}``) and its fraction of close pairs (:func:`close_fraction`: pairs closer than
``sweep.close`` radians). :mod:`vlasov_tf.runs.sweeps` runs a case's sweep into a run file;
:func:`phase_maps` turns that into (beta, t) maps of the ensemble mean and standard deviation.

Design notes: docs/numerics.md §6.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import logsumexp

from vlasov_tf.solvers.time_loop import TIME_RTOL

__all__ = [
    "ENSEMBLES",
    "PhaseMaps",
    "batched_velocity",
    "close_fraction",
    "cluster_counts",
    "ensemble_flow",
    "member_stream",
    "phase_maps",
    "random_qkv",
]

#: Random-matrix ensembles of the sweep's Q, K, V (:func:`random_qkv`).
ENSEMBLES = ("identity", "gaussian", "wigner", "goe")


def member_stream(seed: int, member: int, period: int) -> np.random.Generator:
    """The generator of one member's parameters in one redraw period (the same for every beta:
    the maps then differ between betas by beta, not by the draws)."""
    return np.random.default_rng((seed, 0x5EE9, member, period))


def random_qkv(kind: str, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q, K, V (each (d, d)) of one head from ensemble ``kind``, entries of variance 1/d:

    - ``"identity"``: Q = K = V = I;
    - ``"gaussian"``: i.i.d. N(0, 1/d) entries (spectrum in the unit disc as d grows);
    - ``"wigner"``: symmetric ``(A + A^T) / sqrt(2)``, A with i.i.d. entries +-1/sqrt(d)
      (semicircle on [-2, 2]);
    - ``"goe"``: the same with A Gaussian N(0, 1/d) (the Gaussian orthogonal ensemble).
    """
    if kind == "identity":
        eye = np.eye(d)
        return eye, eye.copy(), eye.copy()
    if kind == "gaussian":
        a = rng.standard_normal((3, d, d)) / math.sqrt(d)
        return a[0], a[1], a[2]
    if kind in ("wigner", "goe"):
        if kind == "wigner":
            a = rng.choice([-1.0, 1.0], size=(3, d, d)) / math.sqrt(d)
        else:
            a = rng.standard_normal((3, d, d)) / math.sqrt(d)
        s = (a + np.swapaxes(a, 1, 2)) / math.sqrt(2.0)
        return s[0], s[1], s[2]
    raise ValueError(f"unknown parameter ensemble {kind!r}; choose one of {ENSEMBLES}")


def batched_velocity(
    x: np.ndarray,
    q: np.ndarray | None,
    k: np.ndarray | None,
    v: np.ndarray | None,
    betas: np.ndarray,
    attention: str = "SA",
) -> np.ndarray:
    """(M, N, d) velocities of M independent token sets ``x`` (M, N, d), equal weights 1/N:
    ``P_x sum_j softmax_j(beta <Q x_i, K x_j>) V x_j`` (SA; USA: ``(1/N) sum_j exp(...) V x_j``),
    member m with its own Q, K, V (M, d, d) (None: the identity) and beta (M,)."""
    qx, kx, vx = (x if a is None else np.matmul(x, np.swapaxes(a, 1, 2)) for a in (q, k, v))
    scores = np.matmul(qx, np.swapaxes(kx, 1, 2))
    scores *= betas[:, None, None]
    shift = scores.max(axis=2, keepdims=True)
    scores -= shift
    e = np.exp(scores, out=scores)  # in place: the (M, N, N) array is the batch's memory
    avg = np.matmul(e, vx)
    if attention == "SA":
        avg /= e.sum(axis=2, keepdims=True)
    else:
        with np.errstate(over="ignore"):
            avg *= np.exp(shift) / x.shape[1]
        if not np.isfinite(avg).all():
            raise OverflowError("the unnormalised (USA) attention field exceeds the float range: lower beta")
    return avg - np.sum(avg * x, axis=2, keepdims=True) * x


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


#: One period's Q, K, V of every member, (M, d, d) each, or None for the identity.
_QKV = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


def ensemble_flow(
    x0: np.ndarray,
    draw: Callable[[int], tuple[np.ndarray | None, ...]],
    betas: np.ndarray,
    times: np.ndarray,
    steps: int,
    redraw: float = 0.0,
    attention: str = "SA",
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> None:
    """RK4 on the sphere (as ``solve_particles(method="rk4")``) of M token sets x0 (M, N, d) up
    to ``times[-1]``, with ``draw(p)`` giving the (M, d, d) Q, K, V (or None: the identity) of
    redraw period p (every
    ``redraw`` time units when positive); ``callback(i, x)`` at each of ``times``. ``steps`` RK4
    steps over [0, T], shared among the pieces between outputs and redraws (at least one each)."""
    T = float(times[-1])
    cuts = set(np.asarray(times, dtype=float).tolist()) | {0.0, T}
    if redraw > 0:
        cuts |= {p * redraw for p in range(1, int(T / redraw - 1e-12) + 1)}
    cuts_sorted = sorted(cuts)
    lengths = np.diff(cuts_sorted)
    # Exactly ``steps`` steps (when there are at least as many as pieces): proportional shares,
    # at least one each, the remainder to the largest fractions (as solve_particles).
    share = steps * lengths / T
    counts = np.maximum(1, np.floor(share).astype(int))
    for i in np.argsort(-(share - np.floor(share)), kind="stable")[: max(0, steps - counts.sum())]:
        counts[i] += 1
    x = _normalize(np.asarray(x0, dtype=np.float64))
    period, (q, k, v) = 0, draw(0)
    out_i = 0
    for a, b, n in zip(cuts_sorted[:-1], cuts_sorted[1:], counts.tolist(), strict=True):
        while out_i < len(times) and times[out_i] <= a + TIME_RTOL * T:
            if callback is not None:
                callback(out_i, x)
            out_i += 1
        p = int(a / redraw + 1e-9) if redraw > 0 else 0
        if p != period:
            period, (q, k, v) = p, draw(p)
        h = (b - a) / n

        def f(y: np.ndarray, qkv: _QKV = (q, k, v)) -> np.ndarray:  # the period's Q, K, V
            return batched_velocity(_normalize(y), *qkv, betas, attention)

        for _ in range(n):
            k1 = f(x)
            k2 = f(x + 0.5 * h * k1)
            k3 = f(x + 0.5 * h * k2)
            k4 = f(x + h * k3)
            x = _normalize(x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4))
    while out_i < len(times):
        if callback is not None:
            callback(out_i, x)
        out_i += 1


def cluster_counts(x: np.ndarray, radius: np.ndarray, trim: float, min_mass: float) -> np.ndarray:
    """(M,) numbers of clusters of M sets of N equally weighted tokens x (M, N, d), member m at
    linking distance ``radius[m]``: :func:`vlasov_tf.analysis.clusters.find_clusters`'s definition (the
    lowest kernel densities ``trim`` of the mass out, single linkage, components of at least
    ``min_mass``), on all pairs of each member at once (a few dozen tokens: dense is cheapest)."""
    m_count, n, _ = x.shape
    radius = np.minimum(np.asarray(radius, dtype=np.float64), np.pi)  # as find_clusters
    gram = np.clip(np.matmul(x, np.swapaxes(x, 1, 2)), -1.0, 1.0)
    r2 = radius[:, None, None] ** 2
    log_density = logsumexp(gram / r2, axis=2)  # the kernel density at width r (up to 1/N)
    cut = math.floor(trim * n * (1 + 1e-12))  # tokens the trim holds (equal weights)
    if cut:
        threshold = np.sort(log_density, axis=1)[:, min(cut, n - 1)]
        keep = log_density >= threshold[:, None] - 1e-9
    else:
        keep = np.ones((m_count, n), dtype=bool)
    close = (gram > np.cos(radius)[:, None, None]) & keep[:, :, None] & keep[:, None, :]
    member, i, j = np.nonzero(close)
    offset = member * n
    graph = coo_matrix((np.ones(len(i)), (offset + i, offset + j)), shape=(m_count * n, m_count * n))
    _, label = connected_components(graph, directed=False)
    label = label.reshape(m_count, n)
    counts = np.zeros(m_count, dtype=np.int64)
    for m in range(m_count):
        sizes = np.bincount(label[m][keep[m]])
        counts[m] = int(np.count_nonzero(sizes >= min_mass * n * (1 - 1e-12)))
    return counts


def close_fraction(x: np.ndarray, eps: float) -> np.ndarray:
    """(M,) fraction of the pairs i < j of each member closer than ``eps`` radians."""
    n = x.shape[1]
    gram = np.matmul(x, np.swapaxes(x, 1, 2))
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    return np.count_nonzero((gram > math.cos(eps)) & upper, axis=(1, 2)) / (n * (n - 1) / 2)


@dataclass(frozen=True)
class PhaseMaps:
    """(B, n) maps over beta (B,) and time (n,): mean and standard deviation over the members of
    the number of clusters and of the fraction of close pairs; NaN where not computed."""

    betas: np.ndarray
    times: np.ndarray
    members: int
    clusters_mean: np.ndarray
    clusters_sd: np.ndarray
    close_mean: np.ndarray
    close_sd: np.ndarray


def phase_maps(run) -> PhaseMaps:
    """The maps of a sweep's run file (the jobs ``sweep/b<index>``, in beta order)."""
    keys = [k for k in run.jobs() if k.startswith("sweep/")]
    betas = np.array([run.job_info(k)["attrs"]["beta"] for k in keys], dtype=np.float64)
    times = run.times
    maps = {name: np.full((2, len(keys), len(times)), np.nan) for name in ("clusters", "close")}
    members = 0
    for b, key in enumerate(keys):
        for name, out in maps.items():
            t, rows = run.table(key, name)
            members = max(members, rows.shape[1] if rows.ndim == 2 else 0)
            idx = np.searchsorted(times, t)
            out[0, b, idx] = rows.mean(axis=1)
            out[1, b, idx] = rows.std(axis=1)
    return PhaseMaps(betas, times, members, *maps["clusters"], *maps["close"])
