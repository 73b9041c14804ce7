"""The figure of the interpolating Transformer (``vlasov-tf interpolate``).

On S^2 the tokens are drawn in longitude and latitude; on S^{d-1} with d > 3 on the plane the
other token views of d > 3 use (:func:`~vlasov_tf.plots.token_views.projection_plane`: the two
leading eigenvectors of the second moment, here of the final tokens and the targets), inside the
unit circle, the sphere's outline.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlasov_tf.analysis.wasserstein import geodesic_cost
from vlasov_tf.geometry.measures import normalize
from vlasov_tf.plots.canvas import save_figure
from vlasov_tf.plots.token_views import projection_plane

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vlasov_tf.interpolation.construction import Interpolation

__all__ = [
    "interpolation_figure",
    "plot_interpolation",
]


def _lonlat(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of (..., 3) points on S^2."""
    lon = np.degrees(np.arctan2(x[..., 1], x[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(x[..., 2], -1.0, 1.0)))
    return lon, lat


def _broken(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaNs where a path wraps around in longitude, so it is not drawn across the map."""
    jump = np.flatnonzero(np.abs(np.diff(lon)) > 180.0)
    return np.insert(lon, jump + 1, np.nan), np.insert(lat, jump + 1, np.nan)


class _Map:
    """Where a point of S^{d-1} is drawn: (longitude, latitude) in degrees on S^2, else its
    coordinates on the projection plane of the final tokens and the targets (module docstring)."""

    def __init__(self, interp: Interpolation) -> None:
        self.flat = interp.d == 3
        if self.flat:
            self.labels = ("longitude (deg)", "latitude (deg)")
            self.limits = ((-180.0, 180.0), (-90.0, 90.0))
            return
        cloud = np.concatenate([*(rec.final for rec in interp.records), interp.targets])
        self.basis, _ = projection_plane(cloud, np.ones(len(cloud)), sphere=True)
        self.labels = ("e1", "e2")
        self.limits = ((-1.05, 1.05), (-1.05, 1.05))

    def points(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two arrays of the drawn coordinates of (..., d) points."""
        if self.flat:
            return _lonlat(x)
        return x @ self.basis[0], x @ self.basis[1]

    def path(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The coordinates of a path (k, d), broken where it wraps around in longitude."""
        return _broken(*self.points(x)) if self.flat else self.points(x)

    def frame(self, ax: Any) -> None:
        ax.set_xlim(*self.limits[0])
        ax.set_ylim(*self.limits[1])
        ax.set_xlabel(self.labels[0])
        ax.set_ylabel(self.labels[1])
        if not self.flat:
            from matplotlib.patches import Circle

            ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, lw=0.8, color="0.3"))
            ax.set_aspect("equal")


def interpolation_figure(interp: Interpolation, res: dict[str, Any]) -> Figure:
    """Inputs, trajectories, final clusters (lon/lat), depth study and grid W2, in one figure.

    ``res``: the dict of :func:`vlasov_tf.interpolation.runner.run_interpolation_case`.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vlasov_tf.interpolation.construction import STAGES

    colours = colormaps["tab10"](np.arange(interp.N) % 10)
    fig = Figure(figsize=(16, 9))
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 3)
    where = _Map(interp)
    tg_lon, tg_lat = where.points(interp.targets)
    for i, rec in enumerate(interp.records):
        lon, lat = where.points(rec.stage_points[0])
        ax[0, 0].scatter(lon, lat, s=2, color=colours[i], alpha=0.4, label=f"input {i}")
        lon, lat = where.path(rec.barycentres)
        ax[0, 1].plot(lon, lat, color=colours[i], lw=2)
        for j in range(rec.tracks.shape[1]):
            lon, lat = where.path(rec.tracks[:, j])
            ax[0, 1].plot(lon, lat, color=colours[i], lw=0.5, alpha=0.6)
        for s, mk in zip(range(1, len(STAGES)), ("o", "s", "^"), strict=True):
            lon, lat = where.points(normalize((rec.weights @ rec.stage_points[s])[None])[0])
            ax[0, 1].plot(lon, lat, mk, color=colours[i], ms=6, mec="k")
        lon, lat = where.points(rec.final)
        ax[0, 2].scatter(lon, lat, s=4, color=colours[i], alpha=0.5)
    for a in (ax[0, 0], ax[0, 1]):
        a.scatter(tg_lon, tg_lat, marker="*", s=160, c=colours, edgecolors="k", zorder=5)
    # Hollow targets over the final tokens: the clusters sit inside them and must stay visible.
    ax[0, 2].scatter(tg_lon, tg_lat, marker="*", s=260, facecolors="none", edgecolors=colours, lw=1.5,
                     zorder=5)  # fmt: skip
    for a in (ax[0, 0], ax[0, 1], ax[0, 2]):
        where.frame(a)
    ax[0, 0].set_title("inputs (tokens) and targets (stars)")
    ax[0, 0].legend(markerscale=5, fontsize=8)
    ax[0, 1].set_title("barycentres (thick), tracked tokens; o/s/^ = end of stages 0/1/2")
    ax[0, 2].set_title(f"final tokens in their targets; W2 = {', '.join(f'{v:.2g}' for v in interp.w2())}")
    # Zoom on the final clusters.
    for i, rec in enumerate(interp.records):
        dev = np.degrees(geodesic_cost(rec.final, interp.targets[i][None])[:, 0])
        # Outlines, not filled bars: the inputs' distances nearly coincide and filled bars hide each other.
        ax[1, 0].hist(dev, bins=30, color=colours[i], histtype="step", lw=2.5 - 0.6 * i, label=f"input {i}")
    ax[1, 0].axvline(np.degrees(interp.eps), color="k", ls="--", label="eps")
    ax[1, 0].set_xlabel("distance of final tokens to their target (deg)")
    ax[1, 0].set_title("final clusters")
    ax[1, 0].legend(fontsize=8)
    if "depth_table" in res:
        for i in range(interp.N):
            ax[1, 1].loglog(res["depth_layers"], res["depth_table"][:, i], "o-", color=colours[i])
        ax[1, 1].axhline(interp.eps, color="k", ls="--", label="eps")
        if res.get("depth"):
            ax[1, 1].axvline(res["depth"], color="g", ls=":", label=f"depth {res['depth']}")
        ax[1, 1].set_xlabel("layers L")
        ax[1, 1].set_ylabel("W2 to target")
        ax[1, 1].set_title(f"discrete Transformer ({interp.switches + 1} blocks)")
        ax[1, 1].legend(fontsize=8)
    if res.get("grid_levels"):
        g = np.array(res["grid_w2"])
        for i in range(interp.N):
            ax[1, 2].semilogy(res["grid_levels"], g[:, i], "o-", color=colours[i], label=f"input {i}")
        ax[1, 2].axhline(interp.eps, color="k", ls="--", label="eps")
        ax[1, 2].set_xlabel("sphere mesh level")
        ax[1, 2].set_ylabel("W2 to target")
        ax[1, 2].set_title("grid densities through the same schedule")
        ax[1, 2].legend(fontsize=8)
    else:
        ax[1, 2].axis("off")
    plane = "" if where.flat else (
        f"\ntop row: S^{interp.d - 1} projected on e1, e2, the leading eigenvectors of the final tokens' "
        "and targets' second moment (the unit circle: the sphere's outline)"
    )
    fig.suptitle(
        f"Measure-to-measure interpolation: N = {interp.N}, d = {interp.d}, {interp.switches} switches, "
        f"||theta|| = {interp.norms['max']:.3g}, T = {interp.T:g}{plane}"
    )
    fig.tight_layout()
    return fig


def plot_interpolation(interp: Interpolation, res: dict[str, Any], path: Path) -> Path:
    """Save :func:`interpolation_figure` as a PNG at ``path``."""
    return save_figure(interpolation_figure(interp, res), path)
