"""Figures of one run: its densities, its diagnostics and the whole cross-validation figure.

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
- the convergence tables of :func:`vlasov_tf.runs.studies.crossval_tables`, log-log, with the
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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vlasov_tf.analysis.linear_theory import mode_amplitude, predicted_growth
from vlasov_tf.geometry.initial import UniformPerturbed
from vlasov_tf.geometry.measures import circle_to_angles
from vlasov_tf.plots.canvas import (
    MAX_TOKENS_SHOWN,
    density_norm,
    grid_label,
    log_if_wide,
    new_figure,
    norm_label,
    save_figure,
    shown_times,
    time_index,
    token_label,
    token_subset,
)
from vlasov_tf.plots.convergence import draw_tables
from vlasov_tf.plots.sphere_views import choose_view, draw_disc, view_basis
from vlasov_tf.plots.token_views import draw_token_clouds
from vlasov_tf.runs.diagnostics import ShownJobs, shown_jobs
from vlasov_tf.runs.studies import crossval_tables, grid_against_deep

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


__all__ = [
    "crossval_figure",
    "density_figure",
    "diagnostics_figure",
    "grid_label",
    "mode_growth_figure",
    "plot_crossval",
    "shown_times",
    "time_index",
    "token_label",
    "token_subset",
]


#: Where a zero mass drift is drawn on the log scale of the mass panel.
ZERO_DRIFT = 1e-17


# -- row 1: densities ------------------------------------------------------------


def _draw_circle_density(sub: Figure | SubFigure, case, run) -> None:
    jobs = shown_jobs(run)
    grid, tok = jobs.finest, jobs.tokens
    axes = sub.subplots(1, 3)
    g = run.job_state(grid.key) if grid else None
    p = run.job_state(tok.key) if tok else None
    times = case.output_times
    for ax, k in zip(axes, [0, len(times) // 2, len(times) - 1], strict=True):  # as shown_times, 3 panels
        if g is not None and grid is not None:
            mesh = case.mesh(grid.resolution)
            theta = circle_to_angles(mesh.centres)
            order = np.argsort(theta)
            rho = g[1][time_index(g[0], times[k])]
            ax.plot(theta[order], rho[order], "k-", lw=1.2, label=f"grid, {grid_label(grid)}")
        if p is not None:
            ax.hist(
                circle_to_angles(p[1][time_index(p[0], times[k])]),
                bins=60,
                range=(0, 2 * np.pi),
                density=True,
                alpha=0.5,
                color="C1",
                label=f"tokens, {token_label(tok, case)}",
            )
        ax.set_title(f"t = {times[k]:.3g}")
        ax.set_xlabel("angle θ")
        ax.set_xlim(0, 2 * np.pi)
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)


def _draw_sphere_density(sub: Figure | SubFigure, case, run, view: Sequence[float] | None = None) -> None:
    jobs = shown_jobs(run)
    grid, tok = jobs.finest, jobs.tokens
    times = case.output_times
    picks = shown_times(case)
    axes = sub.subplots(2, len(picks), squeeze=False)
    mesh = case.mesh(grid.resolution) if grid else None
    rho = tokens = None
    if grid is not None:
        g_t, g_rho = run.job_state(grid.key)
        rho = [g_rho[time_index(g_t, times[k])] for k in picks]
    if tok is not None:
        p_t, p_pos = run.job_state(tok.key)
        idx = token_subset(p_pos.shape[1])
        tokens = [p_pos[time_index(p_t, times[k])][idx] for k in picks]
    if view is None:
        # The view is chosen for the density at T: the clusters, the point of the figure, have formed.
        if rho is not None and mesh is not None:
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
                draw_disc(
                    ax, mesh, rho[col] if rho else None, sign * v, norm, tokens[col] if tokens else None
                )
                or pc
            )
            ax.set_title(f"t = {times[k]:.3g}, seen from {'+' if sign > 0 else '−'}v", fontsize=10)
    if pc is not None and norm is not None:
        log = type(norm).__name__ == "LogNorm"  # values below the floor take its colour
        sub.colorbar(
            pc,
            ax=axes.ravel().tolist(),
            shrink=0.85,
            extend="min" if log else "neither",
            label=f"grid density ({norm_label(norm)})",
        )
    what = []
    if grid is not None and mesh is not None:
        what.append(f"finest grid density ({grid_label(grid)}, {mesh.n_cells} cells)")
    if tok is not None:
        shown = min(MAX_TOKENS_SHOWN, p_pos.shape[1])
        what.append(f"tokens in red ({token_label(tok, case)}; {shown} of {p_pos.shape[1]} drawn)")
    sub.suptitle(
        f"{' and '.join(what)}: orthographic views of both hemispheres\n"
        f"view axis v = ({v[0]:+.2f}, {v[1]:+.2f}, {v[2]:+.2f}): {how}; dashed: equator",
        fontsize=10,
    )


def density_figure(case, run, view: Sequence[float] | None = None) -> Figure:
    """The density row of :func:`crossval_figure` alone (``view``: the sphere's view axis, or None
    to let :func:`choose_view` pick it)."""
    fig = new_figure((14, 7.5) if _on_s2(case) else (14, 4.2))
    _draw_density(fig, case, run, view)
    return fig


def _on_s2(case) -> bool:
    return case.geometry == "sphere" and case.d == 3


def _draw_density(sub: Figure | SubFigure, case, run, view: Sequence[float] | None) -> None:
    """The density row for the case's geometry: S^1 profiles, S^2 discs, else token projections
    and pairwise statistics (:mod:`.token_views`: S^{d-1} with d > 3, R^d)."""
    if case.geometry == "circle":
        _draw_circle_density(sub, case, run)
    elif _on_s2(case):
        _draw_sphere_density(sub, case, run, view)
    else:
        draw_token_clouds(sub, case, run)


# -- row 2: diagnostics over time --------------------------------------------------


def _positive(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = rows[:, 1] > 0
    return rows[keep, 0], rows[keep, 1]


def _draw_mass(ax: Axes, jobs: ShownJobs, run) -> None:
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
            label=f"{grid_label(job)} (max {drift.max():.1e})",
        )
        drawn = True
    eps = np.finfo(float).eps
    ax.axhline(eps, color="k", ls=":", lw=1, label=f"double round-off {eps:.1e}")
    ax.set_ylim(ZERO_DRIFT / 3, None)
    ax.set_xlabel("time t")
    ax.set_ylabel(f"|m(t)/m(0) − 1|  (0 drawn at {ZERO_DRIFT:.0e})")
    ax.set_title("grid mass: relative drift" if drawn else "grid mass: no grid job", fontsize=10)
    ax.legend(fontsize=7)


def _draw_energy(ax: Axes, jobs: ShownJobs, case, run) -> None:
    energy = run.diagnostics("energy")
    shown = [(jobs.finest, "k-", "grid, "), (jobs.ref, "C0--", "tokens, "), (jobs.tokens, "C1-", "tokens, ")]
    seen = set()
    drawn = []
    for job, style, what in shown:
        if job is None or job.key in seen or job.key not in energy:
            continue
        seen.add(job.key)
        rows = energy[job.key]
        rows = rows[np.argsort(rows[:, 0])]
        label = what + (grid_label(job) if job.kind == "grid" else token_label(job, case))
        ax.plot(rows[:, 0], rows[:, 1], style, marker="o", ms=3, label=label)
        drawn.append(rows[:, 1])
    log_if_wide(ax, drawn)
    if seen:
        # Attention cases (they have betas) have it for Q = K = V = I; other models define it as a
        # gradient flow's energy (models.interaction).
        why = "for Q = K = V = I" if case.betas else f"for the {case.model.label}"
        claim = "not monotone with noise" if case.model.noise else f"non-decreasing {why}"
        ax.set_title(f"interaction energy E(t)\n({claim})", fontsize=10)
        ax.legend(fontsize=7)
    else:
        why = "(the kernel is not zonal, or no diagnostics yet)"
        ax.set_title(f"interaction energy: not stored\n{why}", fontsize=10)
    ax.set_xlabel("time t")
    ax.set_ylabel("E(t)")


def _draw_distances(ax: Axes, case, jobs: ShownJobs, run) -> None:
    sphere = case.geometry == "sphere"
    metric, name = ("SW1", "sw1_grid") if sphere else ("W1", "w1_grid")
    dist = run.diagnostics(name)
    se = run.diagnostics("sw1_grid_se") if sphere else {}
    w1_ref = run.diagnostics("w1_ref")
    fine = grid_label(jobs.finest) if jobs.finest else "?"
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
                label=f"{metric}(grid {grid_label(job)}, finest)",
            )
            drawn += 1
    seen = set()
    for tok_job, colour in ((jobs.ref, "C0"), (jobs.tokens, "C1")):
        if tok_job is None or tok_job.key not in dist or tok_job.key in seen:
            continue
        seen.add(tok_job.key)
        t, val = _positive(dist[tok_job.key])
        label = f"{metric}(tokens {token_label(tok_job, case)}, finest)"
        ax.semilogy(t, val, "-", color=colour, marker="o", ms=3, label=label)
        if tok_job.key in se:
            rows = se[tok_job.key]
            s = np.interp(t, rows[:, 0], rows[:, 1])
            ax.fill_between(t, np.maximum(val - 2 * s, val / 10), val + 2 * s, color=colour, alpha=0.2, lw=0)
        drawn += 1
    for i, tok_job in enumerate(jobs.deep):
        if tok_job.key in w1_ref:
            t, val = _positive(w1_ref[tok_job.key])
            ax.semilogy(
                t,
                val,
                "--",
                marker="^",
                ms=3,
                color=f"C{2 + i}",
                label=f"W1(L = {tok_job.layers}, reference), N = {tok_job.tokens}",
            )
            drawn += 1
    if jobs.finest is not None:
        title = f"{metric} to the finest grid ({fine}) over time\ndashed: W1 depth error (L layers vs flow)"
    else:  # particles only (R^d, S^{d-1} with d > 3, or no [grid])
        title = "W1 depth error (L layers vs continuous flow) over time\n(no grid job to compare with)"
    if sphere and jobs.finest is not None:
        title += "; bands: ± 2 sliced s.e."
    ax.set_title(title if drawn else "distances: none stored", fontsize=10)
    ax.set_xlabel("time t")
    ax.set_ylabel("distance (radians)" if case.sphere else "distance")
    if drawn:
        ax.legend(fontsize=7)


# -- the growth of a perturbed mode (initial family "uniform_perturbed") ----------


def _mode_curves(case, run) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(label, style, times, |a(t) / a(0)|) of the grids and of the tokens of the most tokens."""
    init = case.initial
    jobs = shown_jobs(run)
    out = []
    for i, job in enumerate(jobs.grids):
        mesh = case.mesh(job.resolution)
        t, rho = run.job_state(job.key)
        amp = mode_amplitude(init, mesh.centres, rho * mesh.areas, mesh.areas)
        if amp[0] != 0:  # relative to the grid's own initial projection (its cell averages)
            out.append((f"grid, {grid_label(job)}", f"C{i}-", t, np.abs(amp / amp[0])))
    # Tokens: relative to the exact initial projection a <f^2> (1/2 on S^1, 1/(2l + 1) on S^2), not
    # to their own, which carries the sampling error (O(N^-1/2) for random tokens).
    exact0 = init.amplitude * (0.5 if case.d == 2 else 1.0 / (2 * init.mode + 1))
    seen = set()
    for tok_job, style in ((jobs.ref, "C3--"), (jobs.tokens, "C1-.")):
        if tok_job is None or tok_job.key in seen or exact0 == 0:
            continue
        seen.add(tok_job.key)
        t, pos = run.job_state(tok_job.key)
        f = init.harmonic(pos.reshape(-1, case.d)).reshape(pos.shape[:2])
        amp = f @ run.weights(tok_job.key)
        label = f"tokens, {token_label(tok_job, case)} ({case.particles.sampling})"
        out.append((label, style, t, np.abs(amp / exact0)))
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
        blocks = len(case.model.switch_times(case.T)) - 1
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
    if not isinstance(case.initial, UniformPerturbed):
        raise ValueError(
            f"case {case.name}: the initial family is {case.initial.family!r}, not 'uniform_perturbed'"
        )
    fig = new_figure((6, 6))
    ax, ax_ratio = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    _draw_mode_growth(ax, ax_ratio, case, run)
    return fig


