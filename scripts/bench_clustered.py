"""Benchmark: one grid field evaluation for clustered mass at large beta against a broad bump.

What it measures
----------------
On the nested sphere meshes (``--levels``, default 3 and 4; level 5 has 1.1e6 cells and 1.7e6
faces), the cell masses of a vMF mixture (four seeded means, equal proportions) of
concentration ``kappa = 50`` (*clusters*) or ``kappa = 1`` (*broad*), and for each beta
(``--betas``, default 10 30 100) one field evaluation as the grid does it::

    kernel_sums(beta * face_midpoints, centres, masses, centres, method="spectral")

timed (best of ``--repeats`` below 1 s, else one run). Columns: level, faces, cells, measure,
beta, the share of rows the expansion leaves to the fix-up, the share of their query-key pairs
the pruned fix-up sums (the dense fix-up summed them all), the time, the ratio to the broad bump
at the same level and beta, and the largest row error against the dense sums on ``--check``
random rows (``max_c |S_ic - D_ic| / D_i,normaliser``; the contract is ``tol = 1e-10``).
``--baseline`` adds the time of the previous fix-up (the same expansion, the fix-up rows summed
densely over all keys), measured in the same run (slow: minutes at level 4).

The grid's ``field_accuracy = "flux"`` contract (``flux`` rows): the same sums with the error
budget of ``FiniteVolume.row_tolerances`` (the linear scheme's, whose flux points are these face
midpoints: weights ``w b``, budget ``tol q L <= tol sum w b``; the sums serve the rows of least
extra cost from the expansion until it is spent), timed in the same run. Its extra columns:
``looser``, the share of rows served less accurately than ``tol``, ``free`` the share of those
served beyond 1/2 (the field's bound only, clipped); ``fixed`` the share still fixed up; ``max
err`` over the checked rows that keep ``tol`` (fixed up, or served within it) and ``err/asked`` the
largest error over its allotted tolerance (the expansion's bound, at least ``tol``) on every
checked row allotted less than 1/2 (<= 1 is the contract); ``|avg|`` the largest ``|S_v| / S_0`` of
the clipped rows (<= 1, the exact sums' bound); ``spent`` the budget's share spent (<= 1).
``fixed(rule)``: the share the fixed per-row rule ``tol max(1, q / b)`` (the previous contract)
fixes up; ``--rule`` also times that rule (``rule`` rows, the same sums with those per-row
tolerances, its columns counted as the budget's: rows served beyond ``tol`` at the expansion's
bound). ``--strict-max-level`` skips the strict clustered sums above that level (level 5: many
minutes an evaluation).

``--solve LEVEL`` runs the grid instead (``solve_grid``, spectral sums, SA with V = I so the field's
bound is U = 1) from the four clusters at beta ``--solve-beta`` (default 30) to ``--T`` under both
contracts and prints their times, steps, the L1 distance of the final densities and its bound
``8 C U tol (sum_fq w b) T`` (``C = sqrt(3) + 1``; docs/numerics.md §2.11).

Run as ``python scripts/bench_clustered.py [--levels 3 4] [--baseline]``; the issue's table:
``python scripts/bench_clustered.py --levels 4 5 --repeats 1 --check 300 --strict-max-level 3``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlasov_tf.geometry.initial import VmfMixture
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import refine_sphere
from vlasov_tf.kernels import exp_kernel_sums, kernel_sums
from vlasov_tf.kernels.pruned import pruned_sums
from vlasov_tf.kernels.row_tolerance import CAP
from vlasov_tf.kernels.spectral import spectral_approximation
from vlasov_tf.solvers.finite_volumes import FiniteVolume

TOL = 1e-10


def mesh_at(level: int):
    """The nested sphere mesh of ``level`` (files up to level 2, refined in memory above)."""
    mesh = sphere_mesh(min(level, 2))
    for _ in range(level - 2):
        mesh = refine_sphere(mesh)
    return mesh


def timed(fn, repeats: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    if first > 1.0:
        return first, out
    times = [first]
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def old_fixup(z, y, w):
    """The previous spectral sums: the expansion, and its fix-up rows dense over all keys."""
    shift, sums, err = spectral_approximation(z, y, w, y, tol=TOL)
    bad = np.flatnonzero(~(sums[:, -1] >= err / TOL))
    if bad.size:
        shift[bad], sums[bad] = exp_kernel_sums(z[bad], y, w, y)
    return shift, sums


def row_errors(z, y, w, shift, sums, rows) -> np.ndarray:
    """``max_c |S_ic - D_ic| / D_i,normaliser`` on ``rows`` against the dense sums."""
    if rows.size == 0:
        return np.zeros(0)
    ds, dv = exp_kernel_sums(z[rows], y, w, y)
    return np.abs(sums[rows] * np.exp(shift[rows] - ds)[:, None] - dv).max(axis=1) / dv[:, -1]


def solve_both(level: int, T: float, means: np.ndarray, beta: float = 30.0) -> None:
    """The grid run under both contracts (module docstring)."""
    from vlasov_tf import Params, Schedule
    from vlasov_tf.solvers.finite_volumes import solve_grid

    mesh = mesh_at(level)
    mix = VmfMixture(3, means=means, kappas=np.full(4, 50.0), proportions=np.full(4, 0.25))
    rho = mix.density(mesh.centres)
    sched = Schedule.constant(Params.identity(3, beta), T)
    finals = {}
    for contract in ("rows", "flux"):
        t0 = time.perf_counter()
        sol = solve_grid(mesh, rho, sched, field_method="spectral", field_accuracy=contract)
        seconds = time.perf_counter() - t0
        finals[contract] = sol.final
        print(
            f"solve level {level} beta {beta:g} T {T:g} {contract:>5}: {seconds:8.1f} s, {sol.steps} steps "
            f"({sol.rejected} rejected), mass drift {abs(sol.mass[-1] - sol.mass[0]):.1e}",
            flush=True,
        )
    fv = FiniteVolume(mesh)
    r_own, r_nbr = fv.face_values(finals["rows"])
    flux_mass = float((fv.weights * np.maximum(r_own, r_nbr)).sum())
    diff = float(np.abs(finals["rows"] - finals["flux"]) @ mesh.areas)
    bound = 8 * (np.sqrt(3.0) + 1.0) * TOL * flux_mass * T
    print(f"L1(rows - flux) = {diff:.2e}; tol = {TOL:g}; bound 8 C U tol (sum w b) T = {bound:.2e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--betas", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", type=int, default=500)
    parser.add_argument("--baseline", action="store_true", help="also time the previous dense fix-up")
    parser.add_argument("--strict-max-level", type=int, default=99, help="skip strict clustered sums above")
    parser.add_argument("--rule", action="store_true", help="also time the fixed per-row rule")
    parser.add_argument("--solve", type=int, default=None, help="run the grid at this level instead")
    parser.add_argument("--T", type=float, default=0.5, help="final time of --solve")
    parser.add_argument("--solve-beta", type=float, default=30.0, help="beta of --solve")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 3))
    means /= np.linalg.norm(means, axis=1)[:, None]
    if args.solve is not None:
        solve_both(args.solve, args.T, means, args.solve_beta)
        return
    exp_kernel_sums(np.ones((300, 3)), np.ones((300, 3)), np.ones(300), np.ones((300, 3)))  # compile
    head = f"{'level':>5} {'faces':>8} {'cells':>8} {'measure':>8} {'contract':>8} {'beta':>5} {'looser':>6}"
    head += f" {'free':>6} {'fixed':>6} {'pairs':>6} {'time s':>8} {'/broad':>7} {'max err':>9}"
    head += f" {'err/asked':>9} {'|avg|':>6} {'spent':>6} {'fixed(rule)':>11}"
    head += f" {'old s':>8}" if args.baseline else ""
    print(head, flush=True)
    for level in args.levels:
        mesh = mesh_at(level)
        y, x = mesh.centres, mesh.face_midpoints
        fv = FiniteVolume(mesh, reconstruction="linear", field_accuracy="flux")
        check = rng.choice(len(x), min(args.check, len(x)), replace=False)
        for beta in args.betas:
            z = beta * x
            broad = None
            for name, kappa in (("broad", 1.0), ("clusters", 50.0)):
                mix = VmfMixture(3, means=means, kappas=np.full(4, kappa), proportions=np.full(4, 0.25))
                rho = mix.density(y)
                w = rho * mesh.areas
                budget = fv.row_tolerances(rho)
                _, v, err = spectral_approximation(z, y, w, y, tol=TOL)
                contracts: list = [("rows", None), ("flux", budget)]
                if args.rule and name == "clusters":
                    contracts.append(("rule", budget.row_tol))
                if name == "clusters" and level > args.strict_max_level:
                    contracts = contracts[1:]
                    print(f"{level:>5} {len(x):>8} {len(y):>8} {name:>8} {'rows':>8} {beta:>5g}   (skipped)")
                with np.errstate(divide="ignore", invalid="ignore"):
                    need = np.where(v[:, -1] > 0, err / v[:, -1], np.inf)
                need = np.minimum(np.nan_to_num(need, nan=np.inf), CAP)
                rule = budget.row_tol
                rule_bad = ~(v[:, -1] >= err / np.where(np.isinf(rule), TOL, rule)) & np.isfinite(rule)
                for contract, asked in contracts:
                    allotted = np.full(len(x), TOL) if asked is None else asked
                    if contract == "flux":
                        allotted = budget.allocate(v[:, -1], err, TOL)
                    unserved = ~(v[:, -1] >= err / np.where(np.isinf(allotted), TOL, allotted))
                    clipped = np.flatnonzero(unserved & np.isinf(allotted))
                    bad = np.flatnonzero(unserved & np.isfinite(allotted))
                    # Each row's tolerance as served: tol where fixed up or served within it, else
                    # the expansion's bound (CAP: clipped, the field's bound only).
                    asked_all = np.where(unserved & np.isfinite(allotted), TOL, np.maximum(need, TOL))
                    spent = float(budget.weights @ (asked_all - TOL)) / budget.budget
                    spent = spent if asked is not None else 0.0
                    stats: dict[str, int] = {}
                    if bad.size:
                        pruned_sums(z[bad[: min(bad.size, 20000)]], y, w, y, tol=TOL, stats=stats)
                    pairs = stats.get("pairs", 0) / max(min(bad.size, 20000) * len(y), 1)
                    seconds, (shift, sums) = timed(
                        lambda z=z, y=y, w=w, asked=asked: kernel_sums(
                            z, y, w, y, method="spectral", tol=TOL, row_tol=asked
                        ),
                        args.repeats,
                    )
                    sample = check[asked_all[check] < CAP]
                    errors = row_errors(z, y, w, shift, sums, sample)
                    error = float(errors[asked_all[sample] == TOL].max(initial=0.0))
                    ratio = float((errors / asked_all[sample]).max(initial=0.0))
                    avg = np.linalg.norm(sums[clipped, :-1], axis=1) / sums[clipped, -1]
                    broad = seconds if name == "broad" and contract == "rows" else broad
                    line = f"{level:>5} {len(x):>8} {len(y):>8} {name:>8} {contract:>8} {beta:>5g}"
                    line += f" {np.mean(asked_all > TOL):>6.2f} {np.mean(asked_all >= CAP):>6.2f}"
                    line += f" {bad.size / len(x):>6.2f} {pairs:>6.2f}"
                    line += f" {seconds:>8.3f} {seconds / broad:>7.1f} {error:>9.1e} {ratio:>9.1e}"
                    line += f" {avg.max(initial=0.0):>6.3f} {spent:>6.3f}"
                    line += f" {rule_bad.mean() if contract == 'flux' else 0.0:>11.3f}"
                    if args.baseline and contract == "rows":
                        line += f" {timed(lambda z=z, y=y, w=w: old_fixup(z, y, w), 0)[0]:>8.3f}"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
