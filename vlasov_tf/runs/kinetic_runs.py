"""A kinetic case's runs (``vlasov-tf kinetic``, and ``vlasov-tf study`` of a case with ``[kinetic]``).

Jobs of the run file (:mod:`vlasov_tf.runs.storage`): ``kinetic/M<Ntheta>_V<Nv>`` for each
phase-space grid of ``kinetic.velocity_cells`` (kind ``"phase"``: the cell averages of f, row-major
(Ntheta, Nv), on its :class:`~vlasov_tf.geometry.meshes.PhaseMesh`; ParaView shows them through the
XDMF companion), and ``kinetic_particles/N<N>_L<L>`` for the second-order tokens (kind
``"particles"``, positions ``(theta, v)``) when a particle solver is wired in
:func:`second_order_particles`. Diagnostics per job and output (:data:`KINETIC_DIAGNOSTICS`): mass,
momentum, kinetic energy, the model's interaction energy of the marginal, the Hamiltonian
``kinetic - interaction``, the first mode ``|M|`` and the outflow through ``|v| = V``. Resumable as
every run: finished jobs are skipped, an interrupted one restarts from its last snapshot (the
same steps, the same bits).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vlasov_tf.analysis.kinetic_theory import VelocityLaw, least_stable_root, magnetisation
from vlasov_tf.geometry.meshes import PhaseMesh, circle_mesh
from vlasov_tf.models.base import MeanField, deterministic
from vlasov_tf.parallel import Comm, is_root, on_root, root_only
from vlasov_tf.runs.cases import Case
from vlasov_tf.runs.kinetic_case import KineticSpec
from vlasov_tf.runs.runner import open_run_file
from vlasov_tf.runs.storage import JobLayout, RunFile
from vlasov_tf.solvers.kinetic_grid import PhaseGrid, kinetic_force, solve_kinetic_grid

__all__ = [
    "KINETIC_DIAGNOSTICS",
    "diagnostic_series",
    "full_kinetic",
    "hmf_coupling",
    "initial_phase_density",
    "kinetic_layouts",
    "kinetic_report",
    "run_kinetic",
    "second_order_particles",
]

_log = logging.getLogger(__name__)

#: What each kinetic job stores per output beside its snapshots.
KINETIC_DIAGNOSTICS = ("mass", "momentum", "kinetic", "interaction", "hamiltonian", "mode1", "outflow")


def second_order_particles(
    model: MeanField, theta0: np.ndarray, v0: np.ndarray, weights: np.ndarray, T: float, layers: int,
    friction: float, times: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """THE HOOK of the particle side: the second-order tokens (layers ``v <- v + h (F - gamma v)``,
    then the geodesic drift) from ``theta0``, ``v0`` (N,) with ``weights`` (N,) through ``layers``
    layers over ``[0, T]``, returning ``(theta, v)`` (n_out, N) at ``times``; None while no particle
    solver is wired (the kinetic runs then have grid jobs only). The second-order particle solver
    (being written on another branch) is to be called here."""
    return None


def _particles_available(case: Case) -> bool:
    z = np.zeros(1)
    return second_order_particles(case.model, z, z, z + 1.0, case.T, 1, 0.0, np.array([0.0])) is not None


def _spec(case: Case) -> KineticSpec:
    if case.kinetic is None:
        raise ValueError(f"{case.source}: no [kinetic] table (friction, velocity_box, velocity_cells, ...)")
    return case.kinetic


def _key(grid: PhaseGrid) -> str:
    return f"kinetic/M{grid.n_theta}_V{grid.n_v}"


def kinetic_layouts(case: Case) -> list[JobLayout]:
    """A phase job per grid (and the particle jobs when :func:`second_order_particles` is wired)."""
    spec = _spec(case)
    out = [
        JobLayout(_key(g), "phase", mesh=PhaseMesh(g.n_theta, g.n_v, g.V), attrs=_attrs(spec, g),
                  tables={"lost": (g.n_theta,)})
        for g in spec.grids()
    ]
    if _particles_available(case):
        out += [
            JobLayout(f"kinetic_particles/N{n}_L{L}", "particles", tokens=n, d=2,
                      attrs={"tokens": n, "layers": L, "coordinates": "theta, v"})
            for n in case.particles.tokens for L in case.particles.layers
        ]  # fmt: skip
    return out


def initial_phase_density(case: Case, grid: PhaseGrid) -> np.ndarray:
    """(Ntheta, Nv) cell averages of ``f_0 = rho_0(theta) g(v)``: [initial]'s density on the circle
    mesh of Ntheta cells (the same cells) times the velocity law's exact cell averages."""
    rho = case.initial.cell_averages(circle_mesh(grid.n_theta))
    return rho[:, None] * _spec(case).velocity.cell_averages(grid.v_faces)[None, :]


