"""Tokens where no sphere view exists: S^{d-1} with d > 3 and R^d (particles only).

Orthographic discs (:mod:`.sphere_views`) need S^2 and angle histograms need S^1. For the other
geometries a run's density row shows, at the first, middle and last output times:

- the tokens projected on a plane (:func:`projection_plane`): on S^{d-1} the plane of the two
  leading eigenvectors of the second moment ``sum_i w_i x_i x_i^T`` (uncentred: the directions
  the clusters point to), where the sphere projects into the unit disc; on R^2 the coordinates
  themselves; on R^d (d > 2) the two leading principal axes of the centred covariance. The plane
  is chosen for the tokens at T (the clusters, the point of the figure, have formed) and kept for
  every time, so that motion is motion and not a change of axes;
- the distribution of the pairwise angles arccos <x_i, x_j> (S^{d-1}: clustering piles mass up at
  0, and the uniform measure's law ``sin^{d-2} theta`` is drawn for comparison) or of the pairwise
  distances ``|x_i - x_j|`` (R^d), weighted by w_i w_j: a summary that sees every dimension, unlike
  any projection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import betaln

from vlasov_tf.plots.canvas import shown_times, time_index, token_label, token_subset
from vlasov_tf.runs.diagnostics import shown_jobs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

__all__ = [
    "MAX_PAIR_TOKENS",
    "draw_pair_histogram",
    "draw_projection",
    "draw_token_clouds",
    "pair_distances",
    "projection_plane",
    "uniform_angle_density",
]

#: Tokens used for the pairwise histograms at most (evenly spaced in their labels): N^2/2 pairs.
MAX_PAIR_TOKENS = 2000


def projection_plane(
    points: np.ndarray, weights: np.ndarray, *, sphere: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(basis (2, d), origin (d,)): the plane the tokens (N, d) with weights (N,) are drawn on
    (module docstring); a point x is drawn at ``basis @ (x - origin)``. ``origin`` is 0 on the sphere."""
    x = np.asarray(points, dtype=float)
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    d = x.shape[1]
    origin = np.zeros(d) if sphere else w @ x
    if d == 2 and not sphere:
        return np.eye(2), np.zeros(2)
    y = x - origin
    moment = (y * w[:, None]).T @ y
    _, vectors = np.linalg.eigh(moment)  # ascending eigenvalues
    basis = vectors[:, ::-1][:, :2].T.copy()
    for row in basis:  # a sign convention: the largest component positive (figures do not flip)
        row *= np.sign(row[np.argmax(np.abs(row))])
    return basis, origin


def pair_distances(points: np.ndarray, weights: np.ndarray, *, sphere: bool) -> tuple[np.ndarray, np.ndarray]:
    """(distances, pair weights) over the pairs i < j of (N, d) tokens: the angle arccos <x_i, x_j>
    on the sphere, ``|x_i - x_j|`` in R^d; pair weights w_i w_j normalised to sum 1."""
    x = np.asarray(points, dtype=float)
    w = np.asarray(weights, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    if sphere:
        dist = np.arccos(np.clip(np.einsum("ij,ij->i", x[i], x[j]), -1.0, 1.0))
    else:
        dist = np.linalg.norm(x[i] - x[j], axis=1)
    pw = w[i] * w[j]
    return dist, pw / pw.sum()


def uniform_angle_density(theta: np.ndarray, d: int) -> np.ndarray:
    """Density of the angle between two independent uniform points of S^{d-1}:
    ``sin^{d-2}(theta) / B((d - 1)/2, 1/2)`` on [0, pi] (it integrates to 1)."""
    return np.sin(theta) ** (d - 2) / np.exp(betaln((d - 1) / 2, 0.5))


def draw_projection(
    ax: Axes, xy: np.ndarray, *, sphere: bool, title: str, limits: float | None = None
) -> None:
    """Projected tokens (n, 2) on ``ax``; on the sphere inside the unit circle (the image of S^{d-1})."""
    from matplotlib.patches import Circle

    ax.plot(xy[:, 0], xy[:, 1], "o", mfc="#d62020", mec="w", mew=0.25, ms=3, alpha=0.7)
    if sphere:
        ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, lw=0.8, color="0.3"))
        limits = 1.05
    if limits is not None:
        ax.set_xlim(-limits, limits)
        ax.set_ylim(-limits, limits)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


