"""Checks of a built interpolating Transformer by the solvers, each input run alone through its schedule.

:func:`particle_w2` (tokens: RK4, the adaptive reference, or the discrete Transformer),
:func:`depth_study` (the discrete Transformer's W2 against its depth L) and :func:`grid_w2`
(the input densities on a mesh of S^2, finite volumes): W2 of each final measure to its
target, to hold against the construction's ``eps``. The schedule is one for all inputs; that
each input reaches its target alone under it is the claim of Theorem 1.1
(:mod:`vlasov_tf.interpolation.construction`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlasov_tf.analysis.wasserstein import w2_to_dirac
from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.interpolation.construction import Interpolation
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.particles import solve_particles

__all__ = ["depth_study", "grid_w2", "particle_w2"]


def particle_w2(
    interp: Interpolation,
    measures: Sequence[tuple[np.ndarray, np.ndarray | None]],
    *,
    method: str = "rk4",
    steps: int | None = None,
) -> np.ndarray:
    """(N,) W2 to the targets after running each measure alone through the schedule.

    ``method`` and ``steps`` as in :func:`~vlasov_tf.solvers.particles.solve_particles`
    (default RK4 with as many steps as the construction took).
    """
    steps = interp.rk4_steps if steps is None and method != "adaptive" else steps
    out = []
    for (x, w), y in zip(measures, interp.targets, strict=True):
        sol = solve_particles(interp.schedule, x, w, method=method, steps=steps)
        out.append(w2_to_dirac(sol.final, sol.weights, y))
    return np.array(out)


def depth_study(
    interp: Interpolation,
    measures: Sequence[tuple[np.ndarray, np.ndarray | None]],
    layers: Sequence[int],
) -> tuple[np.ndarray, int | None]:
    """The discrete Transformer: ``solve_particles(method="layers", steps=L)`` for each L.

    Returns the (len(layers), N) W2 table and the smallest L whose W2 is <= eps
    for every input (None if none is).
    """
    table = np.array([particle_w2(interp, measures, method="layers", steps=int(L)) for L in layers])
    ok = [int(L) for L, row in zip(layers, table, strict=True) if (row <= interp.eps).all()]
    return table, (min(ok) if ok else None)


def grid_w2(
    interp: Interpolation,
    mesh: MeshGeometry,
    densities: Sequence[np.ndarray],
    *,
    cfl: float = 0.5,
    max_dt: float | None = None,
    floor: float = 1e-12,
    progress: bool = False,
) -> np.ndarray:
    """(N,) W2 to the targets of each input density run alone on ``mesh`` by ``solve_grid``.

    ``densities`` : N arrays (C,) of cell averages. W2 of the final cell measure
    (cell masses at the cell centres) to the Dirac at the target.

    ``floor`` (relative to each density's maximum) is added everywhere before
    the run: in an empty cell a round-off negative mass (-1e-50) with zero
    outflow (the gated fields vanish identically outside their caps) makes
    ``FiniteVolume.euler_step`` compute ``0 * (-inf)`` = NaN. A positive floor
    keeps every mass > 0 where the outflow is zero. Its mass (~1e-11) is
    negligible in W2.
    """
    out = []
    for rho0, y in zip(densities, interp.targets, strict=True):
        rho0 = np.asarray(rho0, dtype=float)
        rho0 = rho0 + floor * rho0.max()
        sol = solve_grid(mesh, rho0, interp.schedule, cfl=cfl, max_dt=max_dt, progress=progress)
        mass = np.maximum(sol.final * mesh.areas, 0.0)
        out.append(w2_to_dirac(mesh.centres, mass, y))
    return np.array(out)
