"""Figures of runs and convergence studies.

Each ``*_figure`` function builds and returns a matplotlib ``Figure`` (in a notebook, display it
or call ``fig.savefig``); each ``plot_*`` function draws the same figure, saves it as a PNG and
returns the path. Everything is drawn with matplotlib's object-oriented API on an Agg canvas: no
pyplot global state and no GUI backend, so the figures work on headless machines and inside
other programs.

The cross-validation figure of a run (:func:`crossval_figure`) has three rows:

- the density over time. On S^1: the finest grid density against the token histogram at three
  times. On S^2: the finest grid density in orthographic views of both hemispheres
  (:func:`orthographic`, :func:`choose_view`) on one colour scale for all times (logarithmic
  once clusters form, :func:`density_norm`), with the tokens of the deepest Transformer on the
  most tokens on top;
- the stored diagnostics over time (mass drift, interaction energy, distances to the finest
  grid and between depths), and for an initial ``uniform_perturbed`` density the amplitude of
  the perturbed mode against the linear theory (:func:`predicted_growth`);
- the convergence tables of :func:`vlasov_tf.studies.crossval_tables`, log-log, with the
  expected slopes (:func:`convergence_figure`).

Why two orthographic discs and not a map of the sphere: a longitude/latitude map cuts the sphere
along a meridian and stretches each pole into a line, so a cluster on the seam or at a pole is
split or smeared, and the triangles across the seam cannot be drawn; an equal-area map (Hammer,
Mollweide) still has the seam. The discs seen from +v and -v have no seam and no singular point:
each triangle whose centre faces the viewer is drawn with its own projected vertices, the two
discs together hold every cell, the drawn triangles tile each disc up to the rim, and near the
centre of a disc shapes and areas are true. Only the rim squeezes (radially, by the cosine of
the angle to the image plane), which is why the view axis keeps the mass away from it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .clusters import merges, plateaus
from .comparison import geodesic_cost
from .ensembles import PhaseMaps
from .linear_theory import mode_amplitude, mode_function, predicted_growth
from .measures import circle_to_angles, normalize
from .sphere_views import choose_view, orthographic, view_basis, visible_cells
from .studies import (
    DepthConvergence,
    RateTable,
    cluster_history,
    cluster_jobs,
    crossval_tables,
    fitted_order,
    grid_against_deep,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from .interpolation import Interpolation
    from .meshes import MeshGeometry

__all__ = [
    "convergence_figure",
    "crossval_figure",
    "density_figure",
    "density_norm",
    "depth_convergence_figure",
    "diagnostics_figure",
    "interpolation_figure",
    "mode_growth_figure",
    "plot_crossval",
    "plot_depth_convergence",
    "plot_interpolation",
]

#: Colour range of the logarithmic density maps: the floor is the largest density over max / this.
DYNAMIC_RANGE = 1e4
#: Tokens drawn over a density map at most (evenly spaced in their labels).
MAX_TOKENS_SHOWN = 3000
#: Where a zero mass drift is drawn on the log scale of the mass panel.
ZERO_DRIFT = 1e-17


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# ---------------------------------------------------------------------------
# the sphere in orthographic view
# ---------------------------------------------------------------------------


def density_norm(values: Sequence[np.ndarray], dynamic_range: float = DYNAMIC_RANGE):
    """One colour norm for density maps at several times (the values of all of them).

    - Logarithmic (``LogNorm``) when the largest value exceeds 100 times the median (clusters):
      from ``max / dynamic_range`` (or the smallest positive value if larger) to the largest
      value, so that clusters thousands of times denser than the background and the background
      itself are both visible; lower values take the floor's colour;
    - linear when the values span less than a factor 30 (a nearly uniform density, whose
      variations a log scale would hide);
    - otherwise a power law ``PowerNorm(gamma=0.4)`` from 0 (smooth bumps of moderate contrast:
      their shapes stay visible, and so does a background ten times lower).
    """
    from matplotlib.colors import LogNorm, Normalize, PowerNorm

    vals = np.concatenate([np.ravel(v) for v in values])
    vmax = float(vals.max()) if vals.size else 1.0
    positive = vals[vals > 0]
    if vmax <= 0 or not positive.size:
        return Normalize(0.0, max(vmax, 1.0))
    vmin = float(positive.min())
    if vmax < 30.0 * vmin:
        return Normalize(vmin, vmax)
    if vmax > 100.0 * float(np.median(vals)):
        return LogNorm(max(vmin, vmax / dynamic_range), vmax)
    return PowerNorm(0.4, 0.0, vmax)


def _norm_label(norm) -> str:
    from matplotlib.colors import LogNorm, PowerNorm

    if isinstance(norm, LogNorm):
        return f"log scale, floor max/{norm.vmax / norm.vmin:.6g}: lower values take its colour"
    if isinstance(norm, PowerNorm):
        return f"power scale, γ = {norm.gamma:g}"
    return "linear scale"


def _draw_disc(
    ax: Axes,
    mesh: MeshGeometry | None,
    rho: np.ndarray | None,
    view: np.ndarray,
    norm,
    tokens: np.ndarray | None,
    cmap: str = "viridis",
):
    """One hemisphere: the visible cells coloured by ``rho``, the visible tokens, the rim, equator, poles."""
    from matplotlib.patches import Circle

    pc = None
    if mesh is not None:
        cells = visible_cells(mesh, view)
        tri = mesh.cell_vertices[cells]
        used, inv = np.unique(tri.ravel(), return_inverse=True)
        xy, _ = orthographic(mesh.vertices[used], view)
        floor = norm.vmin if norm.vmin is not None else 0.0
        pc = ax.tripcolor(
            xy[:, 0],
            xy[:, 1],
            inv.reshape(tri.shape),
            facecolors=np.maximum(rho[cells], floor),
            norm=norm,
            cmap=cmap,
            edgecolors="none",
            antialiased=False,  # no hairline seams between the triangles
        )
    # Equator (dashed) and the poles, for orientation.
    phi = np.linspace(0.0, 2.0 * np.pi, 361)
    xy, depth = orthographic(np.column_stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)]), view)
    xy[depth < 0] = np.nan
    ax.plot(xy[:, 0], xy[:, 1], color="w", lw=0.6, ls="--", alpha=0.5)
    for pole, name in (((0.0, 0.0, 1.0), "N"), ((0.0, 0.0, -1.0), "S")):
        (pxy,), (pd,) = orthographic(np.array([pole]), view)
        if pd >= 0:
            ax.plot(*pxy, "+", color="w", ms=7, mew=1.0)
            ax.annotate(name, pxy, xytext=(3, 3), textcoords="offset points", color="w", fontsize=8)
    if tokens is not None:
        xy, depth = orthographic(tokens, view)
        xy = xy[depth >= 0]
        ax.plot(xy[:, 0], xy[:, 1], "o", mfc="#ff2020", mec="w", mew=0.25, ms=2.2, alpha=0.8)
    ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, lw=0.8, color="0.2"))
    ax.set_xlim(-1.04, 1.04)
    ax.set_ylim(-1.04, 1.04)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return pc


# ---------------------------------------------------------------------------
# the jobs of a run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Jobs:
    """The complete jobs of a run that the figures show."""

    grids: list  # grid jobs, coarse to fine
    deep: list  # deep Transformers on the most tokens (sample 0), shallow to deep
    ref: Any  # the continuous flow of those tokens (Job or None)

    @property
    def finest(self):
        return self.grids[-1] if self.grids else None

    @property
    def tokens(self):
        """The token job drawn over the densities: the deepest Transformer on the most tokens."""
        return self.deep[-1] if self.deep else self.ref


def _jobs(case, run) -> _Jobs:
    from .crossval import run_jobs

    jobs = run_jobs(run)
    grids = [j for j in jobs if j.kind == "grid"]
    parts = [j for j in jobs if j.kind == "particles" and j.sample is None]
    n_max = max((j.tokens for j in parts), default=None)
    deep = sorted((j for j in parts if j.tokens == n_max and j.layers is not None), key=lambda j: j.layers)
    ref = next((j for j in parts if j.tokens == n_max and j.layers is None), None)
    return _Jobs(grids, deep, ref)


def _pick_times(case) -> list[int]:
    """The first, middle and last output times (indices)."""
    n = len(case.output_times)
    return sorted({0, n // 2, n - 1})


def _at(times: np.ndarray, t: float) -> int:
    return int(np.argmin(np.abs(np.asarray(times) - t)))


def _token_subset(n: int, most: int = MAX_TOKENS_SHOWN) -> np.ndarray:
    return np.linspace(0, n - 1, min(n, most)).round().astype(int)


def _grid_label(job) -> str:
    return f"M = {job.resolution}" if job.key.startswith("grid/M") else f"level {job.resolution}"


def _tok_label(job) -> str:
    return f"N = {job.tokens}, " + (f"L = {job.layers}" if job.layers is not None else "continuous flow")


# ---------------------------------------------------------------------------
# row 1: densities
# ---------------------------------------------------------------------------


def _draw_circle_density(sub: Figure | SubFigure, case, run) -> None:
    jobs = _jobs(case, run)
    grid, tok = jobs.finest, jobs.tokens
    axes = sub.subplots(1, 3)
    g = run.job_state(grid.key) if grid else None
    p = run.job_state(tok.key) if tok else None
    times = case.output_times
    for ax, k in zip(axes, [0, len(times) // 2, len(times) - 1], strict=True):  # as _pick_times, 3 panels
        if g is not None:
            mesh = case.mesh(grid.resolution)
            theta = circle_to_angles(mesh.centres)
            order = np.argsort(theta)
            rho = g[1][_at(g[0], times[k])]
            ax.plot(theta[order], rho[order], "k-", lw=1.2, label=f"grid, {_grid_label(grid)}")
        if p is not None:
            ax.hist(
                circle_to_angles(p[1][_at(p[0], times[k])]),
                bins=60,
                range=(0, 2 * np.pi),
                density=True,
                alpha=0.5,
                color="C1",
                label=f"tokens, {_tok_label(tok)}",
            )
        ax.set_title(f"t = {times[k]:.3g}")
        ax.set_xlabel("angle θ")
        ax.set_xlim(0, 2 * np.pi)
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)


def _draw_sphere_density(sub: Figure | SubFigure, case, run, view: Sequence[float] | None = None) -> None:
    jobs = _jobs(case, run)
    grid, tok = jobs.finest, jobs.tokens
    times = case.output_times
    picks = _pick_times(case)
    axes = sub.subplots(2, len(picks), squeeze=False)
    mesh = case.mesh(grid.resolution) if grid else None
    rho = tokens = None
    if grid is not None:
        g_t, g_rho = run.job_state(grid.key)
        rho = [g_rho[_at(g_t, times[k])] for k in picks]
    if tok is not None:
        p_t, p_pos = run.job_state(tok.key)
        idx = _token_subset(p_pos.shape[1])
        tokens = [p_pos[_at(p_t, times[k])][idx] for k in picks]
    if view is None:
        # The view is chosen for the density at T: the clusters, the point of the figure, have formed.
        if rho is not None:
            cloud = (mesh.centres, rho[-1] * mesh.areas)
        elif tokens is not None:
            cloud = (tokens[-1], np.ones(len(tokens[-1])))
        else:
            cloud = (np.array([[0.0, 0.0, 1.0]]), np.ones(1))
        v, how = choose_view([cloud])
        how += ", chosen for the density at T"
    else:
        v, how = view_basis(view)[2], "given"
    norm = density_norm(rho) if rho is not None else None
    pc = None
    for col, k in enumerate(picks):
        for row, sign in enumerate((1.0, -1.0)):
            ax = axes[row, col]
            pc = (
                _draw_disc(
                    ax, mesh, rho[col] if rho else None, sign * v, norm, tokens[col] if tokens else None
                )
                or pc
            )
            ax.set_title(f"t = {times[k]:.3g}, seen from {'+' if sign > 0 else '−'}v", fontsize=10)
    if pc is not None:
        log = type(norm).__name__ == "LogNorm"  # values below the floor take its colour
        sub.colorbar(
            pc,
            ax=axes.ravel().tolist(),
            shrink=0.85,
            extend="min" if log else "neither",
            label=f"grid density ({_norm_label(norm)})",
        )
    what = []
    if grid is not None:
        what.append(f"finest grid density ({_grid_label(grid)}, {mesh.n_cells} cells)")
    if tok is not None:
        shown = min(MAX_TOKENS_SHOWN, p_pos.shape[1])
        what.append(f"tokens in red ({_tok_label(tok)}; {shown} of {p_pos.shape[1]} drawn)")
    sub.suptitle(
        f"{' and '.join(what)}: orthographic views of both hemispheres\n"
        f"view axis v = ({v[0]:+.2f}, {v[1]:+.2f}, {v[2]:+.2f}): {how}; dashed: equator",
        fontsize=10,
    )


def density_figure(case, run, view: Sequence[float] | None = None) -> Figure:
    """The density row of :func:`crossval_figure` alone (``view``: the sphere's view axis, or None
    to let :func:`choose_view` pick it)."""
    if case.geometry == "circle":
        fig = _new_figure((14, 4.2))
        _draw_circle_density(fig, case, run)
    else:
        fig = _new_figure((14, 7.5))
        _draw_sphere_density(fig, case, run, view)
    return fig


# ---------------------------------------------------------------------------
# row 2: diagnostics over time
# ---------------------------------------------------------------------------


def _positive(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = rows[:, 1] > 0
    return rows[keep, 0], rows[keep, 1]


def _draw_mass(ax: Axes, jobs: _Jobs, run) -> None:
    mass = run.diagnostics("mass")
    drawn = False
    for i, job in enumerate(jobs.grids):
        rows = mass.get(job.key)
        if rows is None or not len(rows):
            continue
        rows = rows[np.argsort(rows[:, 0])]
        drift = np.abs(rows[:, 1] / rows[0, 1] - 1.0)
        ax.semilogy(
            rows[:, 0],
            np.maximum(drift, ZERO_DRIFT),
            "o-",
            ms=3,
            color=f"C{i}",
            label=f"{_grid_label(job)} (max {drift.max():.1e})",
        )
        drawn = True
    eps = np.finfo(float).eps
    ax.axhline(eps, color="k", ls=":", lw=1, label=f"double round-off {eps:.1e}")
    ax.set_ylim(ZERO_DRIFT / 3, None)
    ax.set_xlabel("time t")
    ax.set_ylabel(f"|m(t)/m(0) − 1|  (0 drawn at {ZERO_DRIFT:.0e})")
    ax.set_title("grid mass: relative drift" if drawn else "grid mass: no grid job", fontsize=10)
    ax.legend(fontsize=7)


def _draw_energy(ax: Axes, jobs: _Jobs, run) -> None:
    energy = run.diagnostics("energy")
    shown = [(jobs.finest, "k-", "grid, "), (jobs.ref, "C0--", "tokens, "), (jobs.tokens, "C1-", "tokens, ")]
    seen = set()
    for job, style, what in shown:
        if job is None or job.key in seen or job.key not in energy:
            continue
        seen.add(job.key)
        rows = energy[job.key]
        rows = rows[np.argsort(rows[:, 0])]
        label = what + (_grid_label(job) if job.kind == "grid" else _tok_label(job))
        ax.plot(rows[:, 0], rows[:, 1], style, marker="o", ms=3, label=label)
    if seen:
        ax.set_title("interaction energy E(t)\n(non-decreasing for Q = K = V = I)", fontsize=10)
        ax.legend(fontsize=7)
    else:
        why = "(the kernel is not zonal, or no diagnostics yet)"
        ax.set_title(f"interaction energy: not stored\n{why}", fontsize=10)
    ax.set_xlabel("time t")
    ax.set_ylabel("E(t)")


def _draw_distances(ax: Axes, case, jobs: _Jobs, run) -> None:
    sphere = case.geometry == "sphere"
    metric, name = ("SW1", "sw1_grid") if sphere else ("W1", "w1_grid")
    dist = run.diagnostics(name)
    se = run.diagnostics("sw1_grid_se") if sphere else {}
    w1_ref = run.diagnostics("w1_ref")
    fine = _grid_label(jobs.finest) if jobs.finest else "?"
    drawn = 0
    coarse = jobs.grids[:-1]
    for i, job in enumerate(coarse):
        if job.key in dist:
            grey = str(round(0.2 + 0.5 * i / max(len(coarse) - 1, 1), 2))
            ax.semilogy(
                *_positive(dist[job.key]),
                ":",
                marker="s",
                ms=3,
                color=grey,
                label=f"{metric}(grid {_grid_label(job)}, finest)",
            )
            drawn += 1
    seen = set()
    for job, colour in ((jobs.ref, "C0"), (jobs.tokens, "C1")):
        if job is None or job.key not in dist or job.key in seen:
            continue
        seen.add(job.key)
        t, val = _positive(dist[job.key])
        ax.semilogy(
            t, val, "-", color=colour, marker="o", ms=3, label=f"{metric}(tokens {_tok_label(job)}, finest)"
        )
        if job.key in se:
            rows = se[job.key]
            s = np.interp(t, rows[:, 0], rows[:, 1])
            ax.fill_between(t, np.maximum(val - 2 * s, val / 10), val + 2 * s, color=colour, alpha=0.2, lw=0)
        drawn += 1
    for i, job in enumerate(jobs.deep):
        if job.key in w1_ref:
            t, val = _positive(w1_ref[job.key])
            ax.semilogy(
                t,
                val,
                "--",
                marker="^",
                ms=3,
                color=f"C{2 + i}",
                label=f"W1(L = {job.layers}, flow), N = {job.tokens}",
            )
            drawn += 1
    title = f"{metric} to the finest grid ({fine}) over time\ndashed: W1 depth error (L layers vs flow)"
    if sphere:
        title += "; bands: ± 2 sliced s.e."
    ax.set_title(title if drawn else "distances: none stored", fontsize=10)
    ax.set_xlabel("time t")
    ax.set_ylabel("distance (radians)")
    if drawn:
        ax.legend(fontsize=7)


# ---------------------------------------------------------------------------
# the growth of a perturbed mode (initial family "uniform_perturbed")
# ---------------------------------------------------------------------------


def _mode_curves(case, run) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(label, style, times, |a(t) / a(0)|) of the grids and of the tokens of the most tokens."""
    init = case.initial
    jobs = _jobs(case, run)
    out = []
    for i, job in enumerate(jobs.grids):
        mesh = case.mesh(job.resolution)
        t, rho = run.job_state(job.key)
        amp = mode_amplitude(init, mesh.centres, rho * mesh.areas, mesh.areas)
        if amp[0] != 0:  # relative to the grid's own initial projection (its cell averages)
            out.append((f"grid, {_grid_label(job)}", f"C{i}-", t, np.abs(amp / amp[0])))
    # Tokens: relative to the exact initial projection a <f^2> (1/2 on S^1, 1/(2l + 1) on S^2), not
    # to their own, which carries the sampling error (O(N^-1/2) for random tokens).
    exact0 = init.amplitude * (0.5 if case.d == 2 else 1.0 / (2 * init.mode + 1))
    seen = set()
    for job, style in ((jobs.ref, "C3--"), (jobs.tokens, "C1-.")):
        if job is None or job.key in seen or exact0 == 0:
            continue
        seen.add(job.key)
        t, pos = run.job_state(job.key)
        f = mode_function(init, pos.reshape(-1, case.d)).reshape(pos.shape[:2])
        amp = f @ run.weights(job.key)
        out.append((f"tokens, {_tok_label(job)} ({case.particles.sampling})", style, t, np.abs(amp / exact0)))
    return out


