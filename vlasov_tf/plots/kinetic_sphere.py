"""Figures of a sphere kinetic run (:mod:`vlasov_tf.runs.kinetic_sphere_runs`): the spatial marginal at
t = 0 and T (longitude-latitude), the velocity distribution f(x*, v) at the cell x* of the densest
marginal at T (at t = 0 and T, in the cell's frame), and the energy exchange with the outflow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vlasov_tf.plots.canvas import new_figure, save_figure
from vlasov_tf.runs.kinetic_sphere_runs import sphere_grid_jobs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vlasov_tf.runs.storage import RunFile

__all__ = ["plot_kinetic_sphere", "sphere_kinetic_figure"]


def sphere_kinetic_figure(case, run: RunFile) -> Figure:
    """Top: the finest grid's marginal density at t = 0 and T (cells by longitude and latitude),
    and its velocity distribution at the densest cell at T. Bottom: f there at t = 0, the energies
    (kinetic, interaction, Hamiltonian minus their initial values) and the outflow through the box."""
    key, level, n = sphere_grid_jobs(case)[-1]
    mesh = case.mesh(level)
    stored = run.job_state(key)
    if stored is None or not len(stored[0]):
        raise ValueError(f"{run.path}: the kinetic job {key} stored nothing yet")
    times, rho = stored
    f_times, f = run.table(key, "f")
    f = f.reshape(len(f_times), mesh.n_cells, n, n)
    lon = np.degrees(np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0]))
    lat = np.degrees(np.arcsin(np.clip(mesh.centres[:, 2], -1, 1)))
    fig = new_figure((14, 8))
    axes = fig.subplots(2, 3)
    top = float(rho.max())
    for ax, i in ((axes[0, 0], 0), (axes[0, 1], len(times) - 1)):
        sc = ax.scatter(lon, lat, c=rho[i], s=6, vmin=0, vmax=top, cmap="viridis", rasterized=True)
        ax.set_title(f"marginal density rho, t = {times[i]:.3g} ({key.split('/')[1]})", fontsize=9)
        ax.set_xlabel("longitude (deg)")
        ax.set_ylabel("latitude (deg)")
        fig.colorbar(sc, ax=ax)
    c = int(np.argmax(rho[-1]))
    V = case.kinetic.V
    fmax = float(max(f[0, c].max(), f[-1, c].max()))
    for ax, i in ((axes[0, 2], len(f_times) - 1), (axes[1, 0], 0)):
        im = ax.imshow(f[i, c].T, origin="lower", extent=(-V, V, -V, V), vmin=0, vmax=fmax, cmap="magma")
        ax.set_title(
            f"f(x*, v) at t = {f_times[i]:.3g}, x* = (lon {lon[c]:.0f}, lat {lat[c]:.0f})", fontsize=9
        )
        ax.set_xlabel("v1 (cell frame)")
        ax.set_ylabel("v2")
        fig.colorbar(im, ax=ax)
    ax_e, ax_o = axes[1, 1], axes[1, 2]
    for name, sign in (("kinetic", 1), ("interaction", -1), ("hamiltonian", 1)):
        rows = run.diagnostics(name)[key]
        rows = rows[np.argsort(rows[:, 0])]
        label = {"kinetic": "kinetic", "interaction": "potential -E[rho]", "hamiltonian": "Hamiltonian"}[name]
        ax_e.plot(rows[:, 0], sign * (rows[:, 1] - rows[0, 1]), "k--" if name == "hamiltonian" else "-",
                  label=label)  # fmt: skip
    ax_e.set_xlabel("t")
    ax_e.set_title("energy exchange (change since t = 0)", fontsize=9)
    ax_e.legend(fontsize=8)
    ax_e.grid(alpha=0.3)
    for k, lev, nv in sphere_grid_jobs(case):
        got = run.diagnostics("outflow").get(k)
        if got is not None:
            rows = got[np.argsort(got[:, 0])]
            # Drawn from 1e-16 (round-off of a mass 1): the first outputs leave nothing.
            ax_o.semilogy(rows[:, 0], np.maximum(rows[:, 1], 1e-16), label=f"level {lev}, {nv}^2 velocities")
    ax_o.set_xlabel("t")
    ax_o.set_title("outflow through the velocity box", fontsize=9)
    ax_o.legend(fontsize=8)
    ax_o.grid(alpha=0.3)
    fig.suptitle(f"{case.name}: kinetic run on the tangent bundle of S^2 ({case.model.label})", fontsize=10)
    return fig


def plot_kinetic_sphere(case, run: RunFile, out: Path, stem: str) -> list[Path]:
    """Save :func:`sphere_kinetic_figure` as ``<out>/<stem>.sphere.png``."""
    return [save_figure(sphere_kinetic_figure(case, run), Path(out) / f"{stem}.sphere.png")]
