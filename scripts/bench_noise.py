"""A noisy grid step against the noiseless one on the sphere meshes, and the explicit diffusion
against the implicit one (``[grid] diffusion``), in one run.

Usage::

    python scripts/bench_noise.py            # levels 3, 4, 5 (level 5 needs ~8 GB), accuracy at 2
    python scripts/bench_noise.py --quick    # levels 3, 4

Target (the noise issue): one SSP-RK3 step of the noisy model within 1.5x of the noiseless one
at levels 3-5. Model: softmax attention on S^2, beta = 4 (Q = K = V = I, "auto" sums), the
quadratic scheme; noisy: the same with the diffusion sigma Laplace (sigma = 0.05), whose fluxes
are added to the transport's in each stage (:mod:`vlasov_tf.solvers.diffusion`).

Explicit against implicit, for sigma = 0.01, 0.05, 0.2: the cost of a unit of simulated time
when each runs at its CFL bound (CFL 0.5, the default), ``t_step / dt`` (the implicit matrix is
assembled once and scaled for each sigma). The explicit step is
bounded by the transport and the diffusion (``~ h^2 / sigma``); the implicit one
(:mod:`vlasov_tf.solvers.implicit_diffusion`: TR-BDF2 Strang-split around SSP-RK3) by the
transport alone, and each of its steps costs a transport step, one field evaluation more and
four Krylov solves (their iterations are listed). Accuracy (``--accuracy LEVEL``, default 2): both
run 4 transport steps with fixed steps at their bounds; the L1 distance of each to the implicit
run at 1/8 of the transport's step (the same semi-discrete operators) is its time error. Times
are the best of ``--repeat`` after an untimed warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchlib import best

from vlasov_tf import Params
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.models.base import with_noise
from vlasov_tf.parallel import Reductions
from vlasov_tf.solvers.diffusion import Diffusion
from vlasov_tf.solvers.finite_volumes import FiniteVolume, GridStepper, solve_grid, ssp_rk3_step
from vlasov_tf.solvers.implicit_diffusion import ImplicitDiffusion

SIGMA = 0.05
SIGMAS = (0.01, 0.05, 0.2)
CFL = 0.5


def density(mesh) -> np.ndarray:
    c = mesh.centres
    rho = np.exp(3.0 * c[:, 2]) + np.exp(5.0 * c[:, 0])
    return rho / (rho @ mesh.areas)


def accuracy(plain: Params, level: int) -> list[tuple[float, float, float, int, int]]:
    """Per sigma: (horizon, explicit error, implicit error, explicit steps, implicit steps): L1
    distances (relative to the mass) over 4 transport steps at level ``level``, each run at its
    CFL bound with fixed steps, to the implicit run at 1/8 of the transport's step (the same
    semi-discrete operators: what is left is each run's time error)."""
    mesh = sphere_mesh(level)
    rho = density(mesh)
    fv = FiniteVolume(mesh)
    dt = fv.stable_dt(fv.normal_velocity(plain, 0.0, rho), CFL)
    horizon = 4 * dt
    out = []
    for sigma in SIGMAS:
        model = with_noise(plain, sigma)
        kw = {"rtol": None, "cfl": CFL}
        ref = solve_grid(mesh, rho, model, horizon, diffusion="implicit", max_dt=dt / 8, **kw).final
        exp = solve_grid(mesh, rho, model, horizon, **kw)
        imp = solve_grid(mesh, rho, model, horizon, diffusion="implicit", **kw)
        errs = [float(np.abs(x.final - ref) @ mesh.areas) for x in (exp, imp)]
        out.append((horizon, errs[0], errs[1], exp.steps, imp.steps))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--accuracy", type=int, default=2, help="level of the time errors (-1: none)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--levels", type=int, nargs="*", default=None)
    args = parser.parse_args()
    levels = args.levels or ((3, 4) if args.quick else (3, 4, 5))
    plain = Params.identity(3, 4.0)
    noisy = with_noise(plain, SIGMA)
    rows, splits = [], []
    for level in levels:
        mesh = sphere_mesh(level)
        m0 = density(mesh) * mesh.areas
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

        # Explicit against implicit, each at its bound at CFL 0.5 (the transport's CFL from u).
        red = Reductions(mesh.n_cells)
        rec = fv_noisy.diffusion.reconstruction
        dt_t = fv_plain.stable_dt(u, CFL)
        t0 = time.perf_counter()
        base = ImplicitDiffusion(fv_noisy.diffusion, red)
        assembled = time.perf_counter() - t0
        for sigma in SIGMAS:
            fv_noisy.diffusion = Diffusion(mesh, sigma, rec)  # the bases shared
            dt_e = fv_noisy.stable_dt(u, CFL)
            split = base.scaled(sigma / SIGMA)
            stepper = GridStepper(fv_plain, plain, red, split)
            t_imp = best(lambda s=stepper, m=m0, dt=dt_t, u=u: s.step(m, 0.0, dt, u), args.repeat)
            its = split.iterations / max(1, split.solves)
            splits.append((level, sigma, dt_e, dt_t, t_noisy / dt_e, t_imp / dt_t, its, assembled))
        del fv_plain, fv_noisy, rec, base, split, stepper

    print(f"one SSP-RK3 step, attention beta = 4 on S^2, quadratic scheme; noisy: sigma = {SIGMA}")
    print("cost per unit time at the CFL bound, noisy / noiseless, for sigma = "
          + ", ".join(f"{s:g}" for s in SIGMAS))  # fmt: skip
    head = f"{'level':>5}{'cells':>9}{'plain s':>9}{'noisy s':>9}{'ratio':>7}{'dt CFL':>9}"
    print(head + "".join(f"{f'x{s:g}':>9}" for s in SIGMAS) + f"{'setup s':>9}")
    for level, cells, built, tp, tn, dt, per in rows:
        line = f"{level:>5}{cells:>9}{tp:>9.3f}{tn:>9.3f}{tn / tp:>7.2f}{dt:>9.2e}"
        print(line + "".join(f"{x:>9.1f}" for x in per) + f"{built:>9.1f}")
    print(f"\nexplicit against implicit diffusion, each at its step bound (CFL {CFL}): seconds per unit time")
    print(f"{'level':>5}{'sigma':>7}{'dt expl':>10}{'dt impl':>10}{'s/T expl':>10}{'s/T impl':>10}"
          f"{'expl/impl':>10}{'its/solve':>10}{'matrix s':>9}")  # fmt: skip
    for level, sigma, dt_e, dt_t, ce, ci, its, assembled in splits:
        line = f"{level:>5}{sigma:>7g}{dt_e:>10.2e}{dt_t:>10.2e}{ce:>10.1f}{ci:>10.1f}{ce / ci:>10.2f}"
        print(line + f"{its:>10.1f}{assembled:>9.1f}")
    if args.accuracy >= 0:
        print(f"\nlevel {args.accuracy}, 4 transport steps at CFL {CFL}: L1 time error (against the implicit "
              "run at 1/8 of the step)")  # fmt: skip
        print(f"{'sigma':>7}{'horizon':>9}{'explicit':>10}{'steps':>7}{'implicit':>10}{'steps':>7}")
        errors = accuracy(plain, args.accuracy)
        for sigma, (horizon, e_exp, e_imp, n_exp, n_imp) in zip(SIGMAS, errors, strict=True):
            print(f"{sigma:>7g}{horizon:>9.4f}{e_exp:>10.2e}{n_exp:>7}{e_imp:>10.2e}{n_imp:>7}")


if __name__ == "__main__":
    main()