def diagnostic_series(run: RunFile, name: str, key: str) -> np.ndarray:
    """(n_out,) diagnostic ``name`` of job ``key`` at the run's output times, NaN where not stored."""
    times = run.times
    out = np.full(len(times), np.nan)
    rows = run.diagnostics(name).get(key)
    if rows is not None:
        out[np.searchsorted(times, rows[:, 0])] = rows[:, 1]
    return out


def _diagnostics(model: MeanField, grid: PhaseGrid, f: np.ndarray, outflow: float) -> dict[str, float]:
    a = grid.cell_area
    rho = f.sum(axis=1) * grid.dv
    centres = np.stack([np.cos(grid.theta), np.sin(grid.theta)], axis=1)
    energy = model.energy(centres, rho * grid.dtheta)
    kinetic = float((f * (0.5 * grid.v**2 + grid.dv**2 / 24)).sum() * a)
    inter = np.nan if energy is None else float(energy)
    mode = np.exp(1j * grid.theta) * np.sinc(grid.dtheta / (2 * np.pi))
    return {
        "mass": float(f.sum() * a),
        "momentum": float((f * grid.v).sum() * a),
        "kinetic": kinetic,
        "interaction": inter,
        "hamiltonian": kinetic - inter,
        "mode1": float(abs(rho @ mode * grid.dtheta)),
        "outflow": outflow,
    }


def run_kinetic(
    case: Case, path: str | Path, *, resume: bool = False, overwrite: bool = False, comm: Comm | None = None
) -> Path:
    """Run the kinetic jobs of ``case`` into the run file ``path`` (module docstring); resumable."""
    path, spec = Path(path), _spec(case)
    layouts = kinetic_layouts(case)
    opened: list[tuple[RunFile, bool]] = []
    on_root(comm, lambda: opened.append(open_run_file(case, path, layouts, KINETIC_DIAGNOSTICS, resume=resume,
                                                      overwrite=overwrite, comm=comm)))  # fmt: skip
    run = opened[0][0] if opened else None
    try:
        for grid in spec.grids():
            _grid_job(case, spec, run, grid, comm)
        if any(job.kind == "particles" for job in layouts) and is_root(comm):
            _particle_jobs(case, spec, root_only(run))
    finally:
        if run is not None:
            run.close()
    return path


def _grid_job(case: Case, spec: KineticSpec, run: RunFile | None, grid: PhaseGrid, comm: Comm | None) -> None:
    key = _key(grid)
    mesh = PhaseMesh(grid.n_theta, grid.n_v, grid.V)

    def look() -> tuple[bool, float, np.ndarray | None, np.ndarray | None]:
        out = root_only(run)
        if out.is_complete(key):
            return True, 0.0, None, None
        stored = out.job_state(key)
        if stored is None or not len(stored[0]):
            return False, 0.0, None, None
        t = float(stored[0][-1])
        # The column losses at the last snapshot: stored before it (store), so always there.
        times, rows = out.table(key, "lost")
        return False, t, stored[1][-1].reshape(grid.n_theta, grid.n_v), rows[np.searchsorted(times, t)]

    done, t0, state, outflow0 = on_root(comm, look)
    if done:
        _log.info(f"{key}: complete")
        return
    if comm is not None:
        t0, state, outflow0 = comm.bcast((t0, state, outflow0), root=0)
    on_root(comm, lambda: root_only(run).start_job(key, "phase", mesh=mesh, **_attrs(spec, grid)))
    f0 = initial_phase_density(case, grid) if state is None else state
    tic = time.perf_counter()

    def store(t: float, f: np.ndarray, lost: np.ndarray) -> None:
        # The losses first, then the snapshot (its time commits it), then the diagnostics, which a
        # resume computes again for the snapshot it starts from (a kill may have come before them).
        out = root_only(run)
        if not (out.job_info(key)["n"] and t <= t0):
            out.add_row(key, "lost", t, lost)
            out.append(key, t, f.ravel())
        diag = _diagnostics(case.model, grid, f, float(lost.sum()) * grid.cell_area)
        out.add_diagnostics([(name, key, t, value) for name, value in diag.items()])

    sol = solve_kinetic_grid(case.model, f0, grid, case.T, dt=spec.step(grid.n_theta), friction=spec.friction,
                             t_eval=case.output_times, streaming=spec.streaming,  # type: ignore[arg-type]
                             comm=comm, callback=store if is_root(comm) else None, t0=t0,
                             outflow0=outflow0)  # fmt: skip
    on_root(comm, lambda: root_only(run).finish_job(key))
    _log.info(f"{key}: {sol.steps} steps in {time.perf_counter() - tic:.1f} s")


