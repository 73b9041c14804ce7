"""A kinetic case on the sphere (``vlasov-tf kinetic`` / ``study`` of a sphere case with ``[kinetic]``).

The phase space is the tangent bundle of S^2 (:func:`~vlasov_tf.solvers.kinetic_sphere.solve_kinetic_sphere`:
each cell of a sphere mesh with an n x n velocity grid on ``[-V, V]^2`` in its frame). Jobs of the run
file: ``kinetic_sphere/K<level>_V<n>`` for each ``[grid]`` resolution and its ``velocity_cells``,
kind ``"grid"`` on the sphere mesh, whose state is the spatial marginal's density (C,) (ParaView
shows it through the XDMF companion) with the phase-space density ``f`` (C n n,), each cell's
velocity nodes row-major in its frame (:func:`~vlasov_tf.solvers.kinetic_sphere.tangent_frames`),
as the per-output table ``"f"``; and ``kinetic_particles/N<N>_ref`` (Stormer-Verlet, order 2) and
``.../N<N>_L<L>`` (the momentum Transformer) for the second-order tokens, kind ``"particles"``
(positions (N, 3)). Diagnostics (:data:`SPHERE_DIAGNOSTICS`) per grid job and output.

Serial only: the sphere solver has no domain decomposition; under more than one rank the CLI
refuses in one line. Resume: finished jobs are skipped; an interrupted one is computed again from
t = 0 (the same steps, the same bits) and keeps the outputs it had stored.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from vlasov_tf.analysis.kinetic_theory import VelocityLaw
from vlasov_tf.analysis.wasserstein import sliced_wasserstein_sphere
from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.runs.cases import Case
from vlasov_tf.runs.kinetic_case import KineticSpec
from vlasov_tf.runs.runner import open_run_file
from vlasov_tf.runs.storage import JobLayout, RunFile
from vlasov_tf.solvers.kinetic_particles import solve_kinetic_particles
from vlasov_tf.solvers.kinetic_sphere import solve_kinetic_sphere
from vlasov_tf.solvers.velocity_remap import VelocityGrid

__all__ = [
    "SPHERE_DIAGNOSTICS",
    "SPHERE_PROJECTIONS",
    "initial_sphere_tokens",
    "initial_tangent_density",
    "run_kinetic_sphere",
    "sphere_distances",
    "sphere_grid_jobs",
    "sphere_kinetic_report",
    "sphere_particle_jobs",
]

_log = logging.getLogger(__name__)

#: What each grid job stores per output: mass, the outflow through the velocity box, kinetic and
#: interaction energy, the Hamiltonian ``kinetic - interaction`` and ``|L|``, the angular momentum.
SPHERE_DIAGNOSTICS = ("mass", "outflow", "kinetic", "interaction", "hamiltonian", "angular")
#: Directions of the sliced W1 between the grid's marginal and the tokens (fixed seed 0).
SPHERE_PROJECTIONS = 100


def _spec(case: Case) -> KineticSpec:
    if case.kinetic is None:
        raise ValueError(f"{case.source}: no [kinetic] table (friction, velocity_box, velocity_cells, ...)")
    return case.kinetic


def sphere_grid_jobs(case: Case) -> list[tuple[str, int, int]]:
    """``(key, level, n)`` of the grid jobs, coarse to fine."""
    return [(f"kinetic_sphere/K{level}_V{n}", level, n) for level, n in _spec(case).cells]


def sphere_particle_jobs(case: Case) -> list[tuple[str, int, int | None]]:
    """``(key, N, L)``: per N the reference (L None), then each depth."""
    out: list[tuple[str, int, int | None]] = []
    for n in sorted(case.particles.tokens):
        out.append((f"kinetic_particles/N{n}_ref", n, None))
        out += [(f"kinetic_particles/N{n}_L{L}", n, L) for L in sorted(case.particles.layers)]
    return out


def _layouts(case: Case) -> list[JobLayout]:
    out = []
    for key, level, n in sphere_grid_jobs(case):
        mesh = case.mesh(level)
        out.append(JobLayout(key, "grid", mesh=mesh, attrs={"level": level, "velocity_cells": n},
                             tables={"f": (mesh.n_cells * n * n,)}))  # fmt: skip
    out += [
        JobLayout(key, "particles", tokens=n, d=3, attrs={"tokens": n, "layers": -1 if L is None else L})
        for key, n, L in sphere_particle_jobs(case)
    ]
    return out


def _isotropic(law: VelocityLaw, speed2: np.ndarray) -> np.ndarray:
    """The 2-d isotropic law ``sum_s w_s exp(-|v|^2 / 2 T_s) / (2 pi T_s)`` at ``|v|^2``."""
    w = np.asarray(law.weights, float)
    w = w / w.sum()
    t = np.asarray(law.temperatures, float)
    return (w * np.exp(-speed2[..., None] / (2 * t)) / (2 * np.pi * t)).sum(axis=-1)


def initial_tangent_density(case: Case, mesh: MeshGeometry, n: int) -> np.ndarray:
    """(C, n, n) ``f_0 = rho_0 g(|v|)`` at the phase nodes: [initial]'s cell averages on ``mesh``
    times the isotropic velocity law at each cell's velocity nodes (the velocity grid's midpoints)."""
    grid = VelocityGrid(_spec(case).V, n)
    rho = case.initial.cell_averages(mesh)
    g = _isotropic(_spec(case).velocity, (grid.nodes**2).sum(axis=1)).reshape(n, n)
    return rho[:, None, None] * g[None]


def initial_sphere_tokens(case: Case, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, v, weights)``: the case's first-order tokens of N = n and tangent velocities drawn from
    the isotropic law by the stream ``default_rng((seed, n, 1))``."""
    x, w = case.initial_tokens(n)
    law = _spec(case).velocity
    rng = np.random.default_rng((case.particles.seed, n, 1))
    p = np.asarray(law.weights, float)
    comp = rng.choice(len(p), size=n, p=p / p.sum())
    g = rng.standard_normal((n, 3)) * np.sqrt(np.asarray(law.temperatures))[comp][:, None]
    v = g - np.einsum("ij,ij->i", g, x)[:, None] * x
    return x, v, w


