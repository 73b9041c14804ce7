"""Benchmark: a step of second-order (kinetic) tokens against a first-order layer, same tokens.

What it measures
----------------
N tokens, seconds per step (best of ``--repeats`` runs of ``--steps`` steps), in one process:

* ``first-order``: ``solve_particles(method="layers")``, the baseline (one field evaluation, the
  normalisation);
* ``layers``, ``verlet``, ``rk4``: ``solve_kinetic_particles`` (one, one and four field
  evaluations a step, plus the geodesic drift);
* ``verlet+K``: verlet with the velocity alignment (its kicks' small matrix exponential);
* ``verlet+bath``: verlet with a heat bath (two draws of normals a step).

Problems: the HMF model on the circle (a constant kernel, spectral sums: the field is O(N)) and
softmax attention on S^2 (beta = 4, "auto" sums: spectral once N is large). Columns: the seconds
per step and the ratio to the first-order layer. The machine is shared: quote ratios from one run.

Run it from the repository root (~1 minute on 2 cores)::

    .venv/bin/python scripts/bench_kinetic_particles.py
    .venv/bin/python scripts/bench_kinetic_particles.py --quick
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
from benchlib import best

from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.tangent_bundle import maxwellian_velocities
from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.attention import Params
from vlasov_tf.models.base import with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.solvers.kinetic_particles import solve_kinetic_particles
from vlasov_tf.solvers.particles import solve_particles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N = 1000, 10000; 10 steps, best of 2")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.steps, args.repeats = [1000, 10000], 10, 2
    problems = {"HMF, S^1": Interaction(2, Constant(1.0)), "SA beta=4, S^2": Params.identity(3, 4.0)}
    print("| problem | N | first-order s | layers | verlet | rk4 | verlet+K | verlet+bath |")
    print("|---|---|---|---|---|---|---|---|")
    for name, model in problems.items():
        for n in args.sizes:
            rng = np.random.default_rng(0)
            x = uniform_sphere(n, model.d, rng)
            v = maxwellian_velocities(x, 0.5, rng)
            steps, T = args.steps, 0.1 * args.steps
            base = best(partial(solve_particles, model, x, T=T, steps=steps), args.repeats) / steps
            kinetic = partial(solve_kinetic_particles, model, x, v, T=T, steps=steps)
            runs = [
                partial(kinetic, method="layers"),
                partial(kinetic, method="verlet"),
                partial(kinetic, method="rk4"),
                partial(kinetic, method="verlet", alignment=0.5),
                partial(
                    solve_kinetic_particles, with_noise(model, 0.3), x, v, T=T, steps=steps, method="verlet",
                    friction=1.0,
                ),
            ]  # fmt: skip
            times = [best(run, args.repeats) / steps for run in runs]
            cells = " | ".join(f"{t:.2e} ({t / base:.2f}x)" for t in times)
            print(f"| {name} | {n} | {base:.2e} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
