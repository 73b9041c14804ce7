"""Phase-space grid for the kinetic (Vlasov) equation on the tangent bundle of S^2.

The equation, for a density f(x, v) of tokens at x on S^2 with velocity v tangent at x (the mean-field
limit of a momentum Transformer, second-order particles x' = v, Dv/dt = F[rho](x) - gamma v)::

    d/dt f + v . grad_x f + div_v((F[rho] - gamma v) f) = 0,   rho(x) = int f(x, v) dv,

with ``F`` a model's field (:meth:`MeanField.evaluate <vlasov_tf.models.base.MeanField.evaluate>`) of
the spatial marginal rho, ``gamma >= 0`` a friction, and ``x' = v`` the geodesic flow.

**Grid.** Each cell c of a sphere mesh (:mod:`vlasov_tf.geometry.meshes`) carries an orthonormal
frame ``(e1_c, e2_c)`` of its tangent plane at the centre (:func:`tangent_frames`: east and north
about the z axis, the x axis near the poles) and a Cartesian velocity grid on ``[-V, V]^2`` in that
frame (:class:`~vlasov_tf.solvers.velocity_remap.VelocityGrid`, ``n x n`` cells). Unknowns: the masses
``M[c, a, b]`` of phase cells (cell c times velocity cell (a, b)); ``f = M / (A_c dv^2)``. In frame
components the Liouville measure ``dA dv1 dv2`` is invariant (the divergence of the connection term
in v cancels the x-divergence of the frame), so a conservative scheme on masses is consistent.

**Scheme: Strang splitting** ``A(dt/2) B(dt) A(dt/2)``:

- A, force and friction (:func:`~vlasov_tf.solvers.velocity_remap.affine_step`): rho does not change
  during A, so F is constant per cell and ``v -> s v + b`` is the exact characteristic map; the
  masses are remapped exactly for their MC-limited piecewise-linear profiles (second order in dv,
  no step restriction). F is evaluated at the middle of each half step (second order in time for a
  time-dependent model).
- B, free streaming (:class:`Streaming`): first-order upwind finite volumes in x with the velocity
  carried across faces by the Levi-Civita connection. Through face f between cells o and n (unit
  normal ``n_f`` from o to n, length ``L_f``, midpoint ``m_f``), node v of cell o has the normal
  velocity ``u = <P_{o->m} v, n_f>`` (``P`` the parallel transport along the great-circle arc,
  ``P_{p->q} w = w - <q, w> (p + q) / (1 + <p, q>)``); where ``u > 0`` the mass flows out at the rate
  ``u L_f / A_o`` and arrives in cell n at the velocity ``R_on v``, ``R_on = E_n P_{m->n} P_{o->m}
  E_o^T`` (a rotation by an angle ``theta_f``: transport o -> face -> n, re-expressed in n's frame).
  The arriving masses of a face, as an (n, n) array, are rotated by ``theta_f`` with the conservative,
  positive, second-order remap :func:`~vlasov_tf.solvers.velocity_remap.rotate` (exact quarter turns,
  then three shears), compiled face by face in
  :func:`~vlasov_tf.solvers.velocity_remap.streaming_gain`. Node w of cell n with ``<P_{n->m} w, n_f>
  < 0`` flows into o likewise with ``R_no = R_on^T``. This is the geodesic spray in a non-parallel
  frame: the rotation between neighbouring frames is what turns the velocity components. Steps:
  SSP-RK2 (Heun, convex combinations of Euler steps), positive when ``dt max(outflow rate) <= 1``;
  the step is ``cfl`` times that bound, equal steps between output times and the model's switches.

Properties (tests/test_kinetic_sphere.py): mass exact (``mass + outflow`` constant to round-off; the
outflow is what the velocity remaps move out of ``[-V, V]^2``, counted as it leaves); positive;
free streaming moves a velocity-localised bump along the great circle of its velocity at its speed;
friction alone decays ``int |v|^2 f`` as ``exp(-2 gamma t)`` up to the velocity grid's error (order
2.7 in dv observed); zero force and a pairwise interaction keep the angular momentum
``int x x v f`` up to the scheme's error, and a rigid rotation force gives its torque.

Orders: first in x (upwind: the angular momentum and the torque converge at order 1 in h), second
in dv (the remaps) and in time (Strang, Heun). The free-streaming centroid converges at order ~2 in
(h, dv) together because the upwind diffusion is symmetric about it. Cost: one step is two
streaming stages of ``O(F n^2)`` scalar work (numba) and two force evaluations of the model on the
cell centres.

Not done: a second-order (limited) reconstruction in x; MPI (one process); noise (velocity
diffusion). The doors (case file, CLI, run file, resume, figures) are
:mod:`vlasov_tf.runs.kinetic_sphere_runs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.memory import check_memory
from vlasov_tf.models.base import MeanField, Model, VelocityField, as_model, run_times, tangent
from vlasov_tf.models.sums import Sums
from vlasov_tf.solvers.velocity_remap import VelocityGrid, affine_step, streaming_gain

__all__ = [
    "InitialDensity",
    "KineticSphereSolution",
    "Streaming",
    "parallel_transport",
    "phase_diagnostics",
    "solve_kinetic_sphere",
    "tangent_frames",
]

#: An initial density ``f0(x, v)``: (P, 3) positions and (P, 3) tangent velocities -> (P,) values.
InitialDensity = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Bytes per (face, velocity node): the two outward rates (8 B each) and the construction's
# (F, n^2) temporaries (normal velocities, masks), with a margin of 2.
_BYTES_PER_FACE_NODE = 64


def tangent_frames(mesh: MeshGeometry) -> np.ndarray:
    """(C, 2, 3) orthonormal frames ``(e1, e2)`` of the tangent planes at the cell centres, with
    ``e1 x e2 = x``: ``e1 = z x x / |z x x|`` (east), ``e2 = x x e1`` (north); cells within 0.1 rad of
    a pole use the x axis instead of z (any frame is valid; the scheme transports between them)."""
    x = mesh.centres
    axis = np.zeros_like(x)
    polar = np.abs(x[:, 2]) > np.cos(0.1)
    axis[~polar, 2] = 1.0
    axis[polar, 0] = 1.0
    e1 = np.cross(axis, x)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(x, e1)
    return np.stack([e1, e2], axis=1)


def parallel_transport(p: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Parallel transport of ``w`` (tangent at unit p) along the shorter great-circle arc to unit q:
    ``w - <q, w> (p + q) / (1 + <p, q>)`` (the rotation about ``p x q`` that takes p to q). Rows
    broadcast: p, q (..., 3), w (..., 3)."""
    qw = np.einsum("...i,...i->...", q, w)
    pq = np.einsum("...i,...i->...", p, q)
    return w - (qw / (1 + pq))[..., None] * (p + q)