def _draw_diagnostics(sub: Figure | SubFigure, case, run) -> None:
    jobs = shown_jobs(run)
    mode = isinstance(case.initial, UniformPerturbed)
    # A run without grid jobs (tokens only) has no grid mass to draw: no empty panel for it.
    panels: list[Callable[[Axes], None]] = [lambda ax: _draw_mass(ax, jobs, run)] if jobs.grids else []
    panels += [lambda ax: _draw_energy(ax, jobs, case, run), lambda ax: _draw_distances(ax, case, jobs, run)]
    gs = sub.add_gridspec(2, len(panels) + mode, height_ratios=(2.2, 1))
    for i, draw in enumerate(panels):
        draw(sub.add_subplot(gs[:, i]))
    if mode:
        ax = sub.add_subplot(gs[0, len(panels)])
        _draw_mode_growth(ax, sub.add_subplot(gs[1, len(panels)], sharex=ax), case, run)


def diagnostics_figure(case, run) -> Figure:
    """The diagnostics row of :func:`crossval_figure` alone."""
    mode = isinstance(case.initial, UniformPerturbed)
    fig = new_figure((18 if mode else 15, 4.5))
    _draw_diagnostics(fig, case, run)
    return fig


# -- the whole cross-validation figure ----------------------------------------


def crossval_figure(case, run, view: Sequence[float] | None = None) -> Figure:
    """Grid against tokens over time, the diagnostics over time, and the convergence in L, N and h.

    Rows (module docstring): the densities (:func:`density_figure`; ``view`` is the sphere's
    view axis, None to choose it), the diagnostics (:func:`diagnostics_figure`), the rate tables
    (:func:`convergence_figure`). ``run``: an open :class:`vlasov_tf.runs.storage.RunFile` of the case.
    """
    tables = crossval_tables(case, run)
    s2 = _on_s2(case)
    fig = new_figure((16, 17) if s2 else (16, 12.5))
    rows = np.asarray(fig.subfigures(3, 1, height_ratios=(2.0, 1.0, 1.0) if s2 else (1.0, 1.0, 1.0)))
    _draw_density(rows[0], case, run, view)
    _draw_diagnostics(rows[1], case, run)
    draw_tables(rows[2], tables)
    betas = sorted(set(case.betas))
    model = f"β = {', '.join(f'{b:g}' for b in betas)}" if betas else case.model.label
    title = f"{case.name}: Eulerian grid vs deep Transformers ({case.geometry}, {model}, T = {case.T:g})"
    line = grid_against_deep(case, run)
    fig.suptitle(title + (f"\n{line}" if line else ""))
    return fig


def plot_crossval(case, run, path: Path) -> Path:
    """Save :func:`crossval_figure` of ``case`` and its open run file as a PNG at ``path``."""
    return save_figure(crossval_figure(case, run), path)


