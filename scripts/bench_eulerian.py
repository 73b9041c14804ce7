"""Benchmark of the Eulerian finite-volume solver: cost of one SSP-RK3 step against mesh size.

What it measures
----------------
One step of :func:`vlasov_tf.solvers.finite_volumes.solve_grid`'s loop, taken apart so that
each piece is timed on its own: the operator ``FiniteVolume(mesh,
field_method=...)`` is built once (its time is the ``setup s`` column:
least-squares gradients and the sparse reconstruction operators; loading the
mesh is not included), then a step is::

    u  = fv.normal_velocity(field, t, rho)
    dt = fv.stable_dt(u, 0.5)
    m, _ = ssp_rk3_step(fv, field, t, m, dt, u)   # and its embedded Heun solution

i.e. three evaluations of the velocity at the face midpoints (one here, two
in the later Runge-Kutta stages) and three MUSCL reconstructions and flux
updates. The step is repeated from the same initial state: best of 3 where
the first run takes under 2 s, a single run otherwise. Quantities the kernel
sums derive once from the read-only mesh arrays (directions, angles) are kept
between the runs and the cases of one mesh, as between the steps of a solve (a
single run of a mesh's first case includes deriving them). Peak memory is that of one
extra step run under ``tracemalloc`` (numpy reports its array allocations to
it; BLAS buffers and the C++ buffers of ducc0 and finufft are not seen), above
what was allocated before it, in MiB; steps over 10 s are not traced again
(``-``).

Field methods (the ``method`` column; :data:`vlasov_tf.kernels.METHODS`, passed as
``FiniteVolume(mesh, field_method=...)``, no package internals patched):

* ``auto``: the solver's default, the cheapest method within 1e-10 per row by
  :func:`vlasov_tf.kernels.choose_method`; the column says what it ran, e.g.
  ``auto(fft)``, from the ``sums.<method>`` sections of :mod:`vlasov_tf.profiling`.
  Its time includes the choice, which the solver makes at every field evaluation.
* forced methods: ``spectral`` (finufft on S^1, ducc0 on S^2, any
  head) and ``dense`` (all C x F pairs: ``3 C F`` per step). Dense runs up to
  ``--dense-max`` cells on the circle (1e4), on sphere levels 0..2 and beyond only
  where the step estimated from the last measured dense pairs per second is under
  ``--max-step-s`` (60 s); otherwise the estimate is printed.
* ``harmonics``: the previous method, the hand-written spherical-harmonic tables of
  ``scripts/legacy_harmonics.py`` (zonal heads on S^2 only), kept as the baseline:
  ``HarmonicPlan(B, queries=face midpoints, points=cell centres)`` is built in
  ``setup s`` (with a ``FiniteVolume``), and the step is the same SSP-RK3 step
  written out with the operator's public parts: three velocities
  ``vlasov_tf.models.attention.velocity_unchecked(..., head_sums=plan)`` (the plan called with the
  cell masses and values = centres) and three ``fv.fluxes`` / ``fv.euler_step``
  stages, the stages of ``ssp_rk3_step``. Skipped where its step, estimated from the last
  level's per (C + F) point, exceeds ``--max-step-s``.
* ``prescribed``: a rigid rotation, no nonlocal cost: the cost of the scheme itself.

``rel diff`` is ``max |u - u_dense| / max |u_dense|`` of the initial normal
velocities against the dense row of the same case; where dense was not run,
against the ``auto`` row, marked ``a`` (e.g. ``3.1e-15a``).

Cases (density: a smooth bump ``exp(8 (<x, p> - 1))`` on a background 0.2,
so that the attention field is not zero):

* circle, attention ``Q = K = V = I``, SA, ``beta = 4`` on uniform grids of
  M = 1e3 ... 1e6 cells: ``auto`` (which picks the FFT circular convolution,
  O(M log M)), ``spectral``, ``dense``; ``prescribed`` at the largest M.
* sphere, ``Q = K = V = I``, SA, ``beta = 4`` on the nested levels 0..5
  (``--max-level``; ``meshes/sphere_L{level}.h5``, 1080 * 4^level cells):
  ``dense``, ``auto``, ``harmonics``, ``prescribed`` (solid-body rotation
  ``v = omega x x``).
* sphere, ``beta = 30``, level 4: ``auto`` (target: <= 1 s per step; <= 0.6 s at
  ``beta = 4``, level 4).
* sphere level 5 (1.1e6 cells) in a fresh child process (``subprocess``, this
  script with ``--level5-child``): it loads the mesh, builds
  ``FiniteVolume(mesh)`` (auto), takes two steps (the first also derives the
  mesh quantities the sums keep) and prints its peak resident memory
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: everything, the interpreter,
  numpy, ducc0 and finufft included, which tracemalloc cannot see). Target: a step
  <= 3 s (the second step), peak RSS < 2 GiB.
* general head on S^2: ``B = beta K^T Q``, values ``V y``, Q, K, V with seeded
  N(0, 1/3) entries (``--seed``), ``beta = 4``: ``auto`` up to ``--max-level``, ``dense``
  at level 0 and on levels 1..3 where its estimate is under ``--max-step-s`` (estimated
  beyond).
* baseline ``fipy-upwind``: FiPy's own first-order upwind scheme
  (:mod:`vlasov_tf.solvers.fipy_baseline`: the level's own triangles extruded
  into a one-cell shell, ``UpwindConvectionTerm``, one implicit step solved
  by ``LinearLUSolver``) with the same rotation velocity and time step, on
  levels 0..2 (``--fipy-max-level``). Its ``setup s`` includes the extrusion; its
  ``faces`` are the lateral faces (the surface mesh's edges). It is *first
  order* in space and time, against the project's second-order MUSCL space
  discretisation and third-order SSP-RK3, which take three stages per step.

Columns: geometry, cells, faces, field, method, setup s, step s, cells per
second (cells / step s), peak MiB, rel diff.

The verdicts: a circle attention step with M = 1e6 cells (auto) under 1 s; a sphere
step at level 4 (auto) <= 0.6 s at beta = 4 and <= 1 s at beta = 30; at level 5 a step
<= 3 s with peak RSS < 2 GiB.

Run it on an otherwise idle machine: the kernel sums run on all
``VLASOV_TF_NUM_THREADS`` threads (default: the usable cores), and with another busy
process on the cores the steps took up to 2x longer (2 cores). The header prints the
threads, BLAS's and the load average, with a warning above 1.

Run it from the repository root (sphere levels 3, 4 and 5 are not committed: build them
once with ``vlasov-tf mesh --level 3 4 5``)::

    .venv/bin/vlasov-tf mesh --level 3 4 5
    .venv/bin/python scripts/bench_eulerian.py
    .venv/bin/python scripts/bench_eulerian.py --quick
    .venv/bin/python scripts/bench_eulerian.py --max-level 3 --skip-fipy
    .venv/bin/python scripts/bench_eulerian.py --only-level5

``--quick``: circle M <= 1e4 (dense up to 1e3), sphere levels <= 1 (no level-4 or level-5
rows), FiPy level 0. ``--only-level5``: the level-5 child process and its verdict alone.
``--threads`` sets ``VLASOV_TF_NUM_THREADS`` (also for the child).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from benchlib import peak_mib

MIB = 1024.0**2
GIB = 1024.0**3
BETA = 4.0
BETA_SHARP = 30.0
CFL = 0.5
KAPPA = 8.0
BACKGROUND = 0.2
SLOW_S = 2.0
TRACE_MAX_S = 10.0  # steps slower than this are not run again under tracemalloc
MAX_LEVEL = 5
DENSE_LEVELS = 2  # sphere levels always run dense (beyond: if the estimate is under --max-step-s)
GENERAL_DENSE_LEVELS = 3  # the general head's dense rows: levels 0..3 at most
TARGET_M = 1_000_000
TARGET_S = 1.0
SPHERE_TARGETS = {(4, BETA): 0.6, (4, BETA_SHARP): 1.0}  # (level, beta): seconds per step
LEVEL5 = 5
LEVEL5_STEP_S = 3.0
LEVEL5_RSS_GIB = 2.0
LEVEL5_TIMEOUT_S = 600
CIRCLE_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_CIRCLE_SIZES = (1_000, 10_000)
SPHERE_AXIS = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
BUMP_SPHERE = np.array([1.0, 0.3, 0.2]) / np.linalg.norm([1.0, 0.3, 0.2])
BUMP_CIRCLE = np.array([np.cos(1.0), np.sin(1.0)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: M <= 1e4, sphere levels <= 1")
    p.add_argument(
        "--max-level", type=int, default=MAX_LEVEL, help=f"largest sphere level (default {MAX_LEVEL})"
    )
    p.add_argument("--skip-fipy", action="store_true", help="leave out the FiPy baseline")
    p.add_argument("--dense-max", type=int, default=10_000, help="largest circle M for the dense sums")
    p.add_argument("--fipy-max-level", type=int, default=2, help="largest sphere level for FiPy")
    p.add_argument(
        "--max-step-s", type=float, default=60.0, help="skip attention cases estimated slower than this"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the general head's Q, K, V")
    p.add_argument("--threads", type=int, default=None, help="sets VLASOV_TF_NUM_THREADS")
    p.add_argument(
        "--only-level5", action="store_true", help="only the level-5 step and peak memory (child process)"
    )
    p.add_argument("--level5-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 0 <= args.max_level <= MAX_LEVEL:
        p.error(f"--max-level must lie in 0..{MAX_LEVEL}")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.quick:
        args.max_level = min(args.max_level, 1)
        args.fipy_max_level = min(args.fipy_max_level, 0)
        args.dense_max = min(args.dense_max, 1_000)
    return args


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Best wall time of ``fn``: of 3 runs if the first is under ``SLOW_S``, else of 1."""
    t0 = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t0
    if best < SLOW_S:
        for _ in range(2):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
    return best, out


