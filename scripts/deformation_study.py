"""The reversing deformational flow (Nair and Lauritzen 2010, case 4): l2 errors and a figure.

Usage::

    python scripts/deformation_study.py                    # level 1: ~2 min on 2 cores
    python scripts/deformation_study.py --levels 1 2 --figure docs/deformation_study.png

Two Gaussian hills (:func:`vlasov_tf.models.deformation.gaussian_hills`) are drawn into filaments
at T / 2 and return at T = 5 (:func:`~vlasov_tf.models.deformation.deformational_flow`); each grid
scheme (``reconstruction`` "linear" with Barth-Jespersen, "quadratic" with the positivity limiter,
"quadratic-lowdiss"), default error control. Columns: level, scheme, steps, l1 / l2 / linf errors
at T relative to the start (Lauritzen et al. 2012's normalised norms, on cell averages), the
minimum and maximum at T, run seconds. The figure (finest level) shows every scheme at 0, T / 2, T
on a longitude-latitude map of the cells.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.tri import Triangulation

from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.quadrature import cell_quadrature
from vlasov_tf.models.deformation import PERIOD, deformational_flow, gaussian_hills
from vlasov_tf.solvers.finite_volumes import solve_grid

SCHEMES = ("linear", "quadratic", "quadratic-lowdiss")


def averages(mesh, f):
    points, weights = cell_quadrature(mesh)
    return (f(points.reshape(-1, mesh.d)).reshape(weights.shape) * weights).sum(1) / weights.sum(1)


def norms(mesh, rho, exact):
    """Normalised l1, l2, linf errors of cell averages (area-weighted)."""
    diff, a = rho - exact, mesh.areas
    return (
        np.abs(diff) @ a / (np.abs(exact) @ a),
        np.sqrt(diff**2 @ a / (exact**2 @ a)),
        np.abs(diff).max() / np.abs(exact).max(),
    )


def draw(mesh, runs, path):
    """Rows: schemes; columns: t = 0, T / 2, T and the error at T; the cells on a longitude-latitude
    map centred on the hills (longitude 180)."""
    v = mesh.vertices
    lon = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    lat = np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))
    tri = mesh.cell_vertices
    # Cells across longitude 0 (far from the hills) would smear across the map: not drawn.
    keep = np.ptp(lon[tri], axis=1) < 180
    mapping = Triangulation(lon, lat, tri[keep])
    fig, axes = plt.subplots(
        len(runs), 4, figsize=(16, 2.4 * len(runs) + 0.8), sharex=True, sharey=True, layout="constrained"
    )
    for row, (scheme, (sol, l2)) in enumerate(runs.items()):
        for col, t in enumerate(sol.times):
            art = axes[row, col].tripcolor(
                mapping, facecolors=sol.densities[col][keep], vmin=0, vmax=1.0, cmap="viridis"
            )
            axes[row, col].set_title(f"{scheme}, t = {t:g}", fontsize=9)
        error = (sol.densities[-1] - sol.densities[0])[keep]
        diff = axes[row, 3].tripcolor(mapping, facecolors=error, vmin=-0.5, vmax=0.5, cmap="RdBu_r")
        axes[row, 3].set_title(f"{scheme}, T minus start (l2 {l2:.3f})", fontsize=9)
    for ax in axes.ravel():
        ax.set_xlim(0, 360)
        ax.set_ylim(-90, 90)
    for ax in axes[-1]:
        ax.set_xlabel("longitude")
    for ax in axes[:, 0]:
        ax.set_ylabel("latitude")
    fig.colorbar(art, ax=axes, shrink=0.6, label="density", location="right")
    fig.colorbar(diff, ax=axes, shrink=0.6, label="error at T", location="right")
    fig.suptitle(
        f"Reversing deformational flow (Nair-Lauritzen case 4), level {mesh_level(mesh)}: "
        "filaments at T/2, return at T = 5"
    )
    fig.savefig(path, dpi=90)
    print(f"figure: {path}")


def mesh_level(mesh) -> int:
    return round(float(np.log2(mesh.n_cells / sphere_mesh(0).n_cells)) / 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--figure", default=None, help="PNG path (the finest level's runs)")
    args = parser.parse_args(argv)
    head = ("level", "scheme", "steps", "l1", "l2", "linf", "min", "max", "s")
    print("{:>5s} {:18s} {:>6s} {:>7s} {:>7s} {:>7s} {:>9s} {:>7s} {:>6s}".format(*head))
    runs = {}
    for level in args.levels:
        mesh = sphere_mesh(level)
        rho0 = averages(mesh, gaussian_hills)
        runs = {}
        for scheme in args.schemes:
            t0 = time.perf_counter()
            sol = solve_grid(
                mesh, rho0, deformational_flow, PERIOD, t_eval=[0, PERIOD / 2, PERIOD], reconstruction=scheme
            )
            secs = time.perf_counter() - t0
            l1, l2, linf = norms(mesh, sol.final, rho0)
            runs[scheme] = (sol, l2)
            print(
                f"{level:5d} {scheme:18s} {sol.steps:6d} {l1:7.4f} {l2:7.4f} {linf:7.4f} "
                f"{sol.final.min():9.2e} {sol.final.max():7.4f} {secs:6.0f}",
                flush=True,
            )
    if args.figure:
        draw(mesh, runs, args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