class Streaming:
    """The free-streaming operator ``dM/dt = B(M)`` on phase masses (C, n^2) (flat node index).

    Per face (module docstring): the outward rates ``u+ L_f / A`` of each node of the owner and of
    the neighbour, (F, n^2) each; the rotation angle ``theta_f`` of ``R_on`` (F,); ``out_rate``
    (C, n^2) the total outflow rate of each phase cell. ``B`` is linear in M but not a matrix:
    the arriving masses go through the limited rotation remap
    (:func:`~vlasov_tf.solvers.velocity_remap.rotate`). ``max_rate``: the largest outflow rate of
    a phase cell (Euler steps with ``dt <= 1 / max_rate`` keep M >= 0).
    """

    def __init__(self, mesh: MeshGeometry, grid: VelocityGrid, frames: np.ndarray) -> None:
        C, N, F = mesh.n_cells, grid.n**2, mesh.n_faces
        what = f"the kinetic sphere grid ({C} cells x {grid.n}^2 velocity cells)"
        check_memory(F * N * _BYTES_PER_FACE_NODE, what)
        self.mesh, self.grid = mesh, grid
        x, nodes = mesh.centres, grid.nodes
        o, n = mesh.face_cells[:, 0], mesh.face_cells[:, 1]
        m, nf = mesh.face_midpoints, mesh.face_normals
        # Frame vectors of o carried o -> face -> n, read in n's frame: R_on[f, i, j] = <e_i(n), P e_j(o)>.
        carried = parallel_transport(x[o, None], m[:, None], frames[o])
        carried = parallel_transport(m[:, None], x[n, None], carried)
        r_on = np.einsum("fik,fjk->fij", frames[n], carried)
        self.theta = np.arctan2(r_on[:, 1, 0], r_on[:, 0, 0])
        self.rates = []
        for src, sign in ((o, 1.0), (n, -1.0)):
            # <P_{src->m} v, sign n_f> = <v, P_{m->src} (sign n_f)>: one 2-vector per face.
            g = np.einsum("fik,fk->fi", frames[src], parallel_transport(m, x[src], sign * nf))
            u = g @ nodes.T  # (F, N) outward normal velocity of each node
            self.rates.append(np.maximum(u, 0.0) * (mesh.face_lengths / mesh.areas[src])[:, None])
        faces = np.arange(F)
        into_o = sparse.csr_matrix((np.ones(F), (o, faces)), shape=(C, F))
        into_n = sparse.csr_matrix((np.ones(F), (n, faces)), shape=(C, F))
        self.out_rate = into_o @ self.rates[0] + into_n @ self.rates[1]  # (C, N)
        self.max_rate = float(self.out_rate.max(initial=0.0))
        self._o, self._n = o, n

    def rate(self, mass: np.ndarray) -> tuple[np.ndarray, float]:
        """``dM/dt`` (C, N) of masses (C, N), and the rate (mass per time) leaving the velocity box."""
        gain = np.zeros_like(mass)
        lost = streaming_gain(
            mass, self.rates[0], self.rates[1], self.theta, self._o, self._n, self.grid.centres,
            self.grid.dv, gain,
        )  # fmt: skip
        return gain - self.out_rate * mass, float(lost)

    def step(self, mass: np.ndarray, dt: float) -> tuple[np.ndarray, float]:
        """SSP-RK2 (Heun) step of masses (C, N) over ``dt``: (new masses, mass that left the box)."""
        r0, out0 = self.rate(mass)
        m1 = mass + dt * r0
        r1, out1 = self.rate(m1)
        return 0.5 * (mass + m1 + dt * r1), 0.5 * dt * (out0 + out1)


