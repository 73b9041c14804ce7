"""The ``[kinetic]`` table of a case file: second-order (momentum) tokens and the phase-space grid.

A case with a ``[kinetic]`` table is also a kinetic case (``vlasov-tf kinetic``, and ``vlasov-tf
study`` of it): on the circle, the spatial measure of ``[initial]`` times the velocity law of
``kinetic.velocity`` is ``f_0(theta, v)``, the model of ``[model]`` gives the force (its noise is the
velocity noise sigma), ``[case]`` the final time and outputs, ``[particles]`` the token numbers N and
depths L of the second-order particles, and the table itself::

    [kinetic]
    friction = 0.0                    # gamma >= 0 (0: Hamiltonian)
    velocity_box = 4.0                # V > 0: the grid's velocities [-V, V]
    velocity_cells = [64, 128, 256]   # Nv of each phase-space grid (an integer or increasing list)
    theta_cells = [32, 64, 128]       # optional, as many: Ntheta (default grid.resolutions)
    dt = 0.1                          # optional: the Strang step of the first grid, halved as Ntheta
                                      # doubles (dt Ntheta_0 / Ntheta)
    streaming = "remap"               # optional: "remap" (positive) | "spectral" (exact per row)
    velocity = { temperatures = [0.25], means = [0.0], weights = [1.0] }   # a sum of Maxwellians

On the sphere (S^2's tangent bundle, :mod:`vlasov_tf.solvers.kinetic_sphere`) the grids are the
``[grid]`` resolutions (mesh levels) with ``velocity_cells`` n (an n x n velocity grid on
``[-V, V]^2`` in each cell's frame); ``f_0(x, v) = rho_0(x) g(|v|)`` with g the isotropic law of
the temperatures (``means`` must be 0); the step is the solver's (CFL) one, at most ``dt`` when
given; ``theta_cells`` and ``streaming`` are the circle's and are refused there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vlasov_tf.analysis.kinetic_theory import VelocityLaw
from vlasov_tf.runs.case_keys import allowed, required
from vlasov_tf.runs.toml_reader import TomlReader
from vlasov_tf.solvers.kinetic_grid import PhaseGrid

__all__ = ["STREAMING", "KineticSpec", "read_kinetic"]

#: The free-streaming schemes (:func:`~vlasov_tf.solvers.kinetic_grid.solve_kinetic_grid`).
STREAMING = ("remap", "spectral")


@dataclass(frozen=True)
class KineticSpec:
    """What ``[kinetic]`` states: ``friction`` gamma, the velocity box ``V``, the grids ``(Ntheta,
    Nv)`` pairs, the step ``dt`` of the first, the ``streaming`` scheme and the initial ``velocity``
    law."""

    friction: float
    V: float
    cells: tuple[tuple[int, int], ...]
    dt: float
    streaming: str
    velocity: VelocityLaw

    def grids(self) -> list[PhaseGrid]:
        return [PhaseGrid(nt, nv, self.V) for nt, nv in self.cells]

    def step(self, n_theta: int) -> float:
        """The Strang step of the grid with ``n_theta`` cells: ``dt Ntheta_0 / Ntheta``."""
        return self.dt * self.cells[0][0] / n_theta


def read_kinetic(
    r: TomlReader, v: Any, geometry: str, grid_resolutions: tuple[int, ...] | None
) -> KineticSpec:
    """The ``[kinetic]`` table (module docstring), checked: one line naming the key otherwise."""
    t = r.table(v, "kinetic", allowed("kinetic"), required("kinetic"))
    if geometry not in ("circle", "sphere"):
        r.fail("kinetic", f"the phase-space grid is on the circle or the sphere; got geometry {geometry!r}")
    if geometry == "sphere":
        for key in ("theta_cells", "streaming"):
            if key in t:
                r.fail(f"kinetic.{key}", "is the circle's; on the sphere the grids are [grid] resolutions")
    friction = r.real(t.get("friction", 0.0), "kinetic.friction")
    if not (np.isfinite(friction) and friction >= 0):
        r.fail("kinetic.friction", f"must be finite and >= 0, got {friction!r}")
    V = r.positive(t["velocity_box"], "kinetic.velocity_box")
    nv = list(r.counts(t["velocity_cells"], "kinetic.velocity_cells", lo=4))
    if "theta_cells" in t:
        nt = list(r.counts(t["theta_cells"], "kinetic.theta_cells", lo=4))
    elif grid_resolutions is not None:
        nt = list(grid_resolutions)
    elif geometry == "sphere":
        r.fail("kinetic", "on the sphere needs a [grid] table: its resolutions are the kinetic grids' meshes")
    else:
        r.fail("kinetic.theta_cells", "is required without a [grid] table (its resolutions are the default)")
    if len(nt) != len(nv):
        r.fail("kinetic.velocity_cells", f"needs one count per theta grid ({len(nt)}); got {len(nv)}")
    if "dt" in t:
        dt = r.positive(t["dt"], "kinetic.dt")
    else:  # on the sphere no cap on the solver's CFL step
        dt = 0.1 if geometry == "circle" else np.inf
    streaming = r.string(t.get("streaming", "remap"), "kinetic.streaming", STREAMING)
    law = t.get("velocity", {"temperatures": [1.0]})
    lt = r.table(law, "kinetic.velocity", allowed("kinetic.velocity"), required("kinetic.velocity"))
    temps = r.reals(lt["temperatures"], "kinetic.velocity.temperatures")
    n = len(temps)
    means = r.reals(lt.get("means", [0.0] * n), "kinetic.velocity.means")
    weights = r.reals(lt.get("weights", [1.0] * n), "kinetic.velocity.weights")
    for name, arr in (("means", means), ("weights", weights)):
        if len(arr) != n:
            r.fail(f"kinetic.velocity.{name}", f"needs one entry per temperature ({n}); got {len(arr)}")
    for i in range(n):
        if not temps[i] > 0:
            r.fail(f"kinetic.velocity.temperatures[{i}]", f"must be > 0, got {temps[i]!r}")
        if not weights[i] > 0:
            r.fail(f"kinetic.velocity.weights[{i}]", f"must be > 0, got {weights[i]!r}")
        if geometry == "sphere" and means[i] != 0:
            r.fail(f"kinetic.velocity.means[{i}]", f"must be 0 on the sphere (isotropic), got {means[i]!r}")
    velocity = VelocityLaw(tuple(weights.tolist()), tuple(means.tolist()), tuple(temps.tolist()))
    # The box must hold the law: the mass beyond |v| = V is what the grid cannot hold (and
    # outflow measures only what leaves later).
    outside = 1.0 - float(velocity.cell_averages(np.array([-V, V]))[0] * 2 * V)
    if geometry == "sphere":  # each component of an isotropic 2-d law: at most twice as much outside
        outside *= 2
    if outside > 1e-6:
        r.fail("kinetic.velocity_box", f"V = {V:g} leaves {outside:.2g} of the initial velocity law outside "
               "[-V, V] (at most 1e-6): take a larger box")  # fmt: skip
    return KineticSpec(friction, V, tuple(zip(nt, nv, strict=True)), dt, streaming, velocity)
