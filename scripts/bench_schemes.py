"""Second- against third-order grid scheme: error against time at equal cells.

Usage::

    python scripts/bench_schemes.py            # ~1.5 min on 2 cores
    python scripts/bench_schemes.py --quick    # the two coarsest resolutions of each case

Two cases, both schemes (``reconstruction="linear"``, MUSCL with Barth-Jespersen;
``"quadratic"``, k-exact least squares with the positivity limiter), default
error control (rtol 1e-3):

- transport: S^2, the compressible reversing flow of ``tests/test_reconstruction.py``
  (compression towards a point plus a latitude-dependent shear, times cos(pi t)),
  a smooth bump on a floor of 1; the exact solution at T = 1 is the start;
  levels 0-2 (1080-17280 cells);
- attention: S^1, SA, beta = 4, Q = K = V = I, rho0 ~ 1 + 0.5 cos t + 0.3 sin 3t,
  to T = 2 (two clusters forming); M = 128 ... 1024 cells; reference: the
  quadratic scheme at M = 8192 with rtol 1e-7, its cell masses summed onto each
  coarse grid (nested uniform grids);
- attention: S^2, SA, beta = 3, Q = K = V = I, two vMF-like bumps on a floor of 0.2, to
  T = 1.5; levels 0-2; reference: the quadratic scheme on level 3 with rtol 1e-5 (about
  40 s), its masses summed onto each coarse level (nested meshes). Here the field is
  evaluated at the two Gauss points of every face: twice the linear scheme's queries.

The attention field of the cell measure (each cell's mass at its centre) is itself
second order, so on the attention cases both schemes converge at order ~2; the
third-order one with a smaller constant (less diffusion at cluster edges).

Columns: cells; steps (accepted); s/step (wall, the whole run over its steps,
the operator's set-up included); run s; L1 error of the density. One run each
after an untimed warm-up; the verdict puts the linear scheme's error at the
finest quadratic run's time (a power law through its two finest runs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh, coarsen_masses
from vlasov_tf.geometry.quadrature import cell_quadrature
from vlasov_tf.models.attention import Params, Schedule
from vlasov_tf.solvers.finite_volumes import solve_grid

SCHEMES = ("linear", "quadratic")


def averages(mesh, f):
    points, weights = cell_quadrature(mesh)
    return (f(points.reshape(-1, mesh.d)).reshape(weights.shape) * weights).sum(1) / weights.sum(1)


def deformation(t: float, x: np.ndarray) -> np.ndarray:
    a, b = np.array([0.3, -0.5, 0.4]), np.array([0.6, 0.0, 0.8])
    flow = a - (x @ a)[:, None] * x + 2.0 * (x @ b)[:, None] * np.cross([0.0, 0.0, 1.0], x)
    return np.cos(np.pi * t) * flow


def bump(x: np.ndarray) -> np.ndarray:
    return 1.0 + np.exp(3.0 * (x @ np.array([0.0, 0.6, 0.8]) - 1.0))


def two_bumps(x: np.ndarray) -> np.ndarray:
    m1, m2 = np.array([0.0, 0.6, 0.8]), np.array([0.8, 0.0, -0.6])
    return 0.2 + np.exp(4.0 * (x @ m1 - 1.0)) + 0.7 * np.exp(6.0 * (x @ m2 - 1.0))


def circle_start(x: np.ndarray) -> np.ndarray:
    t = np.arctan2(x[:, 1], x[:, 0])
    return 1.0 + 0.5 * np.cos(t) + 0.3 * np.sin(3 * t)


def timed(mesh, rho0, field, T, **kw):
    t0 = time.perf_counter()
    sol = solve_grid(mesh, rho0, field, T, **kw)
    return sol, time.perf_counter() - t0


def attention_rows(name, meshes, fine, start, beta, T, ref_rtol) -> list[tuple]:
    """Both schemes on ``meshes`` (SA, Q = K = V = I) against the quadratic one on ``fine`` at
    ``ref_rtol``, its masses summed onto each (nested) mesh: (case, scheme, cells, steps, s, L1)."""
    sched = Schedule.constant(Params.identity(fine.d, beta), T)
    ref = solve_grid(fine, averages(fine, start), sched, reconstruction="quadratic", rtol=ref_rtol).final
    rows = []
    for mesh in meshes:
        exact = coarsen_masses(ref * fine.areas, fine, mesh) / mesh.areas
        for scheme in SCHEMES:
            sol, secs = timed(mesh, averages(mesh, start), sched, None, reconstruction=scheme)
            error = np.abs(sol.final - exact) @ mesh.areas
            rows.append((name, scheme, mesh.n_cells, sol.steps, secs, error))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the two coarsest resolutions of each case")
    args = parser.parse_args(argv)
    levels = (0, 1) if args.quick else (0, 1, 2)
    cells = (128, 256) if args.quick else (128, 256, 512, 1024)
    rows = []
    # Warm-up (imports, FFT plans, first-call set-up), not timed.
    for scheme in SCHEMES:
        solve_grid(
            circle_mesh(64),
            np.ones(64),
            Schedule.constant(Params.identity(2, 4.0), 0.1),
            reconstruction=scheme,
        )
        solve_grid(sphere_mesh(0), np.ones(1080), deformation, 0.1, reconstruction=scheme)
    for level in levels:
        mesh = sphere_mesh(level)
        rho0 = averages(mesh, bump)
        for scheme in SCHEMES:
            sol, secs = timed(mesh, rho0, deformation, 1.0, reconstruction=scheme)
            rows.append(
                (
                    "transport S^2",
                    scheme,
                    mesh.n_cells,
                    sol.steps,
                    secs,
                    np.abs(sol.final - rho0) @ mesh.areas,
                )
            )

    rows += attention_rows(
        "attention S^1", [circle_mesh(m) for m in cells], circle_mesh(8192), circle_start, 4.0, 2.0, 1e-7
    )
    # S^2 against the quadratic scheme one level finer than the finest compared.
    meshes = [sphere_mesh(level) for level in levels]
    rows += attention_rows("attention S^2", meshes, sphere_mesh(levels[-1] + 1), two_bumps, 3.0, 1.5, 1e-5)

    head = ("case", "scheme", "cells", "steps", "s/step", "run s", "L1 error")
    print("{:14s} {:10s} {:>6s} {:>6s} {:>9s} {:>8s} {:>10s}".format(*head))
    for case, scheme, n, steps, secs, err in rows:
        print(f"{case:14s} {scheme:10s} {n:6d} {steps:6d} {secs / steps:9.2e} {secs:8.3f} {err:10.3e}")
    # Per unit of work: the linear scheme's error at the finest quadratic run's time, from a
    # power law fitted through its two finest runs (error ~ time^-p).
    for case in ("transport S^2", "attention S^1", "attention S^2"):
        lin = [r for r in rows if r[0] == case and r[1] == "linear"][-2:]
        quad = [r for r in rows if r[0] == case and r[1] == "quadratic"][-1]
        p = np.log(lin[0][5] / lin[1][5]) / np.log(lin[1][4] / lin[0][4])
        at_same_time = lin[1][5] * (quad[4] / lin[1][4]) ** (-p)
        print(
            f"{case}: quadratic {quad[5]:.2e} in {quad[4]:.2f} s; linear at that time (error ~ time^-{p:.2f})"
            " "
            f"{at_same_time:.2e}: {at_same_time / quad[5]:.1f}x the quadratic's error"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