def _attrs(spec: KineticSpec, grid: PhaseGrid) -> dict[str, Any]:
    return {
        "theta_cells": grid.n_theta, "velocity_cells": grid.n_v, "velocity_box": grid.V,
        "dt": spec.step(grid.n_theta), "friction": spec.friction, "streaming": spec.streaming,
    }  # fmt: skip


def _particle_jobs(case: Case, spec: KineticSpec, run: RunFile) -> None:
    for n in case.particles.tokens:
        x, w = case.initial_tokens(n)
        theta0 = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)
        v0 = _sample_velocity(spec.velocity, n, case.particles.seed)
        for L in case.particles.layers:
            key = f"kinetic_particles/N{n}_L{L}"
            if run.is_complete(key):
                continue
            got = second_order_particles(
                case.model, theta0, v0, w, case.T, L, spec.friction, case.output_times
            )
            assert got is not None
            run.start_job(key, "particles", weights=w, tokens=n, layers=L, coordinates="theta, v")
            for k, t in enumerate(case.output_times):
                if k >= run.job_info(key)["n"]:
                    run.append(key, t, np.stack([got[0][k], got[1][k]], axis=1))
            run.finish_job(key)


def _sample_velocity(law: VelocityLaw, n: int, seed: int) -> np.ndarray:
    """(n,) velocities from ``law`` by the stream ``default_rng((seed, n, 1))`` (the positions use
    ``(seed, n)``)."""
    rng = np.random.default_rng((seed, n, 1))
    w = np.asarray(law.weights, float)
    comp = rng.choice(len(w), size=n, p=w / w.sum())
    return np.asarray(law.means)[comp] + np.sqrt(np.asarray(law.temperatures))[comp] * rng.standard_normal(n)


# -- the study -----------------------------------------------------------------------------------------


def hmf_coupling(model: MeanField) -> float | None:
    """K when the model's force on the circle is the HMF force ``K int sin(theta' - theta) rho`` for
    densities of mass 1 (attention at B = 0, the constant kernel, ...), else None: the force of
    ``(1 + cos theta) / 2 pi`` is ``-(K/2) sin theta`` and that of ``(1 + cos 2 theta) / 2 pi`` is 0."""
    grid = PhaseGrid(64, 4, 1.0)
    th = grid.theta
    flow = deterministic(model)
    f1 = kinetic_force(flow, 0.0, grid, (1 + np.cos(th)) / (2 * np.pi))
    f2 = kinetic_force(flow, 0.0, grid, (1 + np.cos(2 * th)) / (2 * np.pi))
    K = float(-2 * f1 @ np.sin(th) / (np.sin(th) @ np.sin(th)))
    if np.abs(f1 + 0.5 * K * np.sin(th)).max() > 1e-9 * max(1.0, abs(K)) or np.abs(f2).max() > 1e-9:
        return None
    return K