def _draw_mode_growth(ax: Axes, ax_ratio: Axes | None, case, run) -> None:
    """The amplitude of the perturbed mode against the linear theory; below, their ratio."""
    init = case.initial
    name = "k" if case.d == 2 else "l"
    curves = _mode_curves(case, run)
    for label, style, t, amp in curves:
        ax.semilogy(t, amp, style, marker="o" if "grid" in label else None, ms=3, label=label)
    pred = predicted_growth(case, case.output_times)
    if pred is not None:
        blocks = len(case.schedule.blocks)
        lam = f"λ = {np.log(pred[-1]) / case.T:.4g}" if blocks == 1 else f"piecewise λ, {blocks} blocks"
        ax.semilogy(case.output_times, pred, "k:", lw=1.8, label=f"linear theory exp(λt), {lam}")
    ax.set_ylabel(f"|a(t) / a(0)|, {name} = {init.mode}")
    ax.set_title(
        f"perturbed mode {name} = {init.mode}, a(0) = {init.amplitude:g}\n"
        "amplitude vs linear theory (dotted)",
        fontsize=10,
    )
    if curves or pred is not None:
        ax.legend(fontsize=7, loc="lower right")
    if ax_ratio is None:
        ax.set_xlabel("time t")
        return
    ax.tick_params(labelbottom=False)
    if pred is not None:
        for label, style, t, amp in curves:
            ax_ratio.plot(t, amp / predicted_growth(case, t), style, label=label)
        ax_ratio.axhline(1.0, color="k", ls=":", lw=1)
    else:
        ax_ratio.text(
            0.5,
            0.5,
            "no linear theory: a block is not Q = K = V = I",
            ha="center",
            transform=ax_ratio.transAxes,
        )
    ax_ratio.set_xlabel("time t")
    ax_ratio.set_ylabel("measured / theory")


