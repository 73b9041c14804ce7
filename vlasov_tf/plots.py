"""Figures. Each function takes a result object and a path and writes a PNG.

Drawn on an Agg canvas with matplotlib's object-oriented API: no pyplot
global state and no GUI backend, so they work on headless machines and
inside other programs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .comparison import geodesic_cost
from .measures import circle_to_angles, normalize
from .studies import DepthConvergence, fitted_order

if TYPE_CHECKING:
    from .interpolation import Interpolation

__all__ = ["plot_crossval", "plot_depth_convergence", "plot_interpolation"]


def plot_depth_convergence(res: DepthConvergence, path: Path, n_show: int = 200) -> Path:
    """Save a two-panel PNG: token angles along the reference; errors against depth.

    ``n_show`` tokens (evenly spread over the labels) are drawn on the left.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_traj, ax_err = fig.subplots(1, 2, width_ratios=(1.15, 1))

    idx = np.linspace(0, res.n_tokens - 1, min(n_show, res.n_tokens)).round().astype(int)
    theta = np.unwrap(circle_to_angles(res.reference[:, idx]), axis=0)  # (n_times, n_show)
    two_pi = 2 * np.pi
    # Copies shifted by +-2 pi make a token that crosses angle 0 leave one
    # edge of the band [0, 2 pi] and re-enter at the other, without a jump.
    segments = [
        np.column_stack([res.times, theta[:, j] + k * two_pi]) for k in (-1, 0, 1) for j in range(len(idx))
    ]
    colors = np.tile(theta[0] % two_pi / two_pi, 3)
    # viridis rather than a cyclic map: those fade to white at one end, hiding tokens there.
    lines = LineCollection(segments, cmap="viridis", linewidths=0.6, alpha=0.8)
    lines.set_array(colors)
    ax_traj.add_collection(lines)
    ax_traj.set_xlim(0, res.T)
    ax_traj.set_ylim(0, two_pi)
    ax_traj.set_yticks(np.arange(5) * np.pi / 2, ["0", "π/2", "π", "3π/2", "2π"])
    ax_traj.set_xlabel("time t")
    ax_traj.set_ylabel("token angle θ")
    ax_traj.set_title(f"reference trajectories ({len(idx)} of {res.n_tokens} tokens; colour: initial angle)")

    L = res.layers
    ax_err.loglog(L, res.w1, "o-", label="W1 on the circle at T")
    ax_err.loglog(L, res.max_error, "s-", label="max token error at T")
    # Slope -1 in L (order 1 in h), anchored a factor 2 below the W1 curve at the deepest L.
    anchor = 0.5 * res.w1[-1] * L[-1]
    ax_err.loglog(L, anchor / L, "k--", lw=1, label="∝ h = T/L (order 1)")
    ax_err.set_xticks(L, [str(v) for v in L])
    ax_err.minorticks_off()
    ax_err.set_xlabel("number of layers L (step h = T/L)")
    ax_err.set_ylabel("error (radians)")
    ax_err.set_title(f"deep Transformer vs continuous flow (fitted order {fitted_order(res.h, res.w1):.2f})")
    ax_err.grid(True, which="major", alpha=0.3)
    ax_err.legend()

    fig.suptitle(
        f"Q = K = V = I softmax attention on S¹: N = {res.n_tokens}, β = {res.beta:g}, T = {res.T:g}"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_crossval(case, run, path: Path) -> Path:
    """Grid density against the tokens over time, and the convergence of W1 in L, N and h.

    Top row: on the circle, the finest grid density and the histogram of the largest
    deep-Transformer run (most tokens, most layers) at three times; on S^2, the
    finest grid density at T in longitude/latitude with those tokens on top.
    Bottom row: the rate tables of :func:`vlasov_tf.studies.crossval_tables`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .crossval import case_jobs
    from .studies import crossval_tables

    jobs = case_jobs(case)
    grids = [j for j in jobs if j.kind == "grid" and run.is_complete(j.key)]
    deep = [j for j in jobs if j.kind == "particles" and j.layers is not None and run.is_complete(j.key)]
    tables = crossval_tables(case, run)
    fig = Figure(figsize=(13, 8), layout="constrained")
    FigureCanvasAgg(fig)
    top = fig.subfigures(2, 1)
    ax_top = top[0].subplots(1, 3)
    ax_bot = top[1].subplots(1, max(len(tables), 1), squeeze=False)[0]
    grid = grids[-1] if grids else None
    tok = max(deep, key=lambda j: (j.tokens, j.layers)) if deep else None
    g_rho = run.job_state(grid.key)[1] if grid else None
    p_pos = run.job_state(tok.key)[1] if tok else None
    times = case.output_times
    picks = [0, len(times) // 2, len(times) - 1]
    if case.geometry == "circle":
        for ax, k in zip(ax_top, picks, strict=True):
            if grid is not None:
                mesh = case.mesh(grid.resolution)
                order = np.argsort(circle_to_angles(mesh.centres))
                ax.plot(
                    circle_to_angles(mesh.centres)[order],
                    g_rho[k][order],
                    "k-",
                    lw=1.2,
                    label=f"grid, M = {grid.resolution}",
                )
            if tok is not None:
                ax.hist(
                    circle_to_angles(p_pos[k]),
                    bins=60,
                    range=(0, 2 * np.pi),
                    density=True,
                    alpha=0.5,
                    color="C1",
                    label=f"tokens, N = {tok.tokens}, L = {tok.layers}",
                )
            ax.set_title(f"t = {times[k]:.3g}")
            ax.set_xlabel("angle θ")
            ax.set_xlim(0, 2 * np.pi)
        ax_top[0].set_ylabel("density")
        ax_top[0].legend(fontsize=8)
    else:
        for ax, k in zip(ax_top, picks, strict=True):
            if grid is not None:
                mesh = case.mesh(grid.resolution)
                v = mesh.vertices
                lon, lat = np.arctan2(v[:, 1], v[:, 0]), np.arcsin(np.clip(v[:, 2], -1, 1))
                tri = mesh.cell_vertices
                # Triangles across the longitude seam would smear over the whole map: leave them out.
                keep = np.ptp(lon[tri], axis=1) < np.pi
                pc = ax.tripcolor(lon, lat, tri[keep], facecolors=g_rho[k][keep], cmap="viridis")
                top[0].colorbar(pc, ax=ax, shrink=0.8, label="density")
            if tok is not None:
                x = p_pos[k]
                ax.plot(
                    np.arctan2(x[:, 1], x[:, 0]), np.arcsin(np.clip(x[:, 2], -1, 1)), "r.", ms=1.5, alpha=0.6
                )
            ax.set_title(f"t = {times[k]:.3g}: grid density, tokens (red)")
            ax.set_xlim(-np.pi, np.pi)
            ax.set_ylim(-np.pi / 2, np.pi / 2)
            ax.set_xlabel("longitude")
        ax_top[0].set_ylabel("latitude")
    names = {"layers": "layers L", "tokens": "tokens N", "grid": "mesh size h"}
    for ax, tab in zip(ax_bot, tables, strict=False):
        ax.loglog(tab.x, tab.w1, "o-", label=f"measured (rate {tab.rate:.2f})")
        sign = 1 if tab.name == "grid" else -1
        ref = tab.w1[-1] * (tab.x / tab.x[-1]) ** (sign * tab.expected)
        ax.loglog(tab.x, ref, "k--", lw=1, label=f"expected rate {tab.expected:g}")
        ax.minorticks_off()
        ax.set_xticks(tab.x, [f"{x:.3g}" for x in tab.x])
        ax.set_xlabel(names[tab.name])
        ax.set_ylabel("W1 at T")
        ax.set_title(tab.label, fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{case.name}: Eulerian grid vs deep Transformers ({case.geometry}, T = {case.T:g})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _lonlat(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of (..., 3) points (first three coordinates)."""
    lon = np.degrees(np.arctan2(x[..., 1], x[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(x[..., 2], -1.0, 1.0)))
    return lon, lat


def _broken(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaNs where a path wraps around in longitude, so it is not drawn across the map."""
    jump = np.flatnonzero(np.abs(np.diff(lon)) > 180.0)
    return np.insert(lon, jump + 1, np.nan), np.insert(lat, jump + 1, np.nan)


def plot_interpolation(interp: Interpolation, res: dict[str, Any], path: Path) -> Path:
    """Inputs, trajectories, final clusters (lon/lat), depth study and grid W2, in one figure.

    ``res``: the dict of :func:`vlasov_tf.interpolation.run_interpolation_case`.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .interpolation import STAGES

    colours = colormaps["tab10"](np.arange(interp.N) % 10)
    fig = Figure(figsize=(16, 9))
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 3)
    tg_lon, tg_lat = _lonlat(interp.targets)
    for i, rec in enumerate(interp.records):
        lon, lat = _lonlat(rec.stage_points[0])
        ax[0, 0].scatter(lon, lat, s=2, color=colours[i], alpha=0.4, label=f"input {i}")
        lon, lat = _broken(*_lonlat(rec.barycentres))
        ax[0, 1].plot(lon, lat, color=colours[i], lw=2)
        for j in range(rec.tracks.shape[1]):
            lon, lat = _broken(*_lonlat(rec.tracks[:, j]))
            ax[0, 1].plot(lon, lat, color=colours[i], lw=0.5, alpha=0.6)
        for s, mk in zip(range(1, len(STAGES)), ("o", "s", "^"), strict=True):
            lon, lat = _lonlat(normalize((rec.weights @ rec.stage_points[s])[None])[0])
            ax[0, 1].plot(lon, lat, mk, color=colours[i], ms=6, mec="k")
        lon, lat = _lonlat(rec.final)
        ax[0, 2].scatter(lon, lat, s=4, color=colours[i], alpha=0.5)
    for a in (ax[0, 0], ax[0, 1], ax[0, 2]):
        a.scatter(tg_lon, tg_lat, marker="*", s=160, c=colours, edgecolors="k", zorder=5)
        a.set_xlim(-180, 180)
        a.set_ylim(-90, 90)
        a.set_xlabel("longitude (deg)")
        a.set_ylabel("latitude (deg)")
    ax[0, 0].set_title("inputs (tokens) and targets (stars)")
    ax[0, 0].legend(markerscale=5, fontsize=8)
    ax[0, 1].set_title("barycentres (thick), tracked tokens; o/s/^ = end of stages 0/1/2")
    ax[0, 2].set_title(f"final tokens; W2 = {', '.join(f'{v:.2g}' for v in interp.w2())}")
    # Zoom on the final clusters.
    for i, rec in enumerate(interp.records):
        dev = np.degrees(geodesic_cost(rec.final, interp.targets[i][None])[:, 0])
        ax[1, 0].hist(dev, bins=30, color=colours[i], alpha=0.5, label=f"input {i}")
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
    fig.suptitle(
        f"Measure-to-measure interpolation: N = {interp.N}, d = {interp.d}, {interp.switches} switches, "
        f"||theta|| = {interp.norms['max']:.3g}, T = {interp.T:g}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
