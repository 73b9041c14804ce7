"""Figures of clustering: clusters of a run over time, and the (beta, t) phase maps of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vlasov_tf.analysis.clusters import merges, plateaus
from vlasov_tf.plots.canvas import grid_label, log_if_wide, new_figure, save_figure, time_index, token_label
from vlasov_tf.runs.ensembles import PhaseMaps
from vlasov_tf.runs.studies import cluster_history, cluster_jobs

if TYPE_CHECKING:
    from matplotlib.figure import Figure


__all__ = [
    "clusters_figure",
    "phase_figure",
    "plot_clusters",
    "plot_phase",
]


def clusters_figure(case, run) -> Figure:
    """Clusters over time (:func:`vlasov_tf.runs.studies.cluster_jobs`: finest grid, continuous flow and
    deepest Transformer of the most tokens): their count with the merges marked, the mass of each
    (heaviest first), and the interaction energy with the finest grid's plateaus of constant count."""
    jobs = cluster_jobs(case, run)
    fig = new_figure((16, 4.8))
    ax_count, ax_mass, ax_energy = fig.subplots(1, 3)
    energy = run.diagnostics("energy")
    drawn: list[np.ndarray] = []
    for job, (colour, line) in zip(jobs, [("k", "-"), ("C0", "--"), ("C1", ":")], strict=False):
        times, history = cluster_history(run, job.key)
        if not len(times):
            continue
        label = grid_label(job) if job.kind == "grid" else token_label(job, case)
        label = ("grid, " if job.kind == "grid" else "tokens, ") + label
        counts = np.array([c.count for c in history])
        ax_count.step(times, counts, color=colour, ls=line, where="post", label=label)
        for m in merges(times, history, sphere=case.sphere):
            ax_count.plot(m.t, counts[time_index(times, m.t)], "v", color=colour, ms=8)
        masses = np.full((len(times), max(counts.max(), 1)), np.nan)
        for i, c in enumerate(history):
            masses[i, : c.count] = c.masses
        for k in range(masses.shape[1]):
            ax_mass.plot(times, masses[:, k], ls=line, color=f"C{k + 2}")
        ax_mass.plot([], [], ls=line, color="k", label=label)  # the job's line style in the legend
        if job.key in energy:
            rows = energy[job.key][np.argsort(energy[job.key][:, 0])]
            ax_energy.plot(rows[:, 0], rows[:, 1], color=colour, ls=line, marker="o", ms=3, label=label)
            drawn.append(rows[:, 1])
        if job is jobs[0]:
            runs = plateaus(times, counts)
            ends = [a for _, a, _ in runs[1:]] + [float(times[-1])]
            for i, ((count, a, _), b) in enumerate(zip(runs, ends, strict=True)):
                ax_energy.axvspan(a, b, color="0.85" if i % 2 else "0.93", zorder=0)
                ax_energy.text(0.5 * (a + b), 1.0, f"{count}", transform=ax_energy.get_xaxis_transform(),
                               ha="center", va="bottom", fontsize=8)  # fmt: skip
    log_if_wide(ax_energy, drawn)
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
        f"{case.name}: clusters at linking distance {case.linking_distance:.3g} "
        f"({spec.scale:g} {'β^-1/2' if case.model.width is None else 'kernel widths'}), "
        f"lowest-density {spec.trim:.0%} of the mass left out, clusters of ≥ {spec.min_mass:.0%} of it"
    )
    return fig


def plot_clusters(case, run, path: Path) -> Path:
    """Save :func:`clusters_figure` of ``case`` and its open run file as a PNG at ``path``."""
    return save_figure(clusters_figure(case, run), path)


def phase_figure(case, maps: PhaseMaps) -> Figure:
    """A sweep's (beta, t) maps: mean number of clusters, its spread over the members, the mean
    fraction of close pairs, and the mean count against time for a few betas with +-1 sd bands."""
    fig = new_figure((15, 9))
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
    return save_figure(phase_figure(case, maps), path)


