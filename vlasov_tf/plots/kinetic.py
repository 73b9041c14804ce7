"""Figures of a kinetic run (:mod:`vlasov_tf.runs.kinetic_runs`): f(theta, v) in phase space over time
with a logarithmic colour scale (the whorls of trapped tokens and the holes between them), the
energy exchange between kinetic and interaction energy with the first mode against linear theory,
and the grids' errors against h."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import LogNorm

from vlasov_tf.analysis.kinetic_theory import least_stable_root
from vlasov_tf.plots.canvas import DYNAMIC_RANGE, new_figure, save_figure
from vlasov_tf.runs.kinetic_runs import diagnostic_series, hmf_coupling, particle_distances

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vlasov_tf.runs.storage import RunFile

__all__ = ["kinetic_energy_figure", "particles_figure", "phase_space_figure", "plot_kinetic"]

#: Output times drawn in the phase-space panels at most.
PANELS = 6


def _finest(case, run: RunFile) -> tuple[str, np.ndarray, np.ndarray, tuple[int, int, float]]:
    nt, nv = case.kinetic.cells[-1]
    key = f"kinetic/M{nt}_V{nv}"
    stored = run.job_state(key)
    if stored is None or not len(stored[0]):
        raise ValueError(f"{run.path}: the kinetic job {key} stored nothing yet")
    return key, stored[0], stored[1], (nt, nv, case.kinetic.V)


def phase_space_figure(case, run: RunFile) -> Figure:
    """f(theta, v) of the finest grid at up to six output times, one logarithmic colour scale (the
    largest value over 1e4 to it)."""
    key, times, states, (nt, nv, V) = _finest(case, run)
    shown = np.unique(np.linspace(0, len(times) - 1, min(PANELS, len(times))).round().astype(int))
    fs = [states[i].reshape(nt, nv) for i in shown]
    top = max(float(f.max()) for f in fs)
    norm = LogNorm(vmin=top / DYNAMIC_RANGE, vmax=top)
    cols = min(3, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    fig = new_figure((4.2 * cols + 1.0, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    th = np.linspace(0, 2 * np.pi, nt + 1)
    v = np.linspace(-V, V, nv + 1)
    mesh = None
    for ax, i, f in zip(axes, shown, fs, strict=False):
        mesh = ax.pcolormesh(th, v, np.maximum(f, top / DYNAMIC_RANGE).T, norm=norm, cmap="magma",
                             shading="flat", rasterized=True)  # fmt: skip
        ax.set_title(f"t = {times[i]:.3g}", fontsize=9)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("v")
    for ax in axes[-cols:]:
        ax.set_xlabel("theta")
    if mesh is not None:
        label = f"f(theta, v) (log; floor max/{DYNAMIC_RANGE:g})"
        fig.colorbar(mesh, ax=list(axes[: len(shown)]), label=label)
    spec = case.kinetic
    fig.suptitle(f"{case.name}: phase space, {key.split('/')[1]} (gamma = {spec.friction:g}, "
                 f"sigma = {case.model.noise:g})", fontsize=10)  # fmt: skip
    return fig


def kinetic_energy_figure(case, run: RunFile) -> Figure:
    """Left: the energy exchange, kinetic and interaction energy and the Hamiltonian minus their
    initial values, finest grid. Middle: ``|M(t)|`` of each grid, log scale, with the growth or
    damping of the dispersion relation's root (HMF models). Right: the L1 error of f at T/2 and T
    against the finest grid, by h, with slope-2 guides (past the filamentation time the coarse
    grids do not resolve f: order ~1 there)."""
    key, times, _, _ = _finest(case, run)
    spec = case.kinetic
    keys = [f"kinetic/M{nt}_V{nv}" for nt, nv in spec.cells]
    diag = {
        name: {k: diagnostic_series(run, name, k) for k in keys}
        for name in ("kinetic", "interaction", "hamiltonian", "mode1")
    }
    fig = new_figure((14, 4.2))
    ax_e, ax_m, ax_h = fig.subplots(1, 3)
    kin, inter, ham = (diag[n][key] for n in ("kinetic", "interaction", "hamiltonian"))
    ax_e.plot(times, kin - kin[0], label="kinetic int v^2/2 f")
    if np.isfinite(inter).all():
        ax_e.plot(times, -(inter - inter[0]), label="potential -E[rho]")
        ax_e.plot(times, ham - ham[0], "k--", label="Hamiltonian (sum)")
    ax_e.set_xlabel("t")
    ax_e.set_ylabel("change since t = 0")
    ax_e.set_title("energy exchange", fontsize=10)
    ax_e.legend(fontsize=8)
    ax_e.grid(alpha=0.3)
    for nt, nv in spec.cells:
        k = f"kinetic/M{nt}_V{nv}"
        ax_m.semilogy(times, np.maximum(diag["mode1"][k], 1e-300), label=f"M{nt} x V{nv}")
    K = hmf_coupling(case.model)
    if K is not None and spec.friction == 0 and case.model.noise == 0:
        omega = least_stable_root(K, spec.velocity)
        # Anchored mid-way through the linear stretch (|M| < 0.05): the start mixes in the
        # other roots' transients.
        mode = diag["mode1"][key]
        linear = np.flatnonzero((mode < 0.05) & (times > 0))
        if len(linear):
            i = linear[len(linear) // 2]
            near = np.abs(times - times[i]) <= 0.5 * (times[-1] - times[0])
            guide = mode[i] * np.exp(omega.imag * (times[near] - times[i]))
            ax_m.semilogy(times[near], guide, "k:", label=f"dispersion relation: Im omega = {omega.imag:.3f}")
    ax_m.set_xlabel("t")
    ax_m.set_ylabel("|M| = |int e^{i theta} rho|")
    ax_m.set_title("first mode", fontsize=10)
    ax_m.legend(fontsize=8)
    ax_m.grid(alpha=0.3)
    best = run.job_state(key)
    assert best is not None
    nt_f, nv_f = spec.cells[-1]
    mid = len(times) // 2
    for i, marker in ((mid, "s-"), (len(times) - 1, "o-")):
        if i >= len(best[1]):
            continue
        fine = best[1][i]
        hs, errs = [], []
        for nt, nv in spec.cells[:-1]:
            st = run.job_state(f"kinetic/M{nt}_V{nv}")
            if st is None or nt_f % nt or nv_f % nv or i >= len(st[1]):
                continue
            coarse = fine.reshape(nt, nt_f // nt, nv, nv_f // nv).mean(axis=(1, 3))
            area = (2 * np.pi / nt) * (2 * spec.V / nv)
            errs.append(float(np.abs(st[1][i].reshape(nt, nv) - coarse).sum() * area))
            hs.append(2 * np.pi / nt)
        if errs:
            ax_h.loglog(hs, errs, marker, label=f"L1 error of f(t = {times[i]:.3g}) vs finest")
            h = np.array(hs)
            ax_h.loglog(h, errs[-1] * (h / h[-1]) ** 2, "k:", lw=1)
    ax_h.plot([], [], "k:", lw=1, label="slope 2")
    ax_h.legend(fontsize=8)
    ax_h.set_xlabel("h_theta (dt and h_v scale with it)")
    ax_h.set_title("grid convergence", fontsize=10)
    ax_h.grid(alpha=0.3, which="both")
    fig.suptitle(f"{case.name}: kinetic run ({case.model.label})", fontsize=10)
    return fig


def particles_figure(case, run: RunFile) -> Figure | None:
    """Left: ``|M(t)|`` of the finest grid and of the largest N's second-order tokens (RK4 reference).
    Middle: W1 of the theta marginals, N_max tokens after L layers against the reference, by L
    (slope -1 guide). Right: the reference's tokens against the finest grid, by N (slope -1/2 for
    random samples, -1 for the quantile lattice). None without finished particle jobs."""
    d = particle_distances(case, run)
    if d is None:
        return None
    key, times, _, _ = _finest(case, run)
    fig = new_figure((14, 4.2))
    ax_m, ax_l, ax_n = fig.subplots(1, 3)
    ax_m.semilogy(
        times, np.maximum(diagnostic_series(run, "mode1", key), 1e-300), label=f"grid {key.split('/')[1]}"
    )
    ax_m.semilogy(times, np.maximum(d.mode, 1e-300), "--", label=f"tokens N = {d.n_max} (reference)")
    ax_m.set_xlabel("t")
    ax_m.set_ylabel("|M|")
    ax_m.set_title("first mode: grid and particles", fontsize=10)
    ax_m.legend(fontsize=8)
    ax_m.grid(alpha=0.3)
    slope_n = 1.0 if case.particles.sampling == "quantiles" else 0.5
    for ax, x, w, slope, what in ((ax_l, d.L, d.layers, 1.0, "L"), (ax_n, d.N, d.tokens, slope_n, "N")):
        for j, marker in ((0, "s-"), (1, "o-")):
            if len(x):
                ax.loglog(x, w[:, j], marker, label=f"t = {d.times[j]:.3g}")
        if len(x):
            ax.loglog(x, w[-1, 1] * (x / x[-1]) ** -slope, "k:", lw=1, label=f"slope -{slope:g}")
        ax.set_xlabel(what)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax_l.set_ylabel("W1 of the theta marginals")
    ax_l.set_title(f"L layers vs the continuous reference (N = {d.n_max})", fontsize=10)
    ax_n.set_title("N tokens (reference) vs the finest grid", fontsize=10)
    fig.suptitle(f"{case.name}: second-order tokens against the phase-space grid", fontsize=10)
    return fig


def plot_kinetic(case, run: RunFile, out: Path, stem: str) -> list[Path]:
    """Save the phase-space and energy figures as ``<out>/<stem>.phase.png`` and ``.energy.png``, and
    with particle jobs ``.particles.png``."""
    paths = [
        save_figure(phase_space_figure(case, run), Path(out) / f"{stem}.phase.png"),
        save_figure(kinetic_energy_figure(case, run), Path(out) / f"{stem}.energy.png"),
    ]
    fig = particles_figure(case, run)
    if fig is not None:
        paths.append(save_figure(fig, Path(out) / f"{stem}.particles.png"))
    return paths
