"""A kinetic case's runs (``vlasov-tf kinetic``, and ``vlasov-tf study`` of a case with ``[kinetic]``).

Jobs of the run file (:mod:`vlasov_tf.runs.storage`): ``kinetic/M<Ntheta>_V<Nv>`` for each
phase-space grid of ``kinetic.velocity_cells`` (kind ``"phase"``: the cell averages of f, row-major
(Ntheta, Nv), on its :class:`~vlasov_tf.geometry.meshes.PhaseMesh`; ParaView shows them through the
XDMF companion), and ``kinetic_particles/N<N>_ref`` and ``.../N<N>_L<L>`` for the second-order
tokens (kind ``"particles"``, positions ``(theta, v)``; :func:`particle_jobs`,
:func:`second_order_particles`; on rank 0 under MPI). Diagnostics per job and output
(:data:`KINETIC_DIAGNOSTICS`): mass,
momentum, kinetic energy, the model's interaction energy of the marginal, the Hamiltonian
``kinetic - interaction``, the first mode ``|M|`` and the outflow through ``|v| = V``. Resumable as
every run: finished jobs are skipped, an interrupted one restarts from its last snapshot (the
same steps, the same bits).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

from vlasov_tf.analysis.kinetic_theory import VelocityLaw, least_stable_root, magnetisation
from vlasov_tf.analysis.wasserstein import wasserstein_circle
from vlasov_tf.geometry.meshes import PhaseMesh, circle_mesh
from vlasov_tf.models.base import MeanField, deterministic
from vlasov_tf.parallel import Comm, is_root, on_root, root_only
from vlasov_tf.runs.cases import Case
from vlasov_tf.runs.kinetic_case import KineticSpec
from vlasov_tf.runs.kinetic_sphere_runs import run_kinetic_sphere, sphere_kinetic_report
from vlasov_tf.runs.runner import open_run_file
from vlasov_tf.runs.storage import JobLayout, RunFile
from vlasov_tf.solvers.kinetic_grid import PhaseGrid, kinetic_force, solve_kinetic_grid
from vlasov_tf.solvers.kinetic_particles import solve_kinetic_particles

__all__ = [
    "KINETIC_DIAGNOSTICS",
    "SPHERE_SERIAL",
    "ParticleDistances",
    "diagnostic_series",
    "full_kinetic",
    "hmf_coupling",
    "initial_phase_density",
    "initial_phase_tokens",
    "kinetic_layouts",
    "kinetic_report",
    "particle_distances",
    "particle_jobs",
    "particle_report",
    "run_kinetic",
    "second_order_particles",
]

_log = logging.getLogger(__name__)

#: Why a sphere kinetic case does not run under MPI.
SPHERE_SERIAL = (
    "the kinetic grid on the sphere (vlasov_tf.solvers.kinetic_sphere) is serial: run it on one rank "
    "(the circle's phase-space grid is the one split across ranks)"
)

#: What each kinetic job stores per output beside its snapshots.
KINETIC_DIAGNOSTICS = ("mass", "momentum", "kinetic", "interaction", "hamiltonian", "mode1", "outflow")


def second_order_particles(
    model: MeanField, theta0: np.ndarray, v0: np.ndarray, weights: np.ndarray, T: float, layers: int | None,
    friction: float, times: np.ndarray, *, reference_steps: int = 0, noise_seed: tuple[int, ...] = (0,),
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The second-order tokens from ``theta0``, ``v0`` (N,) with ``weights`` (N,) over ``[0, T]``,
    ``(theta, v)`` (n_out, N) at ``times``
    (:func:`~vlasov_tf.solvers.kinetic_particles.solve_kinetic_particles` on the circle).

    ``layers`` an int: the momentum Transformer of that depth (method ``"layers"``, h = T / L:
    kick ``v <- v + h (F - gamma v)``, then the geodesic drift). None: the continuous reference,
    RK4 (order 4) of ``reference_steps`` steps (0: 16 T, steps of 1/16), or "verlet" (order 2) for
    a noisy model (RK4 has no heat bath).
    """
    x0 = np.stack([np.cos(theta0), np.sin(theta0)], axis=1)
    u0 = v0[:, None] * np.stack([-np.sin(theta0), np.cos(theta0)], axis=1)
    if layers is not None:
        method, steps = "layers", int(layers)
    else:
        method = "verlet" if model.noise > 0 else "rk4"
        steps = int(reference_steps) or int(np.ceil(16 * T))
    sol = solve_kinetic_particles(model, x0, u0, weights, T=T, method=method, steps=steps, friction=friction,
                                  t_eval=times, noise_seed=noise_seed)  # fmt: skip
    x, u = sol.positions, sol.velocities
    theta = np.mod(np.arctan2(x[..., 1], x[..., 0]), 2 * np.pi)
    return theta, u[..., 1] * x[..., 0] - u[..., 0] * x[..., 1]


