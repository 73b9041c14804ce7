"""A noisy grid step against the noiseless one on the sphere meshes, in one run.

Usage::

    python scripts/bench_noise.py            # levels 3, 4, 5 (~4 min on 2 cores; level 5 needs ~6 GB)
    python scripts/bench_noise.py --quick    # levels 3, 4

Target (the noise issue): one SSP-RK3 step of the noisy model within 1.5x of the noiseless one
at levels 3-5. Model: softmax attention on S^2, beta = 4 (Q = K = V = I, "auto" sums), the
quadratic scheme; noisy: the same with the diffusion sigma Laplace (sigma = 0.05), whose fluxes
are added to the transport's in each stage (:mod:`vlasov_tf.solvers.diffusion`).

The step is explicit, so the diffusion also bounds it: the table gives, beside the step times,
the largest stable step of each (``FiniteVolume.stable_dt`` at CFL 1 for the density below, the
transport's bound against the transport's plus diffusion's) and the cost per unit time of the
noisy run relative to the noiseless one for three sigmas: ``(t_noisy / t_plain) * (dt_plain /
dt_noisy)`` when both run at their CFL bound. Times are the best of ``--repeat`` after an
untimed warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchlib import best

from vlasov_tf import Params
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.models.base import with_noise
from vlasov_tf.solvers.finite_volumes import FiniteVolume, ssp_rk3_step

SIGMA = 0.05
SIGMAS = (0.01, 0.05, 0.2)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    levels = (3, 4) if args.quick else (3, 4, 5)
    plain = Params.identity(3, 4.0)
    noisy = with_noise(plain, SIGMA)
    rows = []
    for level in levels:
        mesh = sphere_mesh(level)
        c = mesh.centres
        rho = np.exp(3.0 * c[:, 2]) + np.exp(5.0 * c[:, 0])
        m0 = rho * mesh.areas / (rho @ mesh.areas)
        t0 = time.perf_counter()
        fv_plain = FiniteVolume(mesh)
        fv_noisy = FiniteVolume(mesh, noise=SIGMA)
        fv_noisy.diffusion.fluxes(m0 / mesh.areas)  # builds the derivative bases (once per mesh)
        built = time.perf_counter() - t0

        def step(fv, model, m0=m0) -> None:
            u0 = fv.normal_velocity(model, 0.0, m0 / fv.mesh.areas)
            ssp_rk3_step(fv, model, 0.0, m0, 1e-4, u0)

        t_plain = best(lambda fv=fv_plain: step(fv, plain), args.repeat)
        t_noisy = best(lambda fv=fv_noisy: step(fv, noisy.piece(0.0)), args.repeat)
        u = fv_plain.normal_velocity(plain, 0.0, m0 / mesh.areas)
        dt_plain = fv_plain.stable_dt(u, 1.0)
        per_time = []
        for sigma in SIGMAS:
            dt = FiniteVolume(mesh, noise=sigma).stable_dt(u, 1.0)
            per_time.append((t_noisy / t_plain) * (dt_plain / dt))
        rows.append((level, mesh.n_cells, built, t_plain, t_noisy, dt_plain, per_time))

    print(f"one SSP-RK3 step, attention beta = 4 on S^2, quadratic scheme; noisy: sigma = {SIGMA}")
    print("cost per unit time at the CFL bound, noisy / noiseless, for sigma = "
          + ", ".join(f"{s:g}" for s in SIGMAS))  # fmt: skip
    head = f"{'level':>5}{'cells':>9}{'plain s':>9}{'noisy s':>9}{'ratio':>7}{'dt CFL':>9}"
    print(head + "".join(f"{f'x{s:g}':>9}" for s in SIGMAS) + f"{'setup s':>9}")
    for level, cells, built, tp, tn, dt, per in rows:
        line = f"{level:>5}{cells:>9}{tp:>9.3f}{tn:>9.3f}{tn / tp:>7.2f}{dt:>9.2e}"
        print(line + "".join(f"{x:>9.1f}" for x in per) + f"{built:>9.1f}")


if __name__ == "__main__":
    main()
