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

Time: SSP-RK3 on all slices together (one state, (S, C)), stepped by the grid's controller
(:class:`~vlasov_tf.solvers.step_control.Controller`): error control over all slices at once
(``rtol``, ``atol``: the grid's defaults; ``rtol=None``: fixed steps at the CFL step of the
fastest slice and ``max_dt``, its only steps before it had error control), the step at every stop
estimated from the state there, landing on switches and output times; serial. Each stage
evaluates S fields through :meth:`~vlasov_tf.solvers.finite_volumes.FiniteVolume.normal_velocity`,
the same attention field of a cell measure as :func:`~vlasov_tf.solvers.finite_volumes.solve_grid`'s.

Design notes: docs/numerics.md §1 (causal attention).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.memory import BYTES_PER_CELL, check_memory
from vlasov_tf.models.base import MeanField, Model, as_model, run_times
from vlasov_tf.parallel import Reductions
from vlasov_tf.solvers.finite_volumes import FiniteVolume, GridSolution
from vlasov_tf.solvers.grid_scheme import ATOL, RTOL, GridScheme
from vlasov_tf.solvers.step_control import Controller, ssp_rk3
from vlasov_tf.solvers.time_loop import ProgressBar, TimeLoop, Tracker, trackers_of

__all__ = ["CausalStepper", "solve_causal_grid"]


@dataclass(frozen=True)
class CausalStepper:
    """SSP-RK3 on the (S, C) slice masses, slice k by the field of slices 1..k
    (:class:`~vlasov_tf.solvers.step_control.Stepper`; velocities: a list of S normal velocities)."""

    fv: FiniteVolume
    field: MeanField

    def velocity(self, t: float, state: np.ndarray) -> list[np.ndarray]:
        # Slice k by the field of the slices at or before it.
        areas = self.fv.mesh.areas
        upto = np.cumsum(state, axis=0) / areas
        # The "flux" budget bounds the slice the fluxes carry, not the sum whose field moves it.
        return [
            self.fv.normal_velocity(self.field, t, upto[k], carried=state[k] / areas)
            for k in range(len(state))
        ]

    def stable_dt(self, velocity: list[np.ndarray], cfl: float) -> float:
        return min(self.fv.stable_dt(uk, cfl) for uk in velocity)

    def rate(self, state: np.ndarray, velocity: list[np.ndarray]) -> np.ndarray:
        areas = self.fv.mesh.areas
        return np.stack([self.fv.rate(m / areas, uk) for m, uk in zip(state, velocity, strict=True)])

    def step(
        self, state: np.ndarray, t: float, dt: float, velocity: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        fv, areas = self.fv, self.fv.mesh.areas

        def stage(mass: np.ndarray, ts: float, u: list[np.ndarray] | None) -> np.ndarray:
            u = self.velocity(ts, mass) if u is None else u
            steps = [fv.euler_step(m, fv.fluxes(m / areas, uk), dt) for m, uk in zip(mass, u, strict=True)]
            return np.stack(steps)

        return ssp_rk3(stage, state, t, dt, velocity)


def solve_causal_grid(
    mesh: MeshGeometry,
    rho0: np.ndarray,
    model: MeanField | Model,
    *,
    T: float | None = None,
    t_eval: np.ndarray | None = None,
    cfl: float = 0.5,
    max_dt: float | None = None,
    rtol: float | None = RTOL,
    atol: float = ATOL,
    reconstruction: str | None = None,
    limiter: str | None = None,
    field_method: str = "auto",
    callback: Callable[[float, np.ndarray], None] | None = None,
    t0: float = 0.0,
    progress: bool = False,
    scheme: GridScheme | None = None,
    trackers: Sequence[Tracker] = (),
) -> GridSolution:
    """Evolve S slice densities ``rho0`` (S, C) by the causal continuity equations (module
    docstring) of ``model`` (any :func:`~vlasov_tf.models.base.as_model`; attention in a case) up to
    ``T`` (default: the model's); the solution's densities are (n_out, S, C), its mass the
    total over the slices. ``callback(t, rho)`` ((S, C)) at every output time; ``trackers`` get
    the slices, and the steps taken and rejected since the previous output; ``t0``: resume
    from the slices at a switch or output time (the steps after it are those of a run from 0).
    The scheme's arguments (or ``scheme``) as for :func:`~vlasov_tf.solvers.finite_volumes.solve_grid`;
    the error norms are summed over all slices (``rtol=None``: fixed CFL steps)."""
    rho = np.asarray(rho0, dtype=np.float64)
    if rho.ndim != 2 or rho.shape[1] != mesh.n_cells or not np.isfinite(rho).all() or (rho < 0).any():
        raise ValueError(f"slice densities must be (S, {mesh.n_cells}), finite, >= 0; got shape {rho.shape}")
    scheme = GridScheme.of(scheme, cfl, max_dt, rtol, atol, reconstruction, limiter, field_method)
    model = as_model(model, mesh.d)
    if scheme.diffusion == "implicit" and model.noise > 0:
        # Each slice would need its own split solves; the explicit diffusion covers the causal grid.
        raise ValueError("the causal grid steps the diffusion explicitly only: diffusion 'implicit' refused")
    if model.d != mesh.d:
        raise ValueError(f"the model is for d = {model.d}, the {mesh.kind} mesh has d = {mesh.d}")
    T, switches = run_times(model, T)
    told = trackers_of(trackers, callback)
    told.append(ProgressBar(f"causal grid (S={len(rho)})", bar=progress))  # logged, bar or not
    loop = TimeLoop.start(T, switches, t_eval, t0, trackers=told)
    # The slices' densities (S, C) at work and at every output.
    need = np.size(rho) * (BYTES_PER_CELL + 8 * len(loop.times))
    check_memory(need, f"solve_causal_grid: {np.shape(rho)} slices x cells, {len(loop.times)} output times")
    fv = FiniteVolume(
        mesh, scheme.limiter, reconstruction=scheme.reconstruction, field_method=scheme.field_method,
        noise=model.noise, field_measure=scheme.field_measure, field_accuracy=scheme.field_accuracy,
    )  # fmt: skip
    control = Controller(scheme.step_options, Reductions(mesh.n_cells), loop.tol)
    areas = mesh.areas

    def emit(t: float, mass: np.ndarray) -> np.ndarray:
        rho = mass / areas
        loop.store(t, rho, *control.since_output())
        return rho * areas  # continue from the emitted state, as a resume does

    def stepper(t: float, t_next: float) -> CausalStepper:
        return CausalStepper(fv, model.piece(0.5 * (t + t_next)))  # the block in force to t_next

    with loop.tracking():
        control.run(loop, rho * areas, stepper, emit)
    dens = np.array(loop.snapshots)
    mass = (dens * areas).sum(axis=(1, 2))
    return GridSolution(mesh, loop.times, dens, mass, control.taken, control.rejected)
