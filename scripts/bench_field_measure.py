"""The grid's two field measures side by side: time per SSP-RK3 step.

Usage::

    python scripts/bench_field_measure.py            # about 10 minutes on 2 cores
    python scripts/bench_field_measure.py --quick    # S^2 level 3 and circles of 1e4, 1e5 cells

``field_measure = "cells"`` (the default: each cell's mass at its centre, second order) against
``"quadrature"`` (the quadratic reconstruction summed at 2 points a cell on S^1, 3 on S^2: third
order, 2-3x the keys), both with the quadratic reconstruction, SA attention, solver's own choice
of kernel sums ("auto"):

- S^2, levels 3 and 4 (69120, 276480 cells): Q = K = V = I at beta = 4 (zonal: spectral sums);
  level 3: a general head (random Q, K, V of spectral norm 1 at beta = 4: spectral sums with
  Chebyshev nodes);
- S^1, M = 1e4, 1e5, 1e6 cells, Q = K = V = I at beta = 4: the cell measure of a uniform grid is
  summed by the FFT; the quadrature points are not one uniform grid, so they take the spectral sums.

Density: two smooth bumps on a floor (``bench_schemes``' ``two_bumps``; on S^1 ``1 + 0.5 cos t +
0.3 sin 3t``). Columns: the set-up (the operator, and the first step, which builds the kernel
sums' caches) in s; one step (three field evaluations and the fluxes) in s, the best of
``--repeat`` (3) timed in turns with the other measure's; the ratio quadrature / cells. What the
cost buys (the errors against exact fields and growth rates) is
``scripts/field_measure_orders.py``'s figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.geometry.quadrature import cell_quadrature
from vlasov_tf.models.attention import Params, Schedule
from vlasov_tf.solvers.finite_volumes import FiniteVolume, ssp_rk3_step

MEASURES = ("cells", "quadrature")


def two_bumps(x: np.ndarray) -> np.ndarray:
    m1, m2 = np.array([0.0, 0.6, 0.8]), np.array([0.8, 0.0, -0.6])
    return 0.2 + np.exp(4.0 * (x @ m1 - 1.0)) + 0.7 * np.exp(6.0 * (x @ m2 - 1.0))


def circle_start(x: np.ndarray) -> np.ndarray:
    t = np.arctan2(x[:, 1], x[:, 0])
    return 1.0 + 0.5 * np.cos(t) + 0.3 * np.sin(3 * t)


def averages(mesh, f):
    points, weights = cell_quadrature(mesh)
    return (f(points.reshape(-1, mesh.d)).reshape(weights.shape) * weights).sum(1) / weights.sum(1)


def general_head(rng: np.random.Generator) -> Params:
    q, k, v = (rng.standard_normal((3, 3)) for _ in range(3))
    n = lambda a: np.linalg.norm(a, 2)  # noqa: E731  # spectral norms 1: |Q^T K| <= 1, times beta
    return Params.qkv(q / n(q), k / n(k), v / n(v), 4.0)


def row(name, mesh, params, density, repeat: int) -> list[tuple]:
    """(case, cells, measure, set-up s, s/step) for both measures, their steps timed in turns
    (cells, quadrature, cells, ...: a load that drifts meets both alike), best of ``repeat``."""
    rho = averages(mesh, density)
    field = Schedule.constant(params, 1.0)
    m0 = rho * mesh.areas
    setups, steps = {}, {}
    for measure in MEASURES:
        t0 = time.perf_counter()
        fv = FiniteVolume(mesh, field_measure=measure)
        u0 = fv.normal_velocity(field, 0.0, rho)
        dt = 0.5 * fv.stable_dt(u0, 0.5)
        ssp_rk3_step(fv, field, 0.0, m0, dt, u0)
        setups[measure] = time.perf_counter() - t0

        def step(fv=fv, dt=dt):
            ssp_rk3_step(fv, field, 0.0, m0, dt, fv.normal_velocity(field, 0.0, rho))

        steps[measure] = step
    best_of = {measure: np.inf for measure in MEASURES}
    for _ in range(repeat):
        for measure in MEASURES:
            t0 = time.perf_counter()
            steps[measure]()
            best_of[measure] = min(best_of[measure], time.perf_counter() - t0)
    return [(name, mesh.n_cells, m, setups[m], best_of[m]) for m in MEASURES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="S^2 level 3, circles of 1e4 and 1e5 cells")
    parser.add_argument("--repeat", type=int, default=3, help="timed steps of each measure, in turns")
    args = parser.parse_args(argv)
    levels = (3,) if args.quick else (3, 4)
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    rng = np.random.default_rng(1)
    head = general_head(rng)
    head_line = f"{'case':13s} {'cells':>8s} {'measure':10s} {'set-up s':>9s} {'s/step':>9s} {'ratio':>6s}"
    print(head_line, flush=True)

    def show(rows: list[tuple]) -> None:
        for name, n, measure, setup, secs in rows:
            ratio = f"{secs / rows[0][4]:6.2f}" if measure == "quadrature" else ""
            print(f"{name:13s} {n:8d} {measure:10s} {setup:9.3f} {secs:9.4f} {ratio:>6s}", flush=True)

    for level in levels:
        mesh = sphere_mesh(level)
        show(row("S^2 Q=K=V=I", mesh, Params.identity(3, 4.0), two_bumps, args.repeat))
        if level == levels[0]:  # the general head's step is ~10x the zonal one's: one level
            show(row("S^2 general", mesh, head, two_bumps, args.repeat))
    for m in sizes:
        show(row("S^1 Q=K=V=I", circle_mesh(m), Params.identity(2, 4.0), circle_start, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