@dataclass(frozen=True)
class KineticSphereSolution:
    """Phase-space densities and diagnostics at the output times.

    times (n_out,); f (n_out, C, n, n): density ``f = M / (A_c dv^2)`` at cell c, velocity node (a, b)
    of the cell's frame (``frames``, (C, 2, 3)); rho (n_out, C): spatial marginal as cell masses;
    mass, outflow (cumulative mass that left the velocity box: ``mass + outflow`` is constant),
    kinetic ``1/2 int |v|^2 f``, potential (the model's :meth:`energy
    <vlasov_tf.models.base.MeanField.energy>` of rho, NaN where it defines none) (n_out,); momentum
    ``int v f`` and angular ``int x x v f`` (n_out, 3), ambient vectors; grid, steps, dt (the step
    of the last interval).
    """

    times: np.ndarray
    f: np.ndarray
    rho: np.ndarray
    mass: np.ndarray
    outflow: np.ndarray
    kinetic: np.ndarray
    potential: np.ndarray
    momentum: np.ndarray
    angular: np.ndarray
    frames: np.ndarray
    grid: VelocityGrid
    steps: int
    dt: float


def phase_diagnostics(
    mesh: MeshGeometry, grid: VelocityGrid, frames: np.ndarray, mass: np.ndarray
) -> dict[str, np.ndarray | float]:
    """Mass, kinetic energy, momentum (3,) and angular momentum (3,) of phase masses (C, n, n)."""
    flat = mass.reshape(mesh.n_cells, -1)
    nodes = grid.nodes
    per_cell = flat @ nodes  # (C, 2): sum_k M_ck v_k in the cell's frame
    p_cell = np.einsum("ca,cak->ck", per_cell, frames)
    return {
        "mass": float(flat.sum()),
        "kinetic": float(0.5 * (flat @ (nodes**2).sum(axis=1)).sum()),
        "momentum": p_cell.sum(axis=0),
        "angular": np.cross(mesh.centres, p_cell).sum(axis=0),
    }