def run_kinetic_sphere(
    case: Case, path: str | Path, *, resume: bool = False, overwrite: bool = False
) -> Path:
    """Run the sphere kinetic jobs of ``case`` into ``path`` (module docstring); resumable."""
    path, spec = Path(path), _spec(case)
    run, _ = open_run_file(case, path, _layouts(case), SPHERE_DIAGNOSTICS, resume=resume, overwrite=overwrite)
    try:
        for key, level, n in sphere_grid_jobs(case):
            if not run.is_complete(key):
                _grid_job(case, spec, run, key, level, n)
        for key, n, L in sphere_particle_jobs(case):
            if not run.is_complete(key):
                _particle_job(case, spec, run, key, n, L)
    finally:
        run.close()
    return path


def _grid_job(case: Case, spec: KineticSpec, run: RunFile, key: str, level: int, n: int) -> None:
    mesh = case.mesh(level)
    tic = time.perf_counter()
    sol = solve_kinetic_sphere(mesh, initial_tangent_density(case, mesh, n), case.model, gamma=spec.friction,
                               T=case.T, V=spec.V, n_v=n, times=list(case.output_times),
                               max_dt=None if not np.isfinite(spec.dt) else spec.dt)  # fmt: skip
    run.start_job(key, "grid", mesh=mesh, level=level, velocity_cells=n)
    stored = run.job_info(key)["n"]
    for k, t in enumerate(sol.times):
        if k >= stored:
            run.add_row(key, "f", t, sol.f[k].ravel())
            run.append(key, t, sol.rho[k] / mesh.areas)
        inter = float(sol.potential[k])
        rows = {
            "mass": float(sol.mass[k]), "outflow": float(sol.outflow[k]), "kinetic": float(sol.kinetic[k]),
            "interaction": inter, "hamiltonian": float(sol.kinetic[k]) - inter,
            "angular": float(np.linalg.norm(sol.angular[k])),
        }  # fmt: skip
        run.add_diagnostics([(name, key, float(t), value) for name, value in rows.items()])
    run.finish_job(key)
    _log.info(f"{key}: {mesh.n_cells} cells x {n}^2 velocities, {sol.steps} steps in "
              f"{time.perf_counter() - tic:.1f} s")  # fmt: skip


def _particle_job(case: Case, spec: KineticSpec, run: RunFile, key: str, n: int, L: int | None) -> None:
    x0, v0, w = initial_sphere_tokens(case, n)
    tic = time.perf_counter()
    if L is None:
        method, steps = "verlet", case.particles.reference_steps or 4 * max(case.particles.layers, default=25)
    else:
        method, steps = "layers", L
    sol = solve_kinetic_particles(case.model, x0, v0, w, T=case.T, method=method, steps=steps,
                                  friction=spec.friction, t_eval=case.output_times,
                                  noise_seed=(case.particles.seed, n))  # fmt: skip
    run.start_job(key, "particles", weights=w, tokens=n, layers=-1 if L is None else L)
    stored = run.job_info(key)["n"]
    for k, t in enumerate(sol.times):
        if k >= stored:
            run.append(key, t, sol.positions[k])
    run.finish_job(key)
    _log.info(f"{key}: {time.perf_counter() - tic:.1f} s")