def mode_growth_figure(case, run) -> Figure:
    """The mode-growth panels of :func:`crossval_figure` alone (initial family ``uniform_perturbed``):
    the amplitude of the perturbed mode over time against the linear theory, and their ratio."""
    if case.initial.family != "uniform_perturbed":
        raise ValueError(
            f"case {case.name}: the initial family is {case.initial.family!r}, not 'uniform_perturbed'"
        )
    fig = _new_figure((6, 6))
    ax, ax_ratio = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    _draw_mode_growth(ax, ax_ratio, case, run)
    return fig


def _draw_diagnostics(sub: Figure | SubFigure, case, run) -> None:
    jobs = _jobs(case, run)
    mode = case.initial.family == "uniform_perturbed"
    gs = sub.add_gridspec(2, 4 if mode else 3, height_ratios=(2.2, 1))
    axes = [sub.add_subplot(gs[:, i]) for i in range(3)]
    _draw_mass(axes[0], jobs, run)
    _draw_energy(axes[1], jobs, run)
    _draw_distances(axes[2], case, jobs, run)
    if mode:
        ax = sub.add_subplot(gs[0, 3])
        _draw_mode_growth(ax, sub.add_subplot(gs[1, 3], sharex=ax), case, run)


def diagnostics_figure(case, run) -> Figure:
    """The diagnostics row of :func:`crossval_figure` alone."""
    mode = case.initial.family == "uniform_perturbed"
    fig = _new_figure((18 if mode else 15, 4.5))
    _draw_diagnostics(fig, case, run)
    return fig