def _particles_available(case: Case) -> bool:
    return bool(case.particles.tokens)


def _spec(case: Case) -> KineticSpec:
    if case.kinetic is None:
        raise ValueError(f"{case.source}: no [kinetic] table (friction, velocity_box, velocity_cells, ...)")
    return case.kinetic


def _key(grid: PhaseGrid) -> str:
    return f"kinetic/M{grid.n_theta}_V{grid.n_v}"


def kinetic_layouts(case: Case) -> list[JobLayout]:
    """A phase job per grid, then the particle jobs of :func:`particle_jobs` (with ``particles.tokens``)."""
    spec = _spec(case)
    out = [
        JobLayout(_key(g), "phase", mesh=PhaseMesh(g.n_theta, g.n_v, g.V), attrs=_attrs(spec, g),
                  tables={"lost": (g.n_theta,)})
        for g in spec.grids()
    ]
    if _particles_available(case):
        out += [
            JobLayout(key, "particles", tokens=n, d=2,
                      attrs={"tokens": n, "layers": -1 if L is None else L, "coordinates": "theta, v"})
            for key, n, L in particle_jobs(case)
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
    """Run the kinetic jobs of ``case`` into the run file ``path`` (module docstring); resumable.
    A case on the sphere runs :func:`~vlasov_tf.runs.kinetic_sphere_runs.run_kinetic_sphere`
    (serial only: ValueError under more than one rank)."""
    if case.geometry == "sphere":
        if comm is not None and comm.size > 1:
            raise ValueError(SPHERE_SERIAL)
        return run_kinetic_sphere(case, path, resume=resume, overwrite=overwrite)
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


def particle_jobs(case: Case) -> list[tuple[str, int, int | None]]:
    """``(key, N, L)`` of the second-order token jobs in run order: for each N of ``particles.tokens``
    the continuous reference ``kinetic_particles/N<N>_ref`` (L None), then ``.../N<N>_L<L>`` for each
    depth of ``particles.layers``."""
    out: list[tuple[str, int, int | None]] = []
    for n in sorted(case.particles.tokens):
        out.append((f"kinetic_particles/N{n}_ref", n, None))
        out += [(f"kinetic_particles/N{n}_L{L}", n, L) for L in sorted(case.particles.layers)]
    return out


def initial_phase_tokens(case: Case, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(theta, v, weights)``, (n,) each: the second-order tokens of N = n. Angles from the case's
    first-order tokens (``particles.sampling``); velocities from the velocity law, i.i.d. by the
    stream ``default_rng((seed, n, 1))`` for "random" sampling, and for "quantiles" the law's
    quantiles at ``frac((i + 1/2) phi)`` (phi the golden ratio: a Kronecker lattice in phase space,
    so the empirical f_0 has no Monte Carlo noise to seed an instability with)."""
    x, w = case.initial_tokens(n)
    theta0 = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)
    law = _spec(case).velocity
    if case.particles.sampling == "quantiles":
        u = np.mod((np.arange(n) + 0.5) * (1 + np.sqrt(5)) / 2, 1.0)
        return theta0, _velocity_quantiles(law, u), w
    return theta0, _sample_velocity(law, n, case.particles.seed), w


def _velocity_quantiles(law: VelocityLaw, u: np.ndarray) -> np.ndarray:
    """The law's quantiles at ``u`` in (0, 1) (bisection on its distribution function, to round-off)."""
    w, mean, temp = (np.asarray(a, float) for a in (law.weights, law.means, law.temperatures))
    w = w / w.sum()
    spread = 40 * np.sqrt(temp.max())
    lo, hi = np.full(len(u), mean.min() - spread), np.full(len(u), mean.max() + spread)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = (w * ndtr((mid[:, None] - mean) / np.sqrt(temp))).sum(axis=1) < u
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _particle_jobs(case: Case, spec: KineticSpec, run: RunFile) -> None:
    ref_steps = case.particles.reference_steps or 4 * max(case.particles.layers, default=0)
    for key, n, L in particle_jobs(case):
        if run.is_complete(key):
            continue
        theta0, v0, w = initial_phase_tokens(case, n)
        tic = time.perf_counter()
        # Deterministic (the noise by its seed): a job cut short is computed again, the outputs it
        # had stored are the same bits and stay.
        theta, v = second_order_particles(
            case.model, theta0, v0, w, case.T, L, spec.friction, case.output_times,
            reference_steps=ref_steps, noise_seed=(case.particles.seed, n),
        )  # fmt: skip
        run.start_job(key, "particles", weights=w, tokens=n, layers=-1 if L is None else L,
                      coordinates="theta, v")  # fmt: skip
        for k, t in enumerate(case.output_times):
            if k >= run.job_info(key)["n"]:
                run.append(key, t, np.stack([theta[k], v[k]], axis=1))
        run.finish_job(key)
        _log.info(f"{key}: {time.perf_counter() - tic:.1f} s")


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


#: Points per grid cell standing for the grid's theta marginal in W1 (the cell's mass spread over
#: its midpoints: within dtheta / (4 * 16) of the piecewise-constant density in W1).
MARGINAL_POINTS = 16


@dataclass(frozen=True)
class ParticleDistances:
    """W1 on the circle of the theta marginals at two output times ``times`` (T/2 and T).

    layers : (n_L, 2) the N_max tokens after L layers against their continuous reference, for ``L``;
    tokens : (n_N, 2) the reference of N tokens against the finest grid's marginal, for ``N``;
    mode : (n_out,) ``|M(t)|`` of the N_max reference (the grid's is a diagnostic).
    """

    times: tuple[float, float]
    n_max: int
    L: np.ndarray
    layers: np.ndarray
    N: np.ndarray
    tokens: np.ndarray
    mode: np.ndarray


def _circle(theta: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


def particle_distances(case: Case, run: RunFile) -> ParticleDistances | None:
    """The particle side of the kinetic study (:class:`ParticleDistances`); None without finished
    particle jobs."""
    spec = _spec(case)
    jobs = [(key, n, L) for key, n, L in particle_jobs(case) if run.is_complete(key)]
    refs = {n: key for key, n, L in jobs if L is None}
    if not refs:
        return None
    mid = len(case.output_times) // 2
    nt, nv = spec.cells[-1]
    stored = run.job_state(f"kinetic/M{nt}_V{nv}")
    if stored is None:
        return None
    g = PhaseGrid(nt, nv, spec.V)
    sub = (np.arange(MARGINAL_POINTS) + 0.5) / MARGINAL_POINTS
    cells = _circle(((np.arange(nt)[:, None] + sub) * g.dtheta).ravel())

    def theta_of(key: str) -> np.ndarray:
        st = run.job_state(key)
        assert st is not None
        return st[1][[mid, -1], :, 0]

    def grid_w1(theta: np.ndarray, j: int) -> float:
        rho = stored[1][[mid, -1][j]].reshape(nt, nv).sum(axis=1)
        return wasserstein_circle(_circle(theta), None, cells, np.repeat(np.maximum(rho, 0), MARGINAL_POINTS))

    N = np.array(sorted(refs))
    tokens = np.array([[grid_w1(theta_of(refs[n])[j], j) for j in range(2)] for n in N])
    n_max = int(N[-1])
    ref = theta_of(refs[n_max])
    deep = sorted((L, key) for key, n, L in jobs if n == n_max and L is not None)
    layers = np.array([[wasserstein_circle(_circle(theta_of(key)[j]), None, _circle(ref[j]), None)
                        for j in range(2)] for _, key in deep]).reshape(len(deep), 2)  # fmt: skip
    st = run.job_state(refs[n_max])
    assert st is not None
    mode = np.abs(np.exp(1j * st[1][:, :, 0]).mean(axis=1))
    t = case.output_times
    return ParticleDistances((float(t[mid]), float(t[-1])), n_max, np.array([L for L, _ in deep], float),
                             layers, N.astype(float), tokens, mode)  # fmt: skip


def _rate_lines(
    name: str, x: np.ndarray, w: np.ndarray, times: tuple[float, float], expected: float
) -> list[str]:
    lines = [f"  {name:>6} " + " ".join(f"{f'W1 t={t:.3g}':>11} {'order':>6}" for t in times)]
    for i in range(len(x)):
        cols = []
        for j in range(2):
            o = "" if i == 0 else f"{np.log(w[i - 1, j] / w[i, j]) / np.log(x[i] / x[i - 1]):.2f}"
            cols.append(f"{w[i, j]:11.3e} {o:>6}")
        lines.append(f"  {int(x[i]):>6} " + " ".join(cols))
    if len(x) > 1:
        fits = [-np.polyfit(np.log(x), np.log(w[:, j]), 1)[0] for j in range(2)]
        lines.append(f"  fitted rates {fits[0]:.2f}, {fits[1]:.2f} (expected {expected:g})")
    return lines


def particle_report(case: Case, run: RunFile) -> list[str]:
    """The particle lines of :func:`kinetic_report`: the rates in L and N and the distances of the
    tokens to the finest grid (W1 on the circle of the theta marginals)."""
    d = particle_distances(case, run)
    if d is None:
        return ["particles: no finished kinetic_particles job"]
    ref = "RK4" if case.model.noise == 0 else "Verlet"
    quiet = case.particles.sampling == "quantiles"
    lines = [f"particles (second-order tokens; W1 of the theta marginals, exact on the circle; the grid's "
             f"marginal by {MARGINAL_POINTS} points a cell):"]  # fmt: skip
    if len(d.L):
        lines.append(f"W1(L layers, the {ref} reference), N = {d.n_max}:")
        lines += _rate_lines("L", d.L, d.layers, d.times, 1.0)
    lines.append(f"W1(N tokens under the {ref} reference, finest grid), "
                 f"{'quantile lattice' if quiet else 'random'} f_0 samples:")  # fmt: skip
    lines += _rate_lines("N", d.N, d.tokens, d.times, 1.0 if quiet else 0.5)
    return lines


def kinetic_report(case: Case, run: RunFile) -> str:
    """The kinetic study of a finished run: the grids' errors against the finest and their orders
    in h, conservation and outflow, and the theory (the first mode's rate against the dispersion
    relation; the thermal magnetisation with friction and noise). On the sphere:
    :func:`~vlasov_tf.runs.kinetic_sphere_runs.sphere_kinetic_report`."""
    if case.geometry == "sphere":
        return sphere_kinetic_report(case, run)
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
        if _particles_available(case):
            lines += particle_report(case, run)
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
    if _particles_available(case):
        lines += particle_report(case, run)
    return "\n".join(lines)


def full_kinetic(case: Case) -> Case:
    """``case`` with the full study's grids: one more, twice as fine as its finest (the circle only:
    ValueError on the sphere, whose next level would take hours)."""
    spec = _spec(case)
    if case.geometry == "sphere":
        raise ValueError(f"{case.source}: the sphere kinetic study has no --full ladder (the next "
                         "mesh level costs ~60 times the shipped one): add [grid] resolutions")  # fmt: skip
    nt, nv = spec.cells[-1]
    cells = (*spec.cells, (2 * nt, 2 * nv))
    return replace(case, kinetic=replace(spec, cells=cells))
