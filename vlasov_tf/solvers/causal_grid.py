"""The grid of causal attention: a density over the sphere and the position s, in S slices.

Under causal attention (``model.mask = "causal"``) a token at position s attends to the tokens at
or before s. Its mean-field equation moves a measure on S^{d-1} x [0, 1] whose s-marginal stays
put: the part at s moves by the attention field of the part at or before it, ``X[mu_{<=s}]``.
Here s is cut into S slices (slice k, k = 1..S, at ``s = (k - 1/2) / S``), a cell density
``rho_k`` on the mesh each, and slice k moves by the field of ``rho_1 + ... + rho_k`` (itself
included, as a token attends to itself):

    d/dt rho_k + div( X[rho_1 + ... + rho_k] rho_k ) = 0,   k = 1 .. S.

The tokens of a causal case sit at the same S positions (:meth:`Case.token_positions
<vlasov_tf.runs.cases.Case.token_positions>`), so both solvers discretise one S-slice model: the grid
in x, the tokens by sampling, and they are compared by their x-marginals as for the unmasked
equation. With V = I slice 1 attends to itself alone and moves as the unmasked flow of its own
density.

Time: SSP-RK3 on all slices together at the CFL step of the fastest (``cfl``, ``max_dt``; fixed
steps, no error control), landing on switches and output times; serial. Each stage evaluates S
fields through :meth:`~vlasov_tf.solvers.finite_volumes.FiniteVolume.normal_velocity`,
the same attention field of a cell measure as :func:`~vlasov_tf.solvers.finite_volumes.solve_grid`'s.

Design notes: docs/numerics.md §1 (causal attention).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.models.base import MeanField, Model, as_model, run_times
from vlasov_tf.solvers.finite_volumes import FiniteVolume, GridSolution, check_scheme
from vlasov_tf.solvers.time_loop import TimeLoop

__all__ = ["solve_causal_grid"]


def solve_causal_grid(
    mesh: MeshGeometry,
    rho0: np.ndarray,
    model: MeanField | Model,
    *,
    T: float | None = None,
    t_eval: np.ndarray | None = None,
    cfl: float = 0.5,
    max_dt: float | None = None,
    reconstruction: str | None = None,
    limiter: str | None = None,
    field_method: str = "auto",
    callback: Callable[[float, np.ndarray], None] | None = None,
    t0: float = 0.0,
    progress: bool = False,
) -> GridSolution:
    """Evolve S slice densities ``rho0`` (S, C) by the causal continuity equations (module
    docstring) of ``model`` (any :func:`~vlasov_tf.models.base.as_model`; attention in a case) up to
    ``T`` (default: the model's); the solution's densities are (n_out, S, C), its mass the
    total over the slices. ``callback(t, rho)`` ((S, C)) at every output time; ``t0``: resume
    from the slices at a switch or output time (the steps after it are those of a run from 0).
    The scheme's arguments as for :func:`~vlasov_tf.solvers.finite_volumes.solve_grid`."""
    rho = np.asarray(rho0, dtype=np.float64)
    if rho.ndim != 2 or rho.shape[1] != mesh.n_cells or not np.isfinite(rho).all() or (rho < 0).any():
        raise ValueError(f"slice densities must be (S, {mesh.n_cells}), finite, >= 0; got shape {rho.shape}")
    if not (0 < cfl <= 1):
        raise ValueError(f"the CFL number must lie in (0, 1]; got {cfl}")
    model = as_model(model, mesh.d)
    if model.d != mesh.d:
        raise ValueError(f"the model is for d = {model.d}, the {mesh.kind} mesh has d = {mesh.d}")
    T, switches = run_times(model, T)
    loop = TimeLoop.start(T, switches, t_eval, t0, callback)
    reconstruction, limiter = check_scheme(reconstruction, limiter)
    fv = FiniteVolume(mesh, limiter, reconstruction=reconstruction, field_method=field_method)
    areas = mesh.areas
    tol = loop.tol

    def velocities(fld, t: float, mass: np.ndarray) -> list[np.ndarray]:
        # Slice k by the field of the slices at or before it.
        upto = np.cumsum(mass, axis=0) / areas
        return [fv.normal_velocity(fld, t, upto[k]) for k in range(len(mass))]

    def stage(fld, t: float, mass: np.ndarray, dt: float, u: list[np.ndarray] | None = None) -> np.ndarray:
        u = velocities(fld, t, mass) if u is None else u
        steps = [fv.euler_step(m, fv.fluxes(m / areas, uk), dt) for m, uk in zip(mass, u, strict=True)]
        return np.stack(steps)

    mass = rho * areas
    t, steps = float(t0), 0
    with loop.time_bar(progress, f"causal grid (S={len(rho)})") as bar:
        while True:
            for _ in loop.due(t):
                rho = mass / areas
                loop.store(t, rho)
                mass = rho * areas  # continue from the emitted state, as a resume does
            if loop.finished(t):
                break
            t_next = loop.next_stop(t)
            fld = model.piece(0.5 * (t + t_next))
            while t < t_next - tol:
                u = velocities(fld, t, mass)
                dt = min(min(fv.stable_dt(uk, cfl) for uk in u), max_dt or np.inf)
                dt = (t_next - t) / max(1.0, np.ceil((t_next - t) / dt * (1 - 1e-12)))
                m1 = stage(fld, t, mass, dt, u)
                m2 = 0.75 * mass + 0.25 * stage(fld, t + dt, m1, dt)
                mass = mass / 3.0 + (2.0 / 3.0) * stage(fld, t + 0.5 * dt, m2, dt)
                t = t_next if t_next - (t + dt) <= tol else t + dt
                steps += 1
                bar.update(dt)
    dens = np.array(loop.snapshots)
    return GridSolution(mesh, loop.times, dens, (dens * areas).sum(axis=(1, 2)), steps, 0)