def _rate(times: np.ndarray, mode: np.ndarray) -> float | None:
    """The slope of log |M| over the second half of the linear regime's outputs (the first stretch
    with |M| below 0.05 and t > 0; its first half has the other roots' transients)."""
    sel = (times > 0) & (mode < 0.05) & (mode > 0)
    idx = np.flatnonzero(sel)
    if len(idx) < 3:
        return None
    run = idx[: int(np.argmax(np.diff(idx) > 1)) + 1] if np.any(np.diff(idx) > 1) else idx
    run = run[len(run) // 2 :]
    if len(run) < 3:
        return None
    return float(np.polyfit(times[run], np.log(mode[run]), 1)[0])


def kinetic_report(case: Case, run: RunFile) -> str:
    """The kinetic study of a finished run: the grids' errors against the finest and their orders
    in h, conservation and outflow, and the theory (the first mode's rate against the dispersion
    relation; the thermal magnetisation with friction and noise)."""
    spec = _spec(case)
    grids = spec.grids()
    mid = len(case.output_times) // 2
    states: dict[str, np.ndarray] = {}
    for g in grids:
        stored = run.job_state(_key(g))
        if stored is None or not run.is_complete(_key(g)):
            raise ValueError(f"{run.path}: the kinetic job {_key(g)} is not finished: --resume the run")
        states[_key(g)] = stored[1][[mid, -1]].reshape(2, g.n_theta, g.n_v)
    t_mid = case.output_times[mid]
    lines = [f"kinetic study of {case.name}: S^1 x [-{spec.V:g}, {spec.V:g}], gamma = {spec.friction:g}, "
             f"sigma = {case.model.noise:g}, T = {case.T:g}"]  # fmt: skip
    lines.append(f"{'grid':>14} {'h_theta':>8} {'dt':>7} {f'L1 err t={t_mid:.3g}':>14} {'order':>6} "
                 f"{'L1 err T':>9} {'order':>6} {'mass+out-1':>10} {'|dP|':>8} {'|dH|/|H|':>8} "
                 f"{'outflow':>8} {'min f':>8}")  # fmt: skip
    best = grids[-1]
    diags = {n: {_key(g): diagnostic_series(run, n, _key(g)) for g in grids} for n in KINETIC_DIAGNOSTICS}
    prev: list[float] | None = None
    for g in grids:
        key = _key(g)
        errs: list[float] | None = None
        if g is not best and best.n_theta % g.n_theta == 0 and best.n_v % g.n_v == 0:
            rt, rv = best.n_theta // g.n_theta, best.n_v // g.n_v
            coarse = states[_key(best)].reshape(2, g.n_theta, rt, g.n_v, rv).mean(axis=(2, 4))
            errs = list(np.abs(states[key] - coarse).sum(axis=(1, 2)) * g.cell_area)
        cols = []
        for j in range(2):
            err = "" if errs is None else f"{errs[j]:.3e}"
            order = "" if (errs is None or prev is None) else f"{np.log2(prev[j] / errs[j]):.2f}"
            cols.append(f"{err:>{14 if j == 0 else 9}} {order:>6}")
        mass, out = diags["mass"][key], diags["outflow"][key]
        mom, ham = diags["momentum"][key], diags["hamiltonian"][key]
        dh = np.abs(ham - ham[0]).max() / max(abs(ham[0]), 1e-300) if np.isfinite(ham).all() else np.nan
        lines.append(
            f"{key.split('/')[1]:>14} {g.dtheta:8.4f} {spec.step(g.n_theta):7.4f} {cols[0]} {cols[1]} "
            f"{np.abs(mass + out - mass[0]).max():10.1e} {np.abs(mom - mom[0]).max():8.1e} {dh:8.1e} "
            f"{out[-1]:8.1e} {states[key][1].min():8.1e}"
        )
        prev = errs
    lines.append("(errors against the finest grid, block-averaged onto each; |dH|/|H| the Hamiltonian's "
                 "drift, conserved for gamma = sigma = 0)")  # fmt: skip
    K = hmf_coupling(case.model)
    if K is None:
        lines.append("theory: the model's force is not the HMF force (no dispersion relation here)")
        return "\n".join(lines)
    mode = diags["mode1"][_key(best)]
    times = case.output_times
    if spec.friction == 0 and case.model.noise == 0:
        omega = least_stable_root(K, spec.velocity)
        rate = _rate(times, mode)
        measured = "not measured (no linear stretch of |M| < 0.05)" if rate is None else f"{rate:.4f}"
        lines.append(f"theory (HMF, K = {K:g}): first mode omega = {omega.real:.4f} {omega.imag:+.4f} i "
                     "of the homogeneous state (wofz)")  # fmt: skip
        lines.append(f"measured rate of |M| on {_key(best)} (second half of the outputs with |M| < 0.05): "
                     f"{measured}")  # fmt: skip
    if spec.friction > 0 and case.model.noise > 0:
        T_eq = case.model.noise / spec.friction
        lines.append(f"theory (HMF, K = {K:g}): thermal state T = sigma/gamma = {T_eq:.4g}, |M| = "
                     f"{magnetisation(K, T_eq):.4f}; the grid's |M(T)| = {mode[-1]:.4f}")  # fmt: skip
    if not _particles_available(case):
        lines.append("particles: no second-order particle solver is wired "
                     "(kinetic_runs.second_order_particles)")  # fmt: skip
    return "\n".join(lines)


def full_kinetic(case: Case) -> Case:
    """``case`` with the full study's grids: one more, twice as fine as its finest."""
    spec = _spec(case)
    nt, nv = spec.cells[-1]
    cells = (*spec.cells, (2 * nt, 2 * nv))
    return replace(case, kinetic=replace(spec, cells=cells))