def sphere_distances(case: Case, run: RunFile) -> dict[str, np.ndarray]:
    """Sliced W1 (:data:`SPHERE_PROJECTIONS` directions, seed 0) of the spatial marginals at T/2 and
    T: ``"grids"`` (n_grids, 2) each grid's marginal (cell masses at the centres) against the
    largest N's reference tokens; ``"N"``, ``"tokens"`` (n_N, 2) each N's reference against the
    finest grid; ``"L"``, ``"layers"`` (n_L, 2) the largest N after L layers against its reference."""
    mid = len(case.output_times) // 2
    picks = [mid, len(case.output_times) - 1]

    def state(key: str) -> np.ndarray:
        stored = run.job_state(key)
        if stored is None or not run.is_complete(key):
            raise ValueError(f"{run.path}: the job {key} is not finished: --resume the run")
        return stored[1][picks]

    grids = []
    for key, level, _ in sphere_grid_jobs(case):
        mesh = case.mesh(level)
        grids.append((mesh.centres, state(key) * mesh.areas))

    def sw(a: np.ndarray, wa: np.ndarray | None, b: np.ndarray, wb: np.ndarray | None) -> float:
        return sliced_wasserstein_sphere(a, wa, b, wb, n_projections=SPHERE_PROJECTIONS, seed=0)

    refs = {n: state(key) for key, n, L in sphere_particle_jobs(case) if L is None}
    N = np.array(sorted(refs), dtype=float)
    out: dict[str, np.ndarray] = {"N": N, "times": case.output_times[picks]}
    if not refs:
        return out
    top = refs[int(N[-1])]
    out["grids"] = np.array([[sw(c, m[j], top[j], None) for j in range(2)] for c, m in grids])
    out["tokens"] = np.array([[sw(grids[-1][0], grids[-1][1][j], refs[n][j], None) for j in range(2)]
                              for n in sorted(refs)])  # fmt: skip
    deep = [(L, key) for key, n, L in sphere_particle_jobs(case) if n == int(N[-1]) and L is not None]
    out["L"] = np.array([L for L, _ in deep], dtype=float)
    out["layers"] = np.array([[sw(state(key)[j], None, top[j], None) for j in range(2)]
                              for _, key in deep]).reshape(len(deep), 2)  # fmt: skip
    return out


def _series(run: RunFile, name: str, key: str) -> np.ndarray:
    rows = run.diagnostics(name)[key]
    return rows[np.argsort(rows[:, 0]), 1]


def sphere_kinetic_report(case: Case, run: RunFile) -> str:
    """The study of a finished sphere kinetic run: per grid the mass with the outflow, the outflow,
    the Hamiltonian's and the angular momentum's drift; the sliced W1 of the spatial marginals of
    the grids against the tokens and of the tokens against the finest grid (N) and their reference (L)."""
    spec = _spec(case)
    lines = [f"kinetic study of {case.name}: the tangent bundle of S^2, |v_i| <= {spec.V:g}, "
             f"gamma = {spec.friction:g}, T = {case.T:g}"]  # fmt: skip
    lines.append(f"{'grid':>14} {'cells':>6} {'mass+out-1':>10} {'outflow':>8} {'|dH|/|H|':>8} {'|d|L||':>8}")
    for key, level, _ in sphere_grid_jobs(case):
        mass, out = _series(run, "mass", key), _series(run, "outflow", key)
        ham, ang = _series(run, "hamiltonian", key), _series(run, "angular", key)
        dh = np.abs(ham - ham[0]).max() / max(abs(ham[0]), 1e-300) if np.isfinite(ham).all() else np.nan
        lines.append(f"{key.split('/')[1]:>14} {case.mesh(level).n_cells:>6} "
                     f"{np.abs(mass + out - mass[0]).max():10.1e} {out[-1]:8.1e} {dh:8.1e} "
                     f"{np.abs(ang - ang[0]).max():8.1e}")  # fmt: skip
    d = sphere_distances(case, run)
    if "grids" not in d:
        return "\n".join(lines)
    t_mid, t_end = d["times"]
    n_max = int(d["N"][-1])
    head = f"{f'SW1 t={t_mid:.3g}':>12} {f'SW1 t={t_end:.3g}':>12}"
    lines.append(f"sliced W1 ({SPHERE_PROJECTIONS} directions) of the spatial marginals:")
    lines.append(f"  grid against the N = {n_max} Verlet tokens:  {head}")
    for (key, _, _), row in zip(sphere_grid_jobs(case), d["grids"], strict=True):
        lines.append(f"  {key.split('/')[1]:>40} {row[0]:12.3e} {row[1]:12.3e}")
    lines.append(f"  N Verlet tokens against the finest grid:      {head}")
    for n, row in zip(d["N"], d["tokens"], strict=True):
        lines.append(f"  {int(n):>40} {row[0]:12.3e} {row[1]:12.3e}")
    if len(d["L"]):
        lines.append(f"  L layers against the Verlet tokens, N = {n_max}: {head}")
        for L, row in zip(d["L"], d["layers"], strict=True):
            lines.append(f"  {int(L):>40} {row[0]:12.3e} {row[1]:12.3e}")
    return "\n".join(lines)