HEADER = "geometry|cells|faces|field|method|setup s|step s|cells/s|peak MiB|rel diff".split("|")
WIDTHS = [8, 7, 7, 11, 14, 8, 9, 9, 9, 9]


def fmt_row(cells: list[str]) -> str:
    out = []
    for i, (c, w) in enumerate(zip(cells, WIDTHS[: len(cells)], strict=True)):
        out.append(c.ljust(w) if i in (0, 3, 4) else c.rjust(w))
    return "  ".join(out).rstrip()


def bump(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return BACKGROUND + np.exp(KAPPA * (points @ centre - 1.0))


def initial_mass(mesh: Any) -> np.ndarray:
    centre = BUMP_CIRCLE if mesh.kind == "circle" else BUMP_SPHERE
    return bump(mesh.centres, centre) * mesh.areas


def circle_rotation(t: float, x: np.ndarray) -> np.ndarray:
    """Rigid rotation of S^1 at unit angular speed."""
    return np.c_[-x[:, 1], x[:, 0]]


def sphere_rotation(t: float, x: np.ndarray) -> np.ndarray:
    """Solid-body rotation of S^2 about the tilted axis, unit rate."""
    return np.cross(SPHERE_AXIS, x)


def general_head(seed: int, beta: float) -> Any:
    """One SA head on S^2 with ``B = beta K^T Q``, values ``V y``; Q, K, V seeded N(0, 1/3) entries."""
    from vlasov_tf import Params

    rng = np.random.default_rng([seed, 3])
    Q, K, V = (rng.standard_normal((3, 3)) / np.sqrt(3.0) for _ in range(3))
    return Params.qkv(Q, K, V, beta)


def sums_ran(prof: Any) -> list[str]:
    """The kernel-sum methods a profile saw: its ``sums.<method>`` sections.

    ``field_method="dense"`` calls the dense sums directly (section ``dense``, no ``sums.dense``);
    the ``dense`` section counts only where no ``sums.`` section ran (it also holds the dense
    fix-up rows of the spectral sums).
    """
    ran = sorted(name[5:] for name in prof.seconds if name.startswith("sums."))
    return ran or (["dense"] if "dense" in prof.seconds else [])


class LegacyStep:
    """One SSP-RK3 step with the field from ``scripts/legacy_harmonics.py``'s :class:`HarmonicPlan`.

    The plan (queries: the face midpoints, points: the cell centres) is built here, once per
    head; :meth:`head_sums` has the signature of :data:`vlasov_tf.models.sums.HeadSums` and goes to
    :func:`vlasov_tf.models.attention.velocity_unchecked`. The step repeats ``ssp_rk3_step``'s stages with
    the operator's public ``stable_dt``, ``fluxes`` and ``euler_step``.
    """

    def __init__(self, fv: Any, field: Any) -> None:
        from legacy_harmonics import HarmonicPlan

        self.fv = fv
        self.field = field
        mesh = fv.mesh
        self.plans = {
            h.B.tobytes(): HarmonicPlan(h.B, mesh.face_midpoints, mesh.centres) for h in field.heads
        }

    def head_sums(
        self, B: np.ndarray, queries: np.ndarray, points: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        plan = self.plans[B.tobytes()]
        assert queries is self.fv.mesh.face_midpoints and points is self.fv.mesh.centres
        return plan(weights, points)

    def velocity(self, mass: np.ndarray) -> np.ndarray:
        from vlasov_tf.models.attention import velocity_unchecked

        mesh = self.fv.mesh
        # As FiniteVolume.normal_velocity: the masses of rho = m / A, round-off negatives at zero.
        masses = np.maximum(mass / mesh.areas * mesh.areas, 0.0)
        x = velocity_unchecked(
            self.field, mesh.centres, masses, mesh.face_midpoints, True, head_sums=self.head_sums
        )
        return np.einsum("fi,fi->f", x, mesh.face_normals)

    def __call__(self, m0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fv, areas = self.fv, self.fv.mesh.areas
        u0 = self.velocity(m0)
        dt = fv.stable_dt(u0, CFL)

        def stage(m: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
            u = self.velocity(m) if u is None else u
            return fv.euler_step(m, fv.fluxes(m / areas, u), dt)

        m1 = stage(m0, u0)
        m2 = 0.75 * m0 + 0.25 * stage(m1)
        return m0 / 3.0 + (2.0 / 3.0) * stage(m2), u0


class Runner:
    """Runs and prints the cases; keeps the measured step times for the verdicts and estimates."""

    def __init__(self) -> None:
        from vlasov_tf import profiling
        from vlasov_tf.solvers.finite_volumes import FiniteVolume, ssp_rk3_step

        self.FiniteVolume = FiniteVolume
        self.ssp_rk3 = ssp_rk3_step
        self.profiling = profiling
        self.times: dict[tuple[str, int, str, str], float] = {}
        self.picks: dict[tuple[str, int, str, str], str] = {}
        self.anomalies: list[str] = []

    def step(self, fv: Any, field: Any, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One SSP-RK3 step as solve_grid takes it: (new masses, initial normal velocities)."""
        rho = mass / fv.mesh.areas
        u = fv.normal_velocity(field, 0.0, rho)
        dt = fv.stable_dt(u, CFL)
        return self.ssp_rk3(fv, field, 0.0, mass, dt, u)[0], u

    def case(
        self,
        mesh: Any,
        field: Any,
        field_name: str,
        method: str,
        ref: tuple[np.ndarray, str] | None = None,
    ) -> tuple[Any, float, np.ndarray]:
        """Build, time and print one case; returns the operator, the step time and its initial velocities.

        ``method``: a field method of :data:`vlasov_tf.kernels.METHODS`, ``"harmonics"`` (the legacy
        tables) or ``"prescribed"``; ``ref``: (reference velocities, mark) for the rel diff column.
        """
        t0 = time.perf_counter()
        # The second-order scheme (the README's tables; bench_schemes.py compares the third-order one).
        method_name = "auto" if method in ("prescribed", "harmonics") else method
        fv = self.FiniteVolume(mesh, reconstruction="linear", field_method=method_name)
        stepper: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
        if method == "harmonics":
            stepper = LegacyStep(fv, field)
        else:
            stepper = lambda m: self.step(fv, field, m)  # noqa: E731
        setup = time.perf_counter() - t0
        mass = initial_mass(mesh)
        with self.profiling.profile() as prof:
            step_s, (m1, u0) = timed(lambda: stepper(mass))
        ran = sums_ran(prof)
        label = method
        if method == "auto":
            label = f"auto({'+'.join(ran) or 'none'})"
        elif method in ("dense", "spectral", "fft") and ran != [method]:
            self.anomalies.append(f"{mesh.kind} C={mesh.n_cells} {method}: the sums ran by {ran}")
        drift = abs(m1.sum() - mass.sum()) / mass.sum()
        if not np.isfinite(m1).all() or (m1 < 0).any() or drift > 1e-12:
            self.anomalies.append(
                f"{mesh.kind} C={mesh.n_cells} {label}: step not finite/positive or mass drift {drift:.1e}"
            )
        mem = f"{peak_mib(lambda: stepper(mass)):.1f}" if step_s < TRACE_MAX_S else "-"
        diff = "-"
        if ref is not None:
            u_ref, mark = ref
            diff = f"{np.abs(u0 - u_ref).max() / np.abs(u_ref).max():.1e}{mark}"
        key = (mesh.kind, mesh.n_cells, field_name, method)
        self.times[key] = step_s
        self.picks[key] = "+".join(ran)
        print(
            fmt_row(
                [
                    mesh.kind,
                    f"{mesh.n_cells}",
                    f"{mesh.n_faces}",
                    field_name,
                    label,
                    f"{setup:.3f}",
                    f"{step_s:.4f}",
                    f"{mesh.n_cells / step_s:.2e}",
                    mem,
                    diff,
                ]
            ),
            flush=True,
        )
        return fv, step_s, u0


def skipped(mesh_kind: str, cells: int, faces: int, field: str, method: str, why: str) -> None:
    print(fmt_row([mesh_kind, f"{cells}", f"{faces}", field, method]) + f"  skipped ({why})", flush=True)


def fipy_case(level: int, mesh: Any, fv: Any) -> None:
    """FiPy's implicit first-order upwind step on the one-cell shell of the same mesh."""
    import fipy as fp

    from vlasov_tf.solvers.fipy_baseline import face_velocity, fipy_solver, sphere_shell

    t0 = time.perf_counter()
    shell = sphere_shell(mesh)  # the triangles of sphere_L{level}.h5
    v = face_velocity(shell, lambda x: sphere_rotation(0.0, x))
    coeff = fp.FaceVariable(mesh=shell.mesh, rank=1, value=v.T.copy())
    rho = fp.CellVariable(mesh=shell.mesh, value=bump(shell.centres, BUMP_SPHERE), hasOld=True)
    eq = fp.TransientTerm() + fp.UpwindConvectionTerm(coeff=coeff) == 0
    solver = fipy_solver(fp)
    setup = time.perf_counter() - t0
    # The same step as the project's scheme at CFL 0.5 on the matching mesh.
    dt = fv.stable_dt(fv.normal_velocity(sphere_rotation, 0.0, np.ones(mesh.n_cells)), CFL)

    def one_step() -> None:
        rho.updateOld()
        eq.solve(var=rho, dt=dt, solver=solver)

    step_s, _ = timed(one_step)
    mem = peak_mib(one_step)
    n_faces = int(np.asarray(shell.mesh.interiorFaces, dtype=bool).sum())
    if shell.n_cells != mesh.n_cells:
        note = f"FiPy shell L{level} has {shell.n_cells} cells, the project's mesh {mesh.n_cells}"
        print(f"  note: {note}")
    print(
        fmt_row(
            [
                "sphere",
                f"{shell.n_cells}",
                f"{n_faces}",
                "prescribed",
                "fipy-upwind",
                f"{setup:.3f}",
                f"{step_s:.4f}",
                f"{shell.n_cells / step_s:.2e}",
                f"{mem:.1f}",
                "-",
            ]
        ),
        flush=True,
    )


def level5_child() -> int:
    """In a fresh process: load level 5, build the operator, two steps; print a JSON line."""
    import resource

    from vlasov_tf import Params, profiling
    from vlasov_tf.geometry.mesh_files import sphere_mesh
    from vlasov_tf.solvers.finite_volumes import FiniteVolume, ssp_rk3_step

    t0 = time.perf_counter()
    mesh = sphere_mesh(LEVEL5)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    fv = FiniteVolume(mesh, reconstruction="linear")
    setup = time.perf_counter() - t0
    field = Params.identity(3, BETA)
    mass = initial_mass(mesh)
    steps = []
    with profiling.profile() as prof:
        for _ in range(2):
            t0 = time.perf_counter()
            u = fv.normal_velocity(field, 0.0, mass / mesh.areas)
            dt = fv.stable_dt(u, CFL)
            m1, _ = ssp_rk3_step(fv, field, 0.0, mass, dt, u)
            steps.append(time.perf_counter() - t0)
    ok = bool(np.isfinite(m1).all() and (m1 >= 0).all())
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {
        "cells": mesh.n_cells,
        "faces": mesh.n_faces,
        "load_s": load,
        "setup_s": setup,
        "steps_s": steps,
        "sums": sums_ran(prof),
        "ok": ok,
        "max_rss_mib": rss_kib / 1024.0,
    }
    print(json.dumps(out), flush=True)
    return 0


def level5_case(run: Runner) -> dict[str, Any] | None:
    """Run :func:`level5_child` in a fresh interpreter; print its line, return its numbers."""
    from vlasov_tf.geometry.mesh_files import sphere_mesh_path

    path = sphere_mesh_path(LEVEL5)
    if not path.is_file():
        print(f"  sphere level {LEVEL5}: {path} missing; build it with `vlasov-tf mesh --level {LEVEL5}`")
        run.anomalies.append(f"sphere level {LEVEL5} mesh missing")
        return None
    cmd = [sys.executable, os.path.abspath(__file__), "--level5-child"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LEVEL5_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        run.anomalies.append(f"level-5 child process ran past {LEVEL5_TIMEOUT_S} s")
        return None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        run.anomalies.append(f"level-5 child process failed (rc {proc.returncode}): {tail}")
        return None
    res = json.loads(lines[-1])
    first, second = res["steps_s"]
    print(
        f"sphere level {LEVEL5} in a fresh process ({res['cells']} cells, {res['faces']} faces; "
        f"Q=K=V=I SA beta={BETA:g}, auto: sums by {'+'.join(res['sums']) or 'none'}): "
        f"load {res['load_s']:.2f} s, FiniteVolume {res['setup_s']:.2f} s, first step {first:.3f} s, "
        f"second step {second:.3f} s ({res['cells'] / second:.2e} cells/s); "
        f"peak RSS {res['max_rss_mib']:.0f} MiB",
        flush=True,
    )
    if not res["ok"]:
        run.anomalies.append("level-5 child: step not finite/positive")
    return res


def verdict(name: str, t: float | None, target: float, extra: str = "") -> None:
    if t is None:
        print(f"verdict: {name} <= {target:g} s: NOT MEASURED")
    else:
        print(f"verdict: {name} <= {target:g} s: {'PASS' if t <= target else 'FAIL'} ({t:.3f} s{extra})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["VLASOV_TF_NUM_THREADS"] = str(args.threads)
    if args.level5_child:
        return level5_child()
    # Imported only now so that VLASOV_TF_NUM_THREADS is in place first.
    from vlasov_tf import Params
    from vlasov_tf.geometry.mesh_files import sphere_mesh, sphere_mesh_path
    from vlasov_tf.geometry.meshes import circle_mesh
    from vlasov_tf.kernels import num_threads

    run = Runner()
    print(
        f"Eulerian FV, one SSP-RK3 step (CFL {CFL}), attention SA beta={BETA:g} (and {BETA_SHARP:g}); "
        f"vlasov_tf threads={num_threads()}, cores={os.cpu_count()}"
    )
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info())
    print(f"BLAS: {blas or 'none found'}; load average before the run: {os.getloadavg()[0]:.2f}")
    if os.getloadavg()[0] > 1.0:
        print("  warning: other processes are running; timings suffer")

    level5 = None
    if not args.only_level5:
        print(fmt_row(HEADER))
        print(fmt_row(["-" * w for w in WIDTHS]))
        eye_field = f"I b={BETA:g}"

        # Circle.
        att2 = Params.identity(2, BETA)
        dense_rate = np.nan  # pairs per second of the dense sums, from the largest dense run
        for M in QUICK_CIRCLE_SIZES if args.quick else CIRCLE_SIZES:
            mesh = circle_mesh(M)
            ref = None
            if M <= args.dense_max:
                _, t, u_dense = run.case(mesh, att2, eye_field, "dense")
                dense_rate = 3.0 * M * M / t
                ref = (u_dense, "")
            else:
                est = 3.0 * M * M / dense_rate if np.isfinite(dense_rate) else np.nan
                skipped("circle", M, M, eye_field, "dense", f"O(M^2): est. {est:.3g} s")
            _, _, u_auto = run.case(mesh, att2, eye_field, "auto", ref=ref)
            if run.picks[("circle", M, eye_field, "auto")] != "fft":
                run.anomalies.append(f"circle M={M}: auto did not take the FFT")
            run.case(mesh, att2, eye_field, "spectral", ref=ref or (u_auto, "a"))
        for M in QUICK_CIRCLE_SIZES[-1:] if args.quick else CIRCLE_SIZES[-1:]:
            run.case(circle_mesh(M), circle_rotation, "prescribed", "prescribed")

        # Sphere, Q = K = V = I.
        att3 = Params.identity(3, BETA)
        general = general_head(args.seed, BETA)
        general_field = f"gen b={BETA:g}"
        dense_rates = {eye_field: np.nan, general_field: np.nan}  # pairs per second
        legacy_rate = np.nan  # (C + F) points per second of the legacy step
        fvs: dict[int, Any] = {}
        meshes: dict[int, Any] = {}

        def dense_then(mesh: Any, field: Any, name: str, level: int, always: int, most: int) -> Any:
            """The dense row where affordable (its velocities for the rel diff), else the estimate."""
            pairs = 3.0 * mesh.n_cells * mesh.n_faces
            rate = dense_rates[name]
            est = pairs / rate if np.isfinite(rate) else 0.0
            if level <= always or (level <= most and est < args.max_step_s):
                _, t, u = run.case(mesh, field, name, "dense")
                dense_rates[name] = pairs / t
                return u
            why = f"est. {est:.3g} s" + (f" > {args.max_step_s:g} s" if est >= args.max_step_s else "")
            skipped("sphere", mesh.n_cells, mesh.n_faces, name, "dense", why)
            return None

        for level in range(args.max_level + 1):
            path = sphere_mesh_path(level)
            if not path.is_file():
                print(
                    f"  sphere level {level}: {path} missing; build it with `vlasov-tf mesh --level {level}`"
                )
                run.anomalies.append(f"sphere level {level} mesh missing")
                continue
            mesh = meshes[level] = sphere_mesh(level)
            u_dense = dense_then(mesh, att3, eye_field, level, DENSE_LEVELS, MAX_LEVEL)
            ref = None if u_dense is None else (u_dense, "")
            _, _, u_auto = run.case(mesh, att3, eye_field, "auto", ref=ref)
            points = mesh.n_cells + mesh.n_faces
            est = points / legacy_rate if np.isfinite(legacy_rate) else 0.0
            if est < args.max_step_s:
                _, t, _ = run.case(mesh, att3, eye_field, "harmonics", ref=ref or (u_auto, "a"))
                legacy_rate = points / t
            else:
                why = f"est. {est:.3g} s > {args.max_step_s:g} s"
                skipped("sphere", mesh.n_cells, mesh.n_faces, eye_field, "harmonics", why)
            fvs[level], _, _ = run.case(mesh, sphere_rotation, "prescribed", "prescribed")

        # Sphere, beta = 30 at level 4.
        if 4 in meshes:
            run.case(meshes[4], Params.identity(3, BETA_SHARP), f"I b={BETA_SHARP:g}", "auto")

        # Sphere, a general head.
        for level, mesh in meshes.items():
            u_dense = dense_then(mesh, general, general_field, level, 0, GENERAL_DENSE_LEVELS)
            run.case(mesh, general, general_field, "auto", ref=None if u_dense is None else (u_dense, ""))

        if not args.skip_fipy:
            for level in range(min(args.fipy_max_level, args.max_level) + 1):
                if level in fvs:
                    fipy_case(level, meshes[level], fvs[level])
            print("fipy-upwind: FiPy's UpwindConvectionTerm, first order in space and time (implicit step)")
        del fvs, meshes
        print(
            f"fields: I b=B: Q=K=V=I SA beta=B; gen b={BETA:g}: B = beta K^T Q, values V y "
            f"(Q, K, V ~ N(0, 1/3), seed {args.seed}). rel diff: against dense, 'a': against auto"
        )

    if args.only_level5 or args.max_level >= LEVEL5:
        level5 = level5_case(run)

    for note in run.anomalies:
        print(f"anomaly: {note}")
    print()
    if not args.only_level5:
        key = ("circle", TARGET_M, f"I b={BETA:g}", "auto")
        verdict("circle M=1e6 attention step (auto)", run.times.get(key), TARGET_S)
        for (level, beta), target in SPHERE_TARGETS.items():
            cells = 1080 * 4**level
            key = ("sphere", cells, f"I b={beta:g}", "auto")
            pick = run.picks.get(key)
            verdict(
                f"sphere level {level} beta={beta:g} step (auto)",
                run.times.get(key),
                target,
                f"; sums by {pick or 'none'}",
            )
    if level5 is None:
        print(
            f"verdict: sphere level {LEVEL5} step <= {LEVEL5_STEP_S:g} s, peak RSS < {LEVEL5_RSS_GIB:g} GiB: "
            "NOT MEASURED"
        )
    else:
        step, rss = level5["steps_s"][1], level5["max_rss_mib"] * MIB
        ok = step <= LEVEL5_STEP_S and rss < LEVEL5_RSS_GIB * GIB
        print(
            f"verdict: sphere level {LEVEL5} step <= {LEVEL5_STEP_S:g} s, peak RSS < {LEVEL5_RSS_GIB:g} GiB: "
            f"{'PASS' if ok else 'FAIL'} (step {step:.3f} s, first {level5['steps_s'][0]:.3f} s; "
            f"peak RSS {rss / GIB:.2f} GiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
