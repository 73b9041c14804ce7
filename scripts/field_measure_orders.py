"""Observed orders of the grid's two field measures against exact fields and growth rates; a figure.

Usage::

    python scripts/field_measure_orders.py [--out docs/field_measure_orders.png]   # ~5 min, 2 cores
    python scripts/field_measure_orders.py --quick                                 # S^2 levels 0-1

``field_measure = "cells"`` (masses at the cell centres) against ``"quadrature"`` (the quadratic
reconstruction summed at 2 points a cell on S^1, 3 on S^2), both with the quadratic
reconstruction, SA attention with Q = K = V = I:

- the field: the normal velocity at the flux points of the cell averages of
  ``rho = (1 + 0.4 cos 2t) / (2 pi)`` on S^1 (beta = 3) and ``(1 + 0.5 Y_2) / (4 pi)`` on S^2
  (beta = 2), against the exact field (Fourier / Funk-Hecke: the kernel's coefficients), max error;
- the linear growth rate of a 1e-5 perturbation of the uniform state
  (:func:`vlasov_tf.models.attention.linear_growth_rate`), measured over one e-folding time with
  fixed steps dt = 0.05 (far below the space error) relative to the unperturbed run, relative
  error: S^1 mode k = 3 at beta = 4 (cases/circle_instability.toml), S^2 the worst of the modes
  of degree 1 and 2 at beta = 3.

Prints the errors and the observed orders between successive meshes and draws both panels.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import iv, spherical_in

from vlasov_tf import Params, Schedule
from vlasov_tf.analysis.linear_theory import grid_growth_rate
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.geometry.quadrature import cell_quadrature
from vlasov_tf.models.attention import linear_growth_rate
from vlasov_tf.runs.studies import observed_orders
from vlasov_tf.solvers.finite_volumes import FiniteVolume
from vlasov_tf.solvers.grid_scheme import FIELD_MEASURES


def angles(x: np.ndarray) -> np.ndarray:
    return np.arctan2(x[..., 1], x[..., 0])


def averages(mesh, f):
    p, w = cell_quadrature(mesh)
    return (f(p) * w).sum(axis=1) / w.sum(axis=1)


def field_error(mesh, measure: str) -> float:
    """Max error of the SA normal field at the flux points (module docstring)."""
    fv = FiniteVolume(mesh, field_measure=measure)
    x = fv.points
    if mesh.d == 2:
        beta, a, k = 3.0, 0.4, 2
        rho = averages(mesh, lambda p: (1 + a * np.cos(k * angles(p))) / (2 * np.pi))
        t = angles(x[:, 0])
        exact = -a * k * iv(k, beta) * np.sin(k * t) / beta / (iv(0, beta) + a * iv(k, beta) * np.cos(k * t))
        return float(np.abs(fv.normal_velocity(Params.identity(2, beta), 0.0, rho)[:, 0] - exact).max())
    beta, a, e = 2.0, 0.5, np.array([0.0, 0.6, 0.8])
    rho = averages(mesh, lambda p: (1 + a * ((p @ e) ** 2 - 1 / 3)) / (4 * np.pi))
    phi = spherical_in(0, beta) + a * spherical_in(2, beta) * ((x @ e) ** 2 - 1 / 3)
    grad = a * spherical_in(2, beta) * 2 * (x @ e)[..., None] * (e - (x @ e)[..., None] * x)
    exact = np.einsum("fqi,fi->fq", grad / beta / phi[..., None], mesh.face_normals)
    return float(np.abs(fv.normal_velocity(Params.identity(3, beta), 0.0, rho) - exact).max())


def rate_error(mesh, mode: np.ndarray, degree: int, beta: float, measure: str) -> float:
    """|measured / exact - 1| of the growth rate of ``mode`` (cell averages) from the uniform state."""
    exact = linear_growth_rate(mesh.d, degree, beta)
    T = 1.0 / exact
    schedule = Schedule.constant(Params.identity(mesh.d, beta), T)
    rate = grid_growth_rate(mesh, schedule, mode, T, rtol=None, max_dt=0.05, field_measure=measure)
    return abs(rate / exact - 1)


def growth_error(mesh, measure: str) -> float:
    if mesh.d == 2:
        k, M = 3, mesh.n_cells
        return rate_error(mesh, np.cos(k * angles(mesh.centres)) * np.sinc(k / M), k, 4.0, measure)
    z = mesh.centres[:, 2]
    return max(rate_error(mesh, mode, deg, 3.0, measure) for deg, mode in ((1, z), (2, z**2 - 1 / 3)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="field_measure_orders.png", help="the figure (PNG)")
    parser.add_argument("--quick", action="store_true", help="S^2 levels 0-1 only")
    args = parser.parse_args(argv)
    circles = [circle_mesh(m) for m in (16, 32, 64, 128, 256)]
    spheres = [sphere_mesh(level) for level in ((0, 1) if args.quick else (0, 1, 2))]
    studies = {
        ("field", "S^1"): (circles[1:], field_error),
        ("field", "S^2"): (spheres, field_error),
        ("growth rate", "S^1"): (circles[:-1], growth_error),
        ("growth rate", "S^2"): (spheres, growth_error),
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    styles = {"cells": ("o", "--"), "quadrature": ("s", "-")}
    colours = {"S^1": "C0", "S^2": "C3"}
    print(f"{'quantity':12s} {'mesh':4s} {'measure':10s} {'h':>8s} {'error':>10s} {'order':>6s}")
    for (quantity, geometry), (meshes, error_of) in studies.items():
        ax = axes[0 if quantity == "field" else 1]
        h = np.array([m.h for m in meshes])
        for measure in FIELD_MEASURES:
            err = np.array([error_of(m, measure) for m in meshes])
            for hi, e, p in zip(h, err, observed_orders(h, err), strict=True):
                print(f"{quantity:12s} {geometry:4s} {measure:10s} {hi:8.4f} {e:10.3e} {p:6.2f}")
            marker, line = styles[measure]
            ax.loglog(h, err, marker=marker, ls=line, color=colours[geometry],
                      label=f"{geometry}, {measure} (order {observed_orders(h, err)[-1]:.2f})")  # fmt: skip
    for ax, quantity in zip(axes, ("max error of the SA field at the flux points",
                                   "relative error of the linear growth rate"), strict=True):  # fmt: skip
        h = np.array([1e-2, 4e-1])
        for p, ls in ((2, ":"), (3, "-.")):
            ax.loglog(h, 1e-3 * (h / h[-1]) ** p, color="grey", ls=ls, lw=0.8, label=f"h^{p}")
        ax.set_xlabel("h (2 pi / M on S^1, sqrt(mean cell area) on S^2)")
        ax.set_title(quantity, fontsize=10)
        ax.legend(fontsize=7)
    title = "Grid field measure: cells (masses at centres) vs quadrature (the reconstruction at 2-3 points)"
    fig.suptitle(title, fontsize=10)
    fig.savefig(args.out, dpi=110)
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