def draw_pair_histogram(ax: Axes, clouds: list[tuple[float, np.ndarray, np.ndarray]], d: int, *,
                        sphere: bool) -> None:  # fmt: skip
    """Histograms of the pairwise angles (sphere) or distances of (t, points, weights) clouds."""
    hi = np.pi if sphere else max(float(pair_distances(p, w, sphere=False)[0].max()) for _, p, w in clouds)
    bins = np.linspace(0.0, hi if hi > 0 else 1.0, 61).tolist()
    for i, (t, p, w) in enumerate(clouds):
        dist, pw = pair_distances(p, w, sphere=sphere)
        ax.hist(dist, bins=bins, weights=pw, density=True, histtype="step", lw=1.5, color=f"C{i}",
                label=f"t = {t:.3g}")  # fmt: skip
    if sphere:
        theta = np.linspace(0.0, np.pi, 181)
        ax.plot(theta, uniform_angle_density(theta, d), "k:", lw=1.2, label=f"uniform on S^{d - 1}")
        ax.set_xlabel("angle between two tokens (radians)")
        ax.set_title("pairwise angles (0: same cluster)", fontsize=10)
    else:
        ax.set_xlabel("distance between two tokens")
        ax.set_title("pairwise distances (0: same cluster)", fontsize=10)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def draw_token_clouds(sub: Figure | SubFigure, case, run) -> None:
    """The density row of a run on S^{d-1}, d > 3, or R^d (module docstring)."""
    jobs = shown_jobs(run)
    tok = jobs.tokens
    picks = shown_times(case)
    times = case.output_times
    axes = sub.subplots(1, len(picks) + 1, width_ratios=[1.0] * len(picks) + [1.4])
    if tok is None:
        for ax in axes:
            ax.set_axis_off()
        axes[0].text(0.0, 0.5, "no complete token job to draw", transform=axes[0].transAxes)
        return
    p_t, p_pos = run.job_state(tok.key)
    idx = token_subset(p_pos.shape[1], MAX_PAIR_TOKENS)
    weights = run.weights(tok.key)[idx]
    sphere = case.sphere
    clouds = []
    for k in picks:
        pts = p_pos[time_index(p_t, times[k])][idx]
        if sphere and case.particles.norm != "post":  # a pre- or peri-LN residual stream: directions
            pts = pts / np.linalg.norm(pts, axis=1, keepdims=True)
        clouds.append((float(times[k]), pts, weights))
    basis, origin = projection_plane(clouds[-1][1], weights, sphere=sphere)
    xys = [(pts - origin) @ basis.T for _, pts, _ in clouds]
    limits = None if sphere else 1.05 * max(float(np.abs(xy).max()) for xy in xys)
    planar = not sphere and case.d == 2
    for ax, (t, _, _), xy in zip(axes, clouds, xys, strict=False):
        draw_projection(ax, xy, sphere=sphere, title=f"t = {t:.3g}", limits=limits)
        ax.set_xlabel("x1" if planar else "e1")
    axes[0].set_ylabel("x2" if planar else "e2")
    draw_pair_histogram(axes[-1], clouds, case.d, sphere=sphere)
    space = f"S^{case.d - 1} ⊂ R^{case.d}" if sphere else f"R^{case.d}"
    if sphere:
        how = "e1, e2: leading eigenvectors of Σ w x xᵀ at T (the unit circle: the sphere's outline)"
    elif case.d == 2:
        how = "e1, e2: the coordinates x1, x2"
    else:
        how = "e1, e2: leading principal axes at T, about the mean at T"
    shown = min(MAX_PAIR_TOKENS, p_pos.shape[1])
    sub.suptitle(
        f"tokens on {space} ({token_label(tok)}; {shown} of {p_pos.shape[1]} drawn), projected on a "
        f"plane fixed over time\n{how}",
        fontsize=10,
    )