# ---------------------------------------------------------------------------
# row 3: convergence tables
# ---------------------------------------------------------------------------

_AXIS_NAMES = {"layers": "layers L", "tokens": "tokens N", "grid": "mesh size h", "grid_l1": "mesh size h"}


def _draw_table(ax: Axes, tab: RateTable) -> None:
    x, err = np.asarray(tab.x, dtype=float), np.asarray(tab.error, dtype=float)
    one = len(x) < 2 or not np.isfinite(tab.rate)
    label = "measured (one point: no rate)" if one else f"measured: fitted rate {tab.rate:.2f}"
    ax.loglog(x, err, "o-", color="C0", label=label, zorder=3)
    if tab.spread is not None:
        sd = np.asarray(tab.spread, dtype=float)
        ax.errorbar(
            x,
            err,
            yerr=[np.minimum(sd, 0.9 * err), sd],
            fmt="none",
            ecolor="C0",
            capsize=4,
            label=f"± 1 sd over {tab.samples} samples",
        )
    if tab.se is not None:
        se = 2 * np.asarray(tab.se, dtype=float)
        ax.errorbar(
            x * 1.04,
            err,
            yerr=[np.minimum(se, 0.9 * err), se],
            fmt="none",
            ecolor="C3",
            elinewidth=2.5,
            alpha=0.6,
            label="± 2 sliced standard errors",
        )
    sign = 1 if tab.name.startswith("grid") else -1
    # The expected slope through the most accurate point (over a factor 2 each side for one point).
    xs = x if not one else x[-1] * np.array([0.5, 2.0])
    ax.loglog(
        xs,
        err[-1] * (xs / x[-1]) ** (sign * tab.expected),
        "k--",
        lw=1,
        label=f"expected rate {tab.expected:g}",
    )
    ax.minorticks_off()
    ax.set_xticks(x, [f"{v:.3g}" for v in x])
    ax.set_xlabel(_AXIS_NAMES.get(tab.name, tab.name))
    ax.set_ylabel(f"{tab.metric} at T")
    title = "\n".join(textwrap.wrap(tab.label, 48)) + ("\none point: no rate" if one else "")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)