def _initial_masses(
    mesh: MeshGeometry, grid: VelocityGrid, frames: np.ndarray, f0: np.ndarray | InitialDensity
) -> np.ndarray:
    C, n = mesh.n_cells, grid.n
    cell = mesh.areas[:, None, None] * grid.dv**2
    if callable(f0):
        v = np.einsum("ka,cai->cki", grid.nodes, frames).reshape(-1, 3)
        x = np.repeat(mesh.centres, n * n, axis=0)
        vals = np.asarray(f0(x, v), dtype=float)
        if vals.shape != (C * n * n,):
            raise ValueError(
                f"the initial density f0(x, v) must return shape ({C * n * n},); got {vals.shape}"
            )
        f = vals.reshape(C, n, n)
    else:
        f = np.array(f0, dtype=float)
        if f.shape != (C, n, n):
            raise ValueError(
                f"the initial density must have shape (cells, n_v, n_v) = {(C, n, n)}; got {f.shape}"
            )
    if not np.isfinite(f).all() or (f < 0).any():
        raise ValueError("the initial density must be finite and >= 0")
    if not f.any():
        raise ValueError("the initial density is zero everywhere")
    return f * cell


def solve_kinetic_sphere(
    mesh: MeshGeometry,
    f0: np.ndarray | InitialDensity,
    model: MeanField | Model | VelocityField | None,
    *,
    gamma: float = 0.0,
    T: float | None = None,
    V: float,
    n_v: int,
    times: Sequence[float] | None = None,
    cfl: float = 0.9,
    max_dt: float | None = None,
    field_method: str = "auto",
) -> KineticSphereSolution:
    """Solve the kinetic equation on the tangent bundle of S^2 (module docstring) from 0 to T.

    Parameters
    ----------
    mesh : a sphere mesh (:func:`vlasov_tf.geometry.mesh_files.sphere_mesh`).
    f0 : initial density: an array (C, n_v, n_v) at the phase nodes (each cell's frame,
        :func:`tangent_frames`), or a callable ``f0(x, v)`` of (P, 3) positions and (P, 3) tangent
        velocities returning (P,) values, read at the nodes (midpoint rule).
    model : the force F[rho] (a :class:`~vlasov_tf.models.base.MeanField`, a user's model, or a
        prescribed field ``F(t, x)``); None for no force.
    gamma : friction >= 0.  T : final time (the model's own when None).
    V, n_v : velocity box ``[-V, V]^2`` in each frame, ``n_v`` cells per component.
    times : output times in [0, T] (default: 0 and T).
    cfl : fraction of the positivity bound ``1 / max outflow rate`` taken as step (<= 1).
    max_dt : a cap on the step.  field_method : how the model's sums are computed
        (:data:`vlasov_tf.kernels.METHODS`).
    """
    if mesh.kind != "sphere":
        raise ValueError(f"the kinetic sphere solver needs a sphere mesh; got a {mesh.kind} mesh")
    if not (np.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"the friction gamma must be finite and >= 0; got {gamma}")
    if not (0 < cfl <= 1):
        raise ValueError(f"cfl must be in (0, 1] (the positivity bound); got {cfl}")
    force = None if model is None else as_model(model, d=3)
    if force is not None and force.d != 3:
        raise ValueError(f"the model's dimension is {force.d}; the sphere needs d = 3")
    if force is not None and force.noise:
        raise ValueError(
            "the kinetic sphere solver has no noise (velocity diffusion): use a deterministic model"
        )
    if force is None:
        if T is None or not (np.isfinite(T) and T > 0):
            raise ValueError(f"the final time T must be finite and > 0; got {T}")
        T, switches = float(T), np.array([0.0, float(T)])
    else:
        T, switches = run_times(force, T)
    out_times = np.array([0.0, T] if times is None else times, dtype=float)
    if out_times.ndim != 1 or not (np.diff(out_times) > 0).all() or out_times[0] < 0 or out_times[-1] > T:
        raise ValueError(f"output times must increase strictly within [0, {T}]; got {out_times.tolist()}")
    grid = VelocityGrid(float(V), n_v)
    frames = tangent_frames(mesh)
    mass = _initial_masses(mesh, grid, frames, f0)
    C, n = mesh.n_cells, grid.n
    streaming = Streaming(mesh, grid, frames)
    bound = 1.0 / streaming.max_rate if streaming.max_rate > 0 else np.inf
    dt_max = min(cfl * bound, np.inf if max_dt is None else float(max_dt))
    if not np.isfinite(dt_max):
        dt_max = T
    sums = Sums.by_method(field_method)

    def velocity_step(m: np.ndarray, t: float, tau: float) -> tuple[np.ndarray, float]:
        if force is None and gamma == 0:
            return m, 0.0
        if force is None:
            f_frame = np.zeros((C, 2))
        else:
            rho = m.reshape(C, -1).sum(axis=1)
            F = force.piece(t).evaluate(t, mesh.centres, np.maximum(rho, 0.0), mesh.centres, True, sums)
            f_frame = np.einsum("cai,ci->ca", frames, tangent(mesh.centres, F))
        new, lost = affine_step(m, grid, f_frame, gamma, tau)
        return new, float(lost.sum())

    records: list[dict] = []
    outflow = 0.0

    def record(m: np.ndarray) -> None:
        diag = phase_diagnostics(mesh, grid, frames, m)
        rho = m.reshape(C, -1).sum(axis=1)
        energy = None if force is None else force.energy(mesh.centres, rho)
        records.append({
            **diag, "outflow": outflow, "rho": rho, "f": m / (mesh.areas[:, None, None] * grid.dv**2),
            "potential": np.nan if energy is None else float(energy),
        })  # fmt: skip

    stops = np.union1d(out_times, switches)
    stops = stops[stops <= out_times[-1]]
    t, steps, dt = 0.0, 0, 0.0
    if out_times[0] == 0:
        record(mass)
    for t_next in stops[stops > 0]:
        k = max(1, int(np.ceil((t_next - t) / dt_max * (1 - 1e-12))))
        dt = (t_next - t) / k
        for j in range(k):
            t0 = t + j * dt
            mass, lost_a = velocity_step(mass, t0 + 0.25 * dt, 0.5 * dt)
            flat, lost_b = streaming.step(mass.reshape(C, -1), dt)
            mass, lost_c = velocity_step(flat.reshape(C, n, n), t0 + 0.75 * dt, 0.5 * dt)
            outflow += lost_a + lost_b + lost_c
            steps += 1
        t = float(t_next)
        if np.isin(t_next, out_times):
            record(mass)

    def stack(key: str) -> np.ndarray:
        return np.array([r[key] for r in records])

    return KineticSphereSolution(
        times=out_times, f=stack("f"), rho=stack("rho"), mass=stack("mass"), outflow=stack("outflow"),
        kinetic=stack("kinetic"), potential=stack("potential"), momentum=stack("momentum"),
        angular=stack("angular"), frames=frames, grid=grid, steps=steps, dt=dt,
    )  # fmt: skip
