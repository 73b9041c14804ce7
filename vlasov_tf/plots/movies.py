"""Animations of a run (``vlasov-tf plot RUN --movie``): one frame per stored output time.

What each geometry shows, frame by frame (:func:`movie_figure` builds it, :func:`save_movie` writes
it through ``matplotlib.animation``: a GIF with Pillow, which matplotlib depends on; an MP4 only
where ffmpeg is installed):

- S^2: both hemispheres as orthographic discs (:mod:`.sphere_views`, the view axis chosen for the
  density at T as in the run's figure), the grid density on ONE logarithmic colour scale for every
  frame (:func:`movie_norm`), so that a colour means the same density throughout, and the tokens
  on top;
- S^1: the grid density against the angle and the tokens' histogram, on fixed axes;
- S^{d-1} with d > 3 and R^d: the tokens projected on a plane fixed over time and the histogram of
  their pairwise angles or distances (:mod:`.token_views`).

The frames are drawn by updating the artists of one figure (the colours of the cells, the
positions of the tokens), not by drawing a new figure per frame: a level-4 sphere (276480 cells)
animates in seconds a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlasov_tf.geometry.measures import circle_to_angles
from vlasov_tf.plots.canvas import (
    DYNAMIC_RANGE,
    grid_label,
    new_figure,
    token_label,
    token_subset,
)
from vlasov_tf.plots.sphere_views import choose_view, draw_disc, orthographic, visible_cells
from vlasov_tf.plots.token_views import (
    MAX_PAIR_TOKENS,
    pair_distances,
    projection_plane,
    uniform_angle_density,
)
from vlasov_tf.runs.diagnostics import Job, run_jobs, shown_jobs

if TYPE_CHECKING:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

__all__ = [
    "MAX_MOVIE_RANGE",
    "MOVIE_FORMATS",
    "Frames",
    "movie_figure",
    "movie_frames",
    "movie_norm",
    "save_movie",
]

#: File suffixes :func:`save_movie` writes.
MOVIE_FORMATS = (".gif", ".mp4")
#: The widest colour range of a sphere movie (max / floor): six decades.
MAX_MOVIE_RANGE = 1e6


def movie_norm(densities: np.ndarray) -> LogNorm:
    """The sphere movie's colour scale: logarithmic, one for all (n, C) frames ``densities``.

    From a floor to the largest density of any frame, ``vmax``; the floor is::

        floor = max(vmax / MAX_MOVIE_RANGE, min(vmax / DYNAMIC_RANGE, rho0_min / 2))

    with ``rho0_min`` the smallest positive density of the first frame. Why: the whole initial
    state lies above the floor, so the first frames show it in colour rather than as the floor's
    one colour (a nearly uniform start of density 1 / 4 pi would otherwise vanish under the floor
    ``vmax / 1e4`` of clusters a thousand times denser); the background of the clusters is seen
    down to ``vmax / DYNAMIC_RANGE`` as in the figures; and never more than six decades, so that a
    vanishing tail (a concentrated start is 1e-30 far from its bump) does not squeeze the
    structure into a few colours. Lower densities take the floor's colour. A fixed logarithmic
    scale is what a movie needs where the figures' rule (:func:`~vlasov_tf.plots.canvas.density_norm`)
    would choose a power scale for a smooth density: clusters form over the movie, and a colour
    must mean the same density in every frame.
    """
    from matplotlib.colors import LogNorm

    vmax = float(np.max(densities))
    if not vmax > 0:
        vmax = 1.0
    first = np.asarray(densities[0])
    positive = first[first > 0]
    start = 0.5 * float(positive.min()) if positive.size else vmax / DYNAMIC_RANGE
    floor = max(vmax / MAX_MOVIE_RANGE, min(vmax / DYNAMIC_RANGE, start))
    return LogNorm(floor, vmax)


@dataclass
class Frames:
    """What a movie shows: the frame times (n,), the grid densities (n, C) of ``grid`` and the
    tokens (n, N', d) of ``tokens`` (a subset of N' <= MAX_TOKENS_SHOWN) at those times (None: no
    such job shown)."""

    times: np.ndarray
    grid: Job | None
    densities: np.ndarray | None
    tokens: Job | None
    positions: np.ndarray | None
    n_tokens: int = 0


def _job(run, key: str) -> Job:
    jobs = {j.key: j for j in run_jobs(run)}
    if key in jobs:
        return jobs[key]
    if key not in run.jobs():
        raise ValueError(f"{run.path}: no job {key!r} (its jobs: {', '.join(run.jobs())})")
    info = run.job_info(key)  # stored but not complete: animate what is stored
    a = info["attrs"]
    names = ("resolution", "tokens", "layers", "sample")
    return Job(key, info["kind"], **{n: int(a[n]) for n in names if n in a})


def movie_frames(run, job: str | None = None) -> Frames:
    """The frames of an open run file: the finest grid and the deepest Transformer on the most
    tokens (the run's figure's jobs), or the one job ``job`` (a key such as ``grid/K3`` or
    ``particles/N1000_L100``, complete or not). ValueError (one line) for a sweep, a job the run
    does not hold, or fewer than two stored snapshots."""
    if any(key.startswith("sweep/") for key in run.jobs()):
        raise ValueError(f"{run.path} is a sweep (an ensemble over beta): it has no movie; plot it")
    if job is not None:
        chosen = _job(run, job)
        grid, tok = (chosen, None) if chosen.kind == "grid" else (None, chosen)
    else:
        shown = shown_jobs(run)
        grid, tok = shown.finest, shown.tokens
        if grid is None and tok is None:
            raise ValueError(
                f"{run.path}: no complete job to animate; name one with --job ({', '.join(run.jobs())})"
            )
    states = {j.key: run.job_state(j.key) for j in (grid, tok) if j is not None}
    counts = {key: len(s[0]) if s is not None else 0 for key, s in states.items()}
    key, n = min(counts.items(), key=lambda kv: kv[1])
    if n < 2:
        raise ValueError(
            f"{run.path}: job {key} has {n} stored snapshot{'s' * (n != 1)}: a movie needs at least 2"
        )
    # Frames at the times both jobs stored (the same output times: the first n of them).
    times = np.asarray(next(iter(states.values()))[0][:n])
    densities = positions = None
    n_tokens = 0
    if grid is not None:
        densities = np.asarray(states[grid.key][1][:n])
    if tok is not None:
        pos = states[tok.key][1]
        n_tokens = pos.shape[1]
        positions = np.asarray(pos[:n][:, token_subset(n_tokens)])
    return Frames(times, grid, densities, tok, positions, n_tokens)


def _sphere_movie(fig: Figure, case, frames: Frames) -> Any:
    """Two discs; returns the update function of frame i."""
    mesh = case.mesh(frames.grid.resolution) if frames.grid is not None else None
    rho, pos = frames.densities, frames.positions
    if rho is not None and mesh is not None:
        cloud = (mesh.centres, rho[-1] * mesh.areas)
    else:
        assert pos is not None  # movie_frames: a grid or tokens
        cloud = (pos[-1], np.ones(pos.shape[1]))
    v, how = choose_view([cloud])
    norm = movie_norm(rho) if rho is not None else None
    axes = fig.subplots(1, 2)
    discs = []
    for ax, sign in zip(axes, (1.0, -1.0), strict=True):
        pc = draw_disc(ax, mesh, rho[0] if rho is not None else None, sign * v, norm, None)
        if rho is None:  # tokens alone: a dark disc, on which the white equator and poles show
            from matplotlib.patches import Circle

            ax.add_patch(Circle((0.0, 0.0), 1.0, color="0.3", zorder=0))
        (dots,) = ax.plot([], [], "o", mfc="#ff2020", mec="w", mew=0.25, ms=2.6, alpha=0.85)
        cells = visible_cells(mesh, sign * v) if mesh is not None else None
        ax.set_title(f"seen from {'+' if sign > 0 else '−'}v", fontsize=10)
        discs.append((pc, dots, cells, sign * v))
    if norm is not None and discs[0][0] is not None:
        fig.colorbar(discs[0][0], ax=list(axes), shrink=0.8, extend="min",
                     label=f"grid density, log scale fixed over time (floor {norm.vmin:.2g})")  # fmt: skip
    floor = norm.vmin if norm is not None and norm.vmin is not None else 0.0
    what = []
    if frames.grid is not None and mesh is not None:
        what.append(f"grid {grid_label(frames.grid)} ({mesh.n_cells} cells)")
    if frames.tokens is not None:
        what.append(f"tokens in red ({token_label(frames.tokens)})")
    head = f"{case.name}: {' and '.join(what)}\nview axis v = ({v[0]:+.2f}, {v[1]:+.2f}, {v[2]:+.2f}): {how}"

    def update(i: int) -> None:
        for pc, dots, cells, view in discs:
            if pc is not None and rho is not None:
                pc.set_array(np.maximum(rho[i][cells], floor))
            if pos is not None:
                xy, depth = orthographic(pos[i], view)
                dots.set_data(xy[depth >= 0, 0], xy[depth >= 0, 1])
        fig.suptitle(f"{head}\nt = {frames.times[i]:.3g}", fontsize=11)

    return update


def _circle_movie(fig: Figure, case, frames: Frames) -> Any:
    ax = fig.subplots()
    rho, pos = frames.densities, frames.positions
    bins = np.linspace(0.0, 2 * np.pi, 61)
    top = 0.0
    line = stairs = None
    if rho is not None and frames.grid is not None:
        theta = circle_to_angles(case.mesh(frames.grid.resolution).centres)
        order = np.argsort(theta)
        (line,) = ax.plot(theta[order], rho[0][order], "k-", lw=1.4, label=f"grid, {grid_label(frames.grid)}")
        top = float(rho.max())
    if pos is not None and frames.tokens is not None:
        hists = [np.histogram(circle_to_angles(p), bins=bins, density=True)[0] for p in pos]
        stairs = ax.stairs(hists[0], bins, fill=True, alpha=0.5, color="C1",
                           label=f"tokens, {token_label(frames.tokens)}")  # fmt: skip
        top = max(top, max(float(h.max()) for h in hists))
    ax.set_xlim(0, 2 * np.pi)
    ax.set_ylim(0, 1.05 * top if top > 0 else 1.0)
    ax.set_xlabel("angle θ")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper right")

    def update(i: int) -> None:
        if line is not None and rho is not None:
            line.set_ydata(rho[i][order])
        if stairs is not None:
            stairs.set_data(hists[i])
        ax.set_title(f"{case.name}: t = {frames.times[i]:.3g}", fontsize=11)

    return update


def _cloud_movie(fig: Figure, case, frames: Frames) -> Any:
    pos = frames.positions
    if pos is None:
        raise ValueError(f"{case.name}: on {case.geometry} d = {case.d} only tokens can be animated")
    if case.sphere and case.particles.norm != "post":
        pos = pos / np.linalg.norm(pos, axis=2, keepdims=True)
    pos = pos[:, : min(pos.shape[1], MAX_PAIR_TOKENS)]
    weights = np.ones(pos.shape[1])
    basis, origin = projection_plane(pos[-1], weights, sphere=case.sphere)
    xys = (pos - origin) @ basis.T
    ax, ax_hist = fig.subplots(1, 2, width_ratios=(1.0, 1.3))
    (dots,) = ax.plot(*xys[0].T, "o", mfc="#d62020", mec="w", mew=0.25, ms=3, alpha=0.8)
    if case.sphere:
        from matplotlib.patches import Circle

        ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, lw=0.8, color="0.3"))
        lim = 1.05
    else:
        lim = 1.05 * float(np.abs(xys).max())
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    planar = not case.sphere and case.d == 2
    ax.set_xlabel("x1" if planar else "e1")
    ax.set_ylabel("x2" if planar else "e2")
    plane = "tokens projected on a plane fixed over time (chosen at T)"
    ax.set_title("tokens" if planar else plane, fontsize=10)
    pairs = [pair_distances(p, weights, sphere=case.sphere) for p in pos]
    hi = np.pi if case.sphere else max(float(d.max()) for d, _ in pairs)
    bins = np.linspace(0.0, hi if hi > 0 else 1.0, 61)
    hists = [np.histogram(d, bins=bins, weights=w, density=True)[0] for d, w in pairs]
    stairs = ax_hist.stairs(hists[0], bins, fill=True, alpha=0.6, color="C0")
    top = max(float(h.max()) for h in hists)
    if case.sphere:
        theta = np.linspace(0.0, np.pi, 181)
        law = uniform_angle_density(theta, case.d)
        ax_hist.plot(theta, law, "k:", lw=1.2, label=f"uniform on S^{case.d - 1}")
        ax_hist.legend(fontsize=8)
        top = max(top, float(law.max()))
    ax_hist.set_ylim(0, 1.05 * top)
    ax_hist.set_xlabel("angle between two tokens (radians)" if case.sphere else "distance between two tokens")
    ax_hist.set_ylabel("density")
    ax_hist.set_title(
        "pairwise " + ("angles" if case.sphere else "distances") + " (0: same cluster)", fontsize=10
    )
    space = f"S^{case.d - 1}" if case.sphere else f"R^{case.d}"

    def update(i: int) -> None:
        dots.set_data(xys[i, :, 0], xys[i, :, 1])
        stairs.set_data(hists[i])
        fig.suptitle(
            f"{case.name}: tokens on {space} ({token_label(frames.tokens)}), t = {frames.times[i]:.3g}"
        )

    return update


def movie_figure(case, frames: Frames) -> tuple[Figure, Any]:
    """The figure of a movie and its ``update(i)``, which draws frame i (module docstring)."""
    if case.geometry == "sphere" and case.d == 3:
        fig = new_figure((11, 5.6))
        return fig, _sphere_movie(fig, case, frames)
    if case.geometry == "circle":
        fig = new_figure((8, 4.5))
        return fig, _circle_movie(fig, case, frames)
    fig = new_figure((11, 5))
    return fig, _cloud_movie(fig, case, frames)


def save_movie(case, run, path: str | Path, *, fps: int = 4, job: str | None = None, dpi: int = 90) -> Path:
    """Write the movie of an open run file to ``path`` (``.gif``: Pillow; ``.mp4``: ffmpeg, which
    must be installed), one frame per stored output time. ValueError (one line) for what
    :func:`movie_frames` refuses, an unknown suffix or a missing ffmpeg; nothing is written then."""
    from matplotlib import animation

    path = Path(path)
    if path.suffix not in MOVIE_FORMATS:
        raise ValueError(
            f"{path}: a movie is {' or '.join(MOVIE_FORMATS)}, not {path.suffix or 'no suffix'!r}"
        )
    if path.suffix == ".mp4" and not animation.writers.is_available("ffmpeg"):
        raise ValueError(f"{path}: MP4 needs ffmpeg, which is not installed here; write a .gif instead")
    frames = movie_frames(run, job)
    fig, update = movie_figure(case, frames)
    writer: Any = (
        animation.PillowWriter(fps=fps) if path.suffix == ".gif" else animation.FFMpegWriter(fps=fps)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    anim = animation.FuncAnimation(fig, update, frames=len(frames.times), blit=False, repeat=False)
    # An interrupted write leaves no half movie under the name (the writers read the format off the suffix).
    part = path.with_name(f".{path.stem}.part{path.suffix}")
    try:
        anim.save(part, writer=writer, dpi=dpi)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    return path