def _draw_tables(sub: Figure | SubFigure, tables: Sequence[RateTable]) -> None:
    axes = sub.subplots(1, max(len(tables), 1), squeeze=False)[0]
    for ax, tab in zip(axes, tables, strict=False):
        _draw_table(ax, tab)
    if not tables:
        axes[0].text(
            0.5,
            0.5,
            "no convergence table: the run has one resolution of everything",
            ha="center",
            va="center",
            transform=axes[0].transAxes,
        )
        axes[0].set_axis_off()


def convergence_figure(tables: Sequence[RateTable]) -> Figure:
    """One log-log panel per rate table (:func:`vlasov_tf.studies.crossval_tables`).

    The measured distances at T, the fitted rate (or "one point: no rate"), the expected slope
    through the most accurate point, error bars of one sample standard deviation (``spread``)
    and of two sliced standard errors (``se``) where the table has them.
    """
    fig = _new_figure((4.2 * max(len(tables), 1), 4.2))
    _draw_tables(fig, tables)
    return fig


# ---------------------------------------------------------------------------
# the whole cross-validation figure
# ---------------------------------------------------------------------------


def crossval_figure(case, run, view: Sequence[float] | None = None) -> Figure:
    """Grid against tokens over time, the diagnostics over time, and the convergence in L, N and h.

    Rows (module docstring): the densities (:func:`density_figure`; ``view`` is the sphere's
    view axis, None to choose it), the diagnostics (:func:`diagnostics_figure`), the rate tables
    (:func:`convergence_figure`). ``run``: an open :class:`vlasov_tf.io.RunFile` of the case.
    """
    tables = crossval_tables(case, run)
    sphere = case.geometry == "sphere"
    fig = _new_figure((16, 17) if sphere else (16, 12.5))
    rows = fig.subfigures(3, 1, height_ratios=(2.0, 1.0, 1.0) if sphere else (1.0, 1.0, 1.0))
    if sphere:
        _draw_sphere_density(rows[0], case, run, view)
    else:
        _draw_circle_density(rows[0], case, run)
    _draw_diagnostics(rows[1], case, run)
    _draw_tables(rows[2], tables)
    betas = sorted(set(case.betas))
    title = (
        f"{case.name}: Eulerian grid vs deep Transformers ({case.geometry}, "
        f"β = {', '.join(f'{b:g}' for b in betas)}, T = {case.T:g})"
    )
    line = grid_against_deep(case, run)
    fig.suptitle(title + (f"\n{line}" if line else ""))
    return fig


def plot_crossval(case, run, path: Path) -> Path:
    """Save :func:`crossval_figure` of ``case`` and its open run file as a PNG at ``path``."""
    return _save(crossval_figure(case, run), path)


# ---------------------------------------------------------------------------
# clusters over time
# ---------------------------------------------------------------------------


def clusters_figure(case, run) -> Figure:
    """Clusters over time (:func:`vlasov_tf.studies.cluster_jobs`: finest grid, continuous flow and
    deepest Transformer of the most tokens): their count with the merges marked, the mass of each
    (heaviest first), and the interaction energy with the finest grid's plateaus of constant count."""
    jobs = cluster_jobs(case, run)
    fig = _new_figure((16, 4.8))
    ax_count, ax_mass, ax_energy = fig.subplots(1, 3)
    energy = run.diagnostics("energy")
    for job, (colour, line) in zip(jobs, [("k", "-"), ("C0", "--"), ("C1", ":")], strict=False):
        times, history = cluster_history(run, job.key)
        if not len(times):
            continue
        label = _grid_label(job) if job.kind == "grid" else _tok_label(job)
        label = ("grid, " if job.kind == "grid" else "tokens, ") + label
        counts = np.array([c.count for c in history])
        ax_count.step(times, counts, color=colour, ls=line, where="post", label=label)
        for m in merges(times, history, sphere=case.sphere):
            ax_count.plot(m.t, counts[_at(times, m.t)], "v", color=colour, ms=8)
        masses = np.full((len(times), max(counts.max(), 1)), np.nan)
        for i, c in enumerate(history):
            masses[i, : c.count] = c.masses
        for k in range(masses.shape[1]):
            ax_mass.plot(times, masses[:, k], ls=line, color=f"C{k + 2}")
        ax_mass.plot([], [], ls=line, color="k", label=label)  # the job's line style in the legend
        if job.key in energy:
            rows = energy[job.key][np.argsort(energy[job.key][:, 0])]
            ax_energy.plot(rows[:, 0], rows[:, 1], color=colour, ls=line, marker="o", ms=3, label=label)
        if job is jobs[0]:
            runs = plateaus(times, counts)
            ends = [a for _, a, _ in runs[1:]] + [float(times[-1])]
            for i, ((c, a, _), b) in enumerate(zip(runs, ends, strict=True)):
                ax_energy.axvspan(a, b, color="0.85" if i % 2 else "0.93", zorder=0)
                ax_energy.text(0.5 * (a + b), 1.0, f"{c}", transform=ax_energy.get_xaxis_transform(),
                               ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax_count.yaxis.get_major_locator().set_params(integer=True)
    ax_count.set_ylim(0, max(ax_count.get_ylim()[1], 1) + 0.5)  # counts from 0: a flat 1 reads as 1
    ax_mass.set_ylim(0, 1.02)  # fractions of the total: not a zoom into round-off
    ax_count.set_title("number of clusters (▼: a merge)", fontsize=10)
    ax_count.set_xlabel("time t")
    ax_count.set_ylabel("clusters")
    ax_count.legend(fontsize=7)
    ax_mass.set_title("cluster masses (colour: rank, heaviest first; line: job)", fontsize=10)
    ax_mass.set_xlabel("time t")
    ax_mass.set_ylabel("mass (fraction of the total)")
    ax_mass.legend(fontsize=7)
    ax_energy.set_xlabel("time t")
    ax_energy.set_ylabel("E(t)")
    if energy:
        ax_energy.set_title("interaction energy; shaded: plateaus of the first count", fontsize=10, pad=14)
        ax_energy.legend(fontsize=7)
    else:
        ax_energy.set_title("interaction energy: not stored (the kernel is not zonal)", fontsize=10)
    spec = case.clusters
    fig.suptitle(
        f"{case.name}: clusters at linking distance {case.linking_distance:.3g} ({spec.scale:g} β^-1/2), "
        f"lowest-density {spec.trim:.0%} of the mass left out, clusters of ≥ {spec.min_mass:.0%} of it"
    )
    return fig


def plot_clusters(case, run, path: Path) -> Path:
    """Save :func:`clusters_figure` of ``case`` and its open run file as a PNG at ``path``."""
    return _save(clusters_figure(case, run), path)


# ---------------------------------------------------------------------------
# phase diagrams of a sweep
# ---------------------------------------------------------------------------


def phase_figure(case, maps: PhaseMaps) -> Figure:
    """A sweep's (beta, t) maps: mean number of clusters, its spread over the members, the mean
    fraction of close pairs, and the mean count against time for a few betas with +-1 sd bands."""
    fig = _new_figure((15, 9))
    axes = fig.subplots(2, 2)
    t, b = maps.times, maps.betas
    log_beta = len(b) > 1 and b[0] > 0 and b[-1] / b[0] > 10
    close = f"mean fraction of pairs closer than {case.sweep.close:g} rad"
    shown = (
        (axes[0, 0], maps.clusters_mean, "mean number of clusters", "viridis"),
        (axes[0, 1], maps.clusters_sd, "its standard deviation over the members", "magma"),
        (axes[1, 0], maps.close_mean, close, "cividis"),
    )
    for ax, values, title, cmap in shown:
        if len(b) > 1 and len(t) > 1:
            mesh = ax.pcolormesh(t, b, values, shading="nearest", cmap=cmap)
            fig.colorbar(mesh, ax=ax)
        else:
            ax.text(0.5, 0.5, "one β: no map (see the curves)", transform=ax.transAxes, ha="center")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time t")
        ax.set_ylabel("β")
        if log_beta:
            ax.set_yscale("log")
    ax = axes[1, 1]
    for i, k in enumerate(sorted({round(x) for x in np.linspace(0, len(b) - 1, min(5, len(b)))})):
        mean, sd = maps.clusters_mean[k], maps.clusters_sd[k]
        ax.plot(t, mean, color=f"C{i}", label=f"β = {b[k]:.3g}")
        ax.fill_between(t, mean - sd, mean + sd, color=f"C{i}", alpha=0.2)
    ax.set_title("mean number of clusters ± 1 sd", fontsize=10)
    ax.set_xlabel("time t")
    ax.set_ylabel("clusters")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    spec = case.sweep
    redraw = f", drawn again every {spec.redraw:g}" if spec.redraw else ""
    fig.suptitle(
        f"{case.name}: {maps.members} members a β, N = {case.particles.tokens[0]} tokens on S^{case.d - 1}, "
        f"Q, K, V {spec.parameters}{redraw}; clusters at {case.clusters.scale:g} β^-1/2"
    )
    return fig


def plot_phase(case, maps: PhaseMaps, path: Path) -> Path:
    """Save :func:`phase_figure` as a PNG at ``path``."""
    return _save(phase_figure(case, maps), path)


# ---------------------------------------------------------------------------
# depth convergence (``vlasov-tf particles``)
# ---------------------------------------------------------------------------


def depth_convergence_figure(res: DepthConvergence, n_show: int = 200) -> Figure:
    """Two panels: token angles along the reference; errors against depth.

    ``n_show`` tokens (evenly spread over the labels) are drawn on the left.
    """
    from matplotlib.collections import LineCollection

    fig = _new_figure((12, 4.8))
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
    return fig


def plot_depth_convergence(res: DepthConvergence, path: Path, n_show: int = 200) -> Path:
    """Save :func:`depth_convergence_figure` as a PNG at ``path``."""
    return _save(depth_convergence_figure(res, n_show), path, dpi=120)


# ---------------------------------------------------------------------------
# measure-to-measure interpolation
# ---------------------------------------------------------------------------


def _lonlat(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of (..., 3) points (first three coordinates)."""
    lon = np.degrees(np.arctan2(x[..., 1], x[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(x[..., 2], -1.0, 1.0)))
    return lon, lat


def _broken(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaNs where a path wraps around in longitude, so it is not drawn across the map."""
    jump = np.flatnonzero(np.abs(np.diff(lon)) > 180.0)
    return np.insert(lon, jump + 1, np.nan), np.insert(lat, jump + 1, np.nan)


def interpolation_figure(interp: Interpolation, res: dict[str, Any]) -> Figure:
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
    return fig


def plot_interpolation(interp: Interpolation, res: dict[str, Any], path: Path) -> Path:
    """Save :func:`interpolation_figure` as a PNG at ``path``."""
    return _save(interpolation_figure(interp, res), path)
