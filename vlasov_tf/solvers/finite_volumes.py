"""Eulerian solver: finite volumes for d rho/dt + div_S(rho X) = 0 on the circle and on S^2.

The unknowns are cell averages ``rho_c`` of the density (per unit length or
area) on a :class:`~vlasov_tf.geometry.meshes.MeshGeometry`. One forward-Euler stage is

    m_c <- m_c - dt sum_{faces f of c} +-F_f,   F_f = sum_q w_q u_fq rho_fq^upwind,   m_c = rho_c A_c,

with ``u_fq = X(x_fq) . n_f`` the normal velocity at the flux points ``x_fq``
of face f (owner to neighbour) and ``w_q`` their weights. The scheme:

- conservative: each face flux leaves one cell and enters the other, so the
  total mass changes only by round-off;
- space, ``reconstruction="quadratic"`` (the default, third order,
  :mod:`vlasov_tf.solvers.reconstruction`): a quadratic per cell by k-exact least
  squares over its vertex neighbours, read at two Gauss points per edge
  (one point, the face, on S^1), limiter ``"positivity"`` (Zhang-Shu) or
  ``"none"``; ``reconstruction="quadratic-lowdiss"`` (third order): the same
  with nearer cells weighted more in the fit and half the upwinding in the
  flux (:data:`~vlasov_tf.solvers.grid_scheme.UPWINDING`), which dissipates less than either other scheme
  (for filaments near the grid scale); ``reconstruction="linear"`` (second order, MUSCL): a
  least-squares gradient in the tangent plane of each cell read at the face
  midpoints, limited (``"barth-jespersen"`` by default) so that face values
  stay within the cell's and its neighbours' range, or ``"none"``;
- third order in time: SSP-RK3 (Shu-Osher), whose stages are convex
  combinations of forward-Euler steps;
- positive: face values are >= 0 by either limiter, and where a cell's
  outflow in one stage would exceed its mass, that cell's outgoing fluxes are
  scaled down (still conservative: a flux point is outgoing for exactly one cell);
- error-controlled steps: SSP-RK3 carries an embedded second-order solution
  (Heun's, ``2 m2 - m0`` from its own stages, no extra field), and a step is
  accepted when ``||m_rk3 - m_heun||_1 <= atol * mass + rtol * ||m_new - m_old||_1``
  (``rtol`` relative to what the step changes, ``atol`` to the total mass); a
  rejected step is retried shorter (``ratio^(-1/2)`` where the relative part
  dominates, the ratio going like dt^2 there; ``ratio^(-1/3)`` elsewhere), the
  next one grows by at most 5x, not at all right after a rejection. Steps from
  the estimate are powers of 2^(1/16), so the round-off of norms summed over MPI
  ranks cannot change them. The CFL bound ``dt <= cfl * min_c A_c / sum_{out}
  u_f L_f`` and ``max_dt`` cap the step, and steps are equal between stops
  (schedule switches and output times; a retried step is only shortened),
  where they land exactly. The
  controller restarts at every stop from a step estimated from the state
  (:func:`~vlasov_tf.solvers.step_control.first_step`, one extra field evaluation), so the steps after a stop
  depend only on the state there and a resumed run is bit-exact. Without the
  control a state near rest (tiny velocities) would take one CFL step for the
  whole run; the defaults keep linear growth rates within 1e-3 (tests). The controller is
  :class:`~vlasov_tf.solvers.step_control.Controller`, which the causal grid shares; this
  module gives it a :class:`GridStepper`, and the options are one
  :class:`~vlasov_tf.solvers.grid_scheme.GridScheme`.

The velocity is the model's field (:class:`~vlasov_tf.models.base.MeanField`) at the flux points
(attention, an interaction kernel, a user's model, or a prescribed field ``v(t, x)``) of the
measure ``field_measure``: ``"cells"`` (the default), masses at the cell centres, a second-order
quadrature of ``X[rho]`` (attention converges at order 2 with either reconstruction); or
``"quadrature"`` (quadratic only), each cell's polynomial summed at 2 points a cell on S^1, 3 on
S^2 (:meth:`~vlasov_tf.solvers.reconstruction.QuadraticReconstruction.point_masses`: >= 0, summing
to the cell's mass), a third-order quadrature for 2-3 times the keys. The kernel sums go
through :func:`vlasov_tf.kernels.kernel_sums`, which picks per head the cheapest
method within 1e-10 per row (the FFT on a uniform circle grid for scaled
rotations, spectral sums on S^1 and S^2 for any head, dense sums for small
grids); ``field_method`` forces one.

Under MPI (``comm``) each rank advances its part of the cells
(:class:`vlasov_tf.parallel.LocalMesh`: owned cells plus two halo layers,
refreshed after every stage; :class:`~vlasov_tf.parallel.MpiReductions` for the norms and
minima, :class:`~vlasov_tf.parallel.Reductions` serially), the step is the minimum over ranks, and the
field at a rank's faces sums the whole measure: the spectral coefficients of
each rank's cells are summed over the ranks (one all-reduce), the dense sums
pass blocks of (cell centres, masses) round a ring
(:class:`vlasov_tf.parallel.RingSums`). The local operators keep the global
order of faces, so the scheme itself gives the serial bits; only the split of
the nonlocal sums changes the round-off.

Design notes: docs/numerics.md §2 (the finite-volume scheme); docs/design.md §2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.kernels.row_tolerance import RowBudget
from vlasov_tf.memory import BYTES_PER_CELL, check_memory
from vlasov_tf.models.base import MeanField, Model, VelocityField, as_model, run_times
from vlasov_tf.models.sums import Sums
from vlasov_tf.parallel import Comm, LocalMesh, MpiReductions, Reductions, RingSums
from vlasov_tf.solvers.diffusion import Diffusion
from vlasov_tf.solvers.flux_accuracy import flux_tolerances
from vlasov_tf.solvers.grid_scheme import (
    ATOL,
    COMPACT_POWER,
    FIELD_ACCURACY,
    FIELD_MEASURE,
    RTOL,
    UPWINDING,
    GridScheme,
    check_field_accuracy,
    check_field_measure,
    check_scheme,
)
from vlasov_tf.solvers.implicit_diffusion import ImplicitDiffusion
from vlasov_tf.solvers.particles import MAX_STEPS
from vlasov_tf.solvers.reconstruction import QuadraticReconstruction
from vlasov_tf.solvers.step_control import Controller, ssp_rk3
from vlasov_tf.solvers.time_loop import ProgressBar, TimeLoop, Tracker, trackers_of

__all__ = [
    "FiniteVolume",
    "GridSolution",
    "GridStepper",
    "distribute",
    "solve_grid",
    "ssp_rk3_step",
]


@dataclass(frozen=True)
class GridSolution:
    """Cell densities at the output times.

    times : (n_out,); densities : (n_out, C) cell averages; mass : (n_out,)
    total mass ``sum_c rho_c A_c``; steps : SSP-RK3 steps taken (accepted); rejected : steps
    tried and rejected by the error control. Under MPI only rank 0 holds the densities (the
    other ranks get shape (n_out, 0)).
    """

    mesh: MeshGeometry
    times: np.ndarray
    densities: np.ndarray
    mass: np.ndarray
    steps: int
    rejected: int

    @property
    def final(self) -> np.ndarray:
        return self.densities[-1]


class FiniteVolume:
    """The spatial operator of the scheme on one mesh: reconstruction, fluxes, CFL.

    Everything that depends only on the mesh is computed once here: the
    reconstruction is linear in the cell values before limiting, so it is stored
    as operators (linear: least-squares gradients at the face midpoints, two
    sparse (F, F) operators in the face jumps; quadratic:
    :class:`~vlasov_tf.solvers.reconstruction.QuadraticReconstruction`). ``points`` (F, Q, d)
    and ``weights`` (F, Q) are the flux points and their weights (Q = 1 for the
    linear scheme: the face midpoints and lengths).

    On one rank's :class:`~vlasov_tf.parallel.LocalMesh` pass ``ring``: the
    attention then sums the measure of the first ``n_owned`` cells of every
    rank (the halo cells belong to other ranks' blocks), with the ring as the
    kernel sums' ``split``.

    ``noise`` > 0 adds the diffusion ``noise * Laplace`` (:class:`~vlasov_tf.solvers.diffusion.Diffusion`)
    to the fluxes, the rates and the step bound; 0 leaves the transport scheme as it is. With
    ``diffusion="implicit"`` it is ``split_diffusion`` instead, which the solver steps apart
    (:mod:`~vlasov_tf.solvers.implicit_diffusion`), and the operator is the transport's.

    ``field_measure``: one of :data:`~vlasov_tf.solvers.grid_scheme.FIELD_MEASURES` (module
    docstring; :func:`~vlasov_tf.solvers.grid_scheme.check_field_measure`).

    ``field_accuracy``: one of :data:`~vlasov_tf.solvers.grid_scheme.FIELD_ACCURACIES`; with
    ``"flux"`` the kernel sums at the flux points take the tolerances of :meth:`row_tolerances`.
    Under MPI ``exchange`` refreshes halo cells (the owners' bounds) and ``face_length`` is the
    whole mesh's total face length (default: this mesh's).
    """

    def __init__(
        self,
        mesh: MeshGeometry,
        limiter: str | None = None,
        *,
        reconstruction: str | None = None,
        ring: RingSums | None = None,
        n_owned: int | None = None,
        field_method: str = "auto",
        noise: float = 0.0,
        field_measure: str = FIELD_MEASURE,
        field_accuracy: str = FIELD_ACCURACY,
        exchange: Callable[[np.ndarray], None] | None = None,
        face_length: float | None = None,
        diffusion: str = "explicit",
    ) -> None:
        reconstruction, limiter = check_scheme(reconstruction, limiter)
        check_field_measure(field_measure, reconstruction)
        check_field_accuracy(field_accuracy)
        self.field_measure = field_measure
        self.field_accuracy = field_accuracy
        self._exchange = exchange
        self._face_length = float(mesh.face_lengths.sum()) if face_length is None else float(face_length)
        self.field_method = field_method
        self.sums = Sums.by_method(field_method, split=ring)
        self.mesh = mesh
        self.limiter = limiter
        self.reconstruction = reconstruction
        self._quadratic: QuadraticReconstruction | None = None
        low = reconstruction == "quadratic-lowdiss"
        self.upwinding = UPWINDING if low else 1.0
        if reconstruction.startswith("quadratic"):
            self._quadratic = QuadraticReconstruction(mesh, COMPACT_POWER if low else 1)
            self.points, self.weights = self._quadratic.points, self._quadratic.weights
        else:
            self.points, self.weights = mesh.face_midpoints[:, None, :], mesh.face_lengths[:, None]
        # The flux points as one read-only (F Q, d) array: the same object at every call, so the
        # kernel sums keep what they derive from it (kernels.cache).
        self._queries = self.points.reshape(-1, mesh.d)
        self._normals = np.repeat(mesh.face_normals, self.points.shape[1], axis=0)
        self.ring = ring
        self.n_owned = mesh.n_cells if n_owned is None else n_owned
        self._keys = mesh.centres if n_owned is None else mesh.centres[:n_owned]
        if field_measure == "quadrature":
            assert self._quadratic is not None  # check_field_measure
            # (n_owned P, d), read-only and the same object at every call, as the queries.
            self._keys = self._quadratic.measure_points()[0][: self.n_owned].reshape(-1, mesh.d)
        self._n = mesh.n_cells
        if self._quadratic is None:
            self._build_gradients(mesh)
        spread = None if noise == 0 else Diffusion(mesh, noise, self._quadratic)
        # "implicit": the transport alone here; the solver steps ``split_diffusion`` around it.
        implicit = diffusion == "implicit"
        self.diffusion: Diffusion | None = None if implicit else spread
        self.split_diffusion: Diffusion | None = spread if implicit else None

    def _build_gradients(self, mesh: MeshGeometry) -> None:
        """The linear reconstruction's operators ``_to_own``, ``_to_nbr`` (F, F)."""
        c, f = mesh.centres, mesh.face_cells
        own, nbr = f[:, 0], f[:, 1]
        n, d, nf = mesh.n_cells, c.shape[1], mesh.n_faces
        # Tangent-plane displacements, cell centre -> neighbour centre and -> face midpoint.
        r_on = _tangent(c[own], c[nbr] - c[own])
        r_no = _tangent(c[nbr], c[own] - c[nbr])
        r_of = _tangent(c[own], mesh.face_midpoints - c[own])
        r_nf = _tangent(c[nbr], mesh.face_midpoints - c[nbr])
        # Least-squares gradients, weights 1/|r|^2: grad_c = M_c^{-1} sum_faces w r (rho_other - rho_c).
        # The normal c c^T makes M_c invertible and leaves gradients tangent.
        w_on = 1.0 / np.einsum("fi,fi->f", r_on, r_on)
        w_no = 1.0 / np.einsum("fi,fi->f", r_no, r_no)
        mat = np.einsum("ci,cj->cij", c, c)
        np.add.at(mat, own, w_on[:, None, None] * np.einsum("fi,fj->fij", r_on, r_on))
        np.add.at(mat, nbr, w_no[:, None, None] * np.einsum("fi,fj->fij", r_no, r_no))
        # The outer halo cells of an MPI sub-mesh lack faces and would make M_c singular; their
        # gradients never reach an owned cell's update, so any invertible M_c will do there.
        faces_per_cell = np.bincount(own, minlength=n) + np.bincount(nbr, minlength=n)
        mat[faces_per_cell < d] += np.eye(d)
        inv = np.linalg.inv(mat)
        # Everything is linear in the face jumps rho_nbr - rho_own, so the unlimited face
        # increments are two sparse (F, F) operators with a few entries per row, built once.
        rows = np.r_[own, nbr]
        coef = np.r_[w_on[:, None] * r_on, -w_no[:, None] * r_no]  # (2F, d) per (cell, face)
        grad_coef = np.einsum("kij,kj->ki", inv[rows], coef)  # (2F, d): d grad_cell / d jump_face
        cols = np.r_[np.arange(nf), np.arange(nf)]
        grad_op = [
            sparse.csr_matrix((grad_coef[:, i], (rows, cols)), shape=(n, nf)) for i in range(d)
        ]  # grad_op[i] @ jump = i-th component of every cell gradient
        self._to_own = sum(sparse.diags(r_of[:, i]) @ grad_op[i][own] for i in range(d)).tocsr()
        self._to_nbr = sum(sparse.diags(r_nf[:, i]) @ grad_op[i][nbr] for i in range(d)).tocsr()

    def face_values(
        self, rho: np.ndarray, coefficients: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Limited reconstruction at the flux points: (owner side, neighbour side), each (F, Q).

        Linear: Q = 1, the face midpoints. Quadratic: :mod:`vlasov_tf.solvers.reconstruction`
        (``coefficients``: its polynomials' of ``rho``, when computed already).
        """
        if self._quadratic is not None:
            return self._quadratic.face_values(rho, self.limiter == "positivity", coefficients)
        own, nbr = self.mesh.face_cells[:, 0], self.mesh.face_cells[:, 1]
        jump = rho[nbr] - rho[own]
        d_own, d_nbr = self._to_own @ jump, self._to_nbr @ jump
        if self.limiter == "barth-jespersen":
            phi = self._barth_jespersen(rho, d_own, d_nbr)
            d_own, d_nbr = phi[own] * d_own, phi[nbr] * d_nbr
        return (rho[own] + d_own)[:, None], (rho[nbr] + d_nbr)[:, None]

    def _barth_jespersen(self, rho: np.ndarray, d_own: np.ndarray, d_nbr: np.ndarray) -> np.ndarray:
        """(C,) factors in [0, 1] keeping every face value within the cell's neighbourhood range."""
        own, nbr = self.mesh.face_cells[:, 0], self.mesh.face_cells[:, 1]
        hi, lo = rho.copy(), rho.copy()
        np.maximum.at(hi, own, rho[nbr])
        np.maximum.at(hi, nbr, rho[own])
        np.minimum.at(lo, own, rho[nbr])
        np.minimum.at(lo, nbr, rho[own])
        phi = np.ones(self._n)
        for cells, delta in ((own, d_own), (nbr, d_nbr)):
            room = np.where(delta > 0, hi[cells] - rho[cells], lo[cells] - rho[cells])
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(delta != 0, room / delta, 1.0)
            np.minimum.at(phi, cells, np.clip(ratio, 0.0, 1.0))
        return phi

    def polynomials(self, rho: np.ndarray) -> np.ndarray | None:
        """The quadratic reconstruction's coefficients of ``rho`` (None for the linear one): computed
        once a stage, they serve the field's quadrature measure, the transport and the diffusive
        fluxes alike."""
        return None if self._quadratic is None else self._quadratic.coefficients(rho)

    def fluxes(
        self,
        rho: np.ndarray,
        u: np.ndarray,
        coefficients: np.ndarray | None = None,
        sides: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """(F, Q) upwind fluxes ``w_fq u_fq rho_fq`` owner -> neighbour at the flux points (weights
        ``w``: the face lengths (Q = 1) or Gauss weights), for normal velocities ``u`` (F,) or (F, Q);
        ``coefficients``: :meth:`polynomials` of ``rho``, ``sides``: its :meth:`face_values`, when
        computed already."""
        a = coefficients
        if a is None and self.diffusion is not None:
            a = self.polynomials(rho)  # serves both fluxes
        r_own, r_nbr = self.face_values(rho, a) if sides is None else sides
        u = u.reshape(r_own.shape)
        if self.upwinding == 1.0:
            flux = u * self.weights * np.where(u >= 0, r_own, r_nbr)
        else:
            # Non-negative weights of the two sides: the flux keeps the sign of u, so the
            # outflow scaling of euler_step still keeps the masses non-negative.
            up, down = 0.5 * (1.0 + self.upwinding), 0.5 * (1.0 - self.upwinding)
            flux = u * self.weights * np.where(u >= 0, up * r_own + down * r_nbr, up * r_nbr + down * r_own)
        if self.diffusion is None:
            return flux
        spread = self.diffusion.fluxes(rho, a)
        # The linear scheme's one flux point per face takes the face's whole diffusive flux.
        return flux + (spread if spread.shape == flux.shape else spread.sum(axis=1, keepdims=True))

    def rate(self, rho: np.ndarray, u: np.ndarray) -> np.ndarray:
        """(C,) ``dm/dt = -div F`` of the unscaled fluxes."""
        return -self.mesh.net_outflow(self.fluxes(rho, u).sum(axis=1))

    def euler_step(self, mass: np.ndarray, flux: np.ndarray, dt: float) -> np.ndarray:
        """``m - dt div F`` for fluxes (F,) or (F, Q), with outgoing fluxes scaled where they would
        overdraw a cell (each flux point is outgoing for the cell upwind of it)."""
        own, nbr = self.mesh.face_cells[:, 0], self.mesh.face_cells[:, 1]
        flux = flux.reshape(len(own), -1)
        upwind = np.where(flux >= 0, own[:, None], nbr[:, None])
        outflow = dt * np.bincount(upwind.ravel(), np.abs(flux).ravel(), self._n)
        # A cell may hold a round-off negative mass (-1e-46 where a gated field is exactly zero):
        # without the clip, a zero outflow would give -inf here and 0 * inf = nan in the fluxes.
        held = np.maximum(mass, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(outflow > held, held / outflow, 1.0)
        return mass - dt * self.mesh.net_outflow((flux * scale[upwind]).sum(axis=1))

    def stable_dt(self, u: np.ndarray, cfl: float) -> float:
        """``cfl * min_c A_c / (outgoing sum_fq |u_fq| w_fq)``, plus the diffusive outflow rate with
        noise (:meth:`~vlasov_tf.solvers.diffusion.Diffusion.outflow_rates`); inf for a field at
        rest without noise."""
        own, nbr = self.mesh.face_cells[:, 0], self.mesh.face_cells[:, 1]
        u = u.reshape(self.weights.shape)
        q = np.abs(u) * self.weights
        out = np.bincount(np.where(u >= 0, own[:, None], nbr[:, None]).ravel(), q.ravel(), self._n)
        if self.diffusion is not None:
            out += self.diffusion.outflow_rates()
        with np.errstate(divide="ignore"):
            return float(cfl * np.min(self.mesh.areas / out))

    def normal_velocity(
        self,
        model: MeanField,
        t: float,
        rho: np.ndarray,
        coefficients: np.ndarray | None = None,
        sides: tuple[np.ndarray, np.ndarray] | None = None,
        carried: np.ndarray | None = None,
    ) -> np.ndarray:
        """``X[m](t) . n_f`` at the flux points: the model's field of the cell measure, or of the
        quadrature measure (``field_measure``; ``coefficients``: :meth:`polynomials` of ``rho``,
        ``sides``: its :meth:`face_values` (for the ``"flux"`` budget), when computed already).
        ``carried``: the density the fluxes of this velocity carry, when it is not ``rho`` (a causal
        slice moved by the field of the slices up to it): the ``"flux"`` budget bounds its face
        values (``sides`` are then ignored).

        (F,) for the linear reconstruction (the face midpoints), (F, Q) for the quadratic.
        """
        m = self.mesh
        k = self.n_owned  # under MPI the halo cells' mass is counted by their owners
        if self.field_measure == "quadrature":
            assert self._quadratic is not None
            masses = self._quadratic.point_masses(rho, coefficients, cells=k).ravel()  # >= 0
        else:
            # Round-off negative masses (see euler_step) are zero mass to every field method.
            masses = np.maximum(rho[:k] * m.areas[:k], 0.0)
        sums = self.sums
        if self.field_accuracy == "flux" and sums.takes_row_tol:
            if carried is None:
                sums = sums.with_row_tol(self.row_tolerances(rho, coefficients, sides))
            else:
                sums = sums.with_row_tol(self.row_tolerances(carried))
        x = model.evaluate(t, self._keys, masses, self._queries, True, sums)
        u = np.einsum("fi,fi->f", x, self._normals)
        return u if self._quadratic is None else u.reshape(self.weights.shape)

    def row_tolerances(
        self,
        rho: np.ndarray,
        coefficients: np.ndarray | None = None,
        sides: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RowBudget:
        """The error budget of the field's kernel sums over the (F Q,) flux points (``field_accuracy =
        "flux"``; :func:`~vlasov_tf.solvers.flux_accuracy.flux_tolerances`) for the density ``rho``
        (``coefficients``, ``sides``: as for :meth:`fluxes`)."""
        if sides is None:
            sides = self.face_values(rho, coefficients)
        return flux_tolerances(
            self.mesh.face_cells, rho, sides, self.weights, self._face_length, self.sums.tol,
            self._exchange, None if self.ring is None else self.n_owned,
            None if self.ring is None else self.ring.allreduce,
        )


def _tangent(at: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """Rows of ``vec`` projected on the tangent planes at the unit rows of ``at``."""
    return vec - np.einsum("fi,fi->f", vec, at)[:, None] * at


def _check_density(mesh: MeshGeometry, rho0: np.ndarray) -> np.ndarray:
    rho = np.array(rho0, dtype=float)
    if rho.shape != (mesh.n_cells,):
        raise ValueError(
            f"initial density must have one value per cell, shape ({mesh.n_cells},); got {rho.shape}"
        )
    if not np.isfinite(rho).all():
        i = int(np.flatnonzero(~np.isfinite(rho))[0])
        raise ValueError(f"initial density is not finite (cell {i}: {rho[i]})")
    if (rho < 0).any():
        i = int(np.argmin(rho))
        raise ValueError(f"initial density must be non-negative (cell {i}: {rho[i]:.3g})")
    if not (rho @ mesh.areas > 0):
        raise ValueError("initial density has zero mass")
    return rho


def solve_grid(
    mesh: MeshGeometry,
    rho0: np.ndarray,
    model: MeanField | Model | VelocityField,
    T: float | None = None,
    *,
    t_eval: np.ndarray | None = None,
    cfl: float = 0.5,
    max_dt: float | None = None,
    rtol: float | None = RTOL,
    atol: float = ATOL,
    reconstruction: str | None = None,
    limiter: str | None = None,
    progress: bool = False,
    callback: Callable[[float, np.ndarray], None] | None = None,
    step_counts: Callable[[float, int, int], None] | None = None,
    t0: float = 0.0,
    comm: Comm | None = None,
    field_method: str = "auto",
    scheme: GridScheme | None = None,
    trackers: Sequence[Tracker] = (),
    field_measure: str = FIELD_MEASURE,
    field_accuracy: str = FIELD_ACCURACY,
    diffusion: str = "explicit",
) -> GridSolution:
    """Evolve cell densities by the continuity equation up to ``T``.

    Parameters
    ----------
    mesh : the circle or sphere mesh geometry.
    rho0 : (C,) initial cell averages, finite and >= 0 with positive mass.
    model : the velocity field of the density (:func:`~vlasov_tf.models.base.as_model`): a
        :class:`~vlasov_tf.models.base.MeanField` (an attention
        :class:`~vlasov_tf.models.attention.Schedule`, an
        :class:`~vlasov_tf.models.interaction.Interaction`, ...; its switch times are step
        boundaries), a user's :class:`~vlasov_tf.models.base.Model`, or a prescribed velocity
        ``v(t, x)`` for (n, d) points.
    T : final time (default: the model's, a schedule's; required for other models).
    t_eval : increasing output times in [0, T]; default ``[0, T]``.
    cfl : CFL number in (0, 1]; ``max_dt`` optionally caps the step.
    rtol, atol : error control (module docstring): a step is accepted when the L1 norm of the
        difference between SSP-RK3 and its embedded Heun solution is at most
        ``atol * mass + rtol * ||m_new - m_old||_1``, i.e. ``rtol`` relative to what the step
        changes, ``atol`` relative to the total mass. ``rtol=None``: no error control, the
        CFL step capped by ``max_dt`` (fixed steps, for benchmarks and comparisons at a given dt).
    reconstruction : ``"quadratic"`` (k-exact least squares, third order:
        :mod:`vlasov_tf.solvers.reconstruction`), ``"quadratic-lowdiss"`` (the same, less
        dissipative: strong deformation) or ``"linear"`` (MUSCL, second order); None: the
        quadratic one unless ``limiter`` is the linear one's
        (:func:`~vlasov_tf.solvers.grid_scheme.check_scheme`).
    limiter : quadratic: ``"positivity"`` (default) or ``"none"``; linear: ``"barth-jespersen"``
        (default) or ``"none"`` (unlimited, not positive).
    callback : ``callback(t, rho)`` at every output time, as it is reached.
    step_counts : ``step_counts(t, taken, rejected)`` at every output time (on rank 0): the steps
        accepted and rejected since the previous output.
    t0 : resume: ``rho0`` is the density at time ``t0`` (a switch or an output time);
        the steps after ``t0`` are those of a run from 0 (they depend only on the state
        and the later stops), and only the outputs at times >= ``t0`` are returned.
    comm : an mpi4py communicator: run on its ranks (every rank passes the same
        global ``mesh`` and ``rho0``; the callback and the densities are on rank 0,
        in global cell order; the result equals the serial one to round-off).
    field_method : one of :data:`~vlasov_tf.solvers.grid_scheme.FIELD_METHODS`
        (:func:`vlasov_tf.kernels.kernel_sums`); under MPI the spectral sums add their
        coefficients over the ranks, "dense" and "taylor" take the ring and "fft" is refused.
    scheme : the scheme's options at once (:class:`~vlasov_tf.solvers.grid_scheme.GridScheme`),
        instead of ``cfl``, ``max_dt``, ``rtol``, ``atol``, ``reconstruction``, ``limiter``,
        ``field_method``, ``field_measure`` and ``field_accuracy``.
    trackers : told of every output and step on rank 0
        (:class:`~vlasov_tf.solvers.time_loop.Tracker`), after ``step_counts`` and ``callback``.
    field_measure : whose field moves the density: ``"cells"`` (masses at the cell centres, second
        order) or ``"quadrature"`` (the quadratic polynomials at 2 points a cell on S^1, 3 on S^2,
        third order; quadratic only). Under MPI the points go with their cells.
    field_accuracy : what the field's kernel sums must meet: ``"rows"`` (every flux point within
        ``tol = 1e-10`` of its own normaliser) or ``"flux"`` (one error budget ``tol q L <= tol
        sum w b`` over the flux points weighted by ``w b``, ``b`` a bound of the upwind density,
        ``q`` its length-weighted mean: the fast expansion serves the points where that is
        cheapest, clipped to the field's bound, the others within ``tol``; the fluxes' error bound
        is at most twice the strict one's;
        :meth:`FiniteVolume.row_tolerances`). Under MPI the cut-off is the serial run's.
    diffusion : a noisy model's ``sigma Laplace``: ``"explicit"`` (in the transport's fluxes, the
        step bounded by ``~ h^2 / sigma`` too) or ``"implicit"`` (Strang-split TR-BDF2 around the
        transport's step: :mod:`~vlasov_tf.solvers.implicit_diffusion`).
    """
    options = (cfl, max_dt, rtol, atol, reconstruction, limiter, field_method, field_measure)
    scheme = GridScheme.of(scheme, *options, field_accuracy, diffusion)
    rho = _check_density(mesh, rho0)
    model = as_model(model, mesh.d)
    if model.d != mesh.d:
        raise ValueError(f"the model is for d = {model.d}, the {mesh.kind} mesh has d = {mesh.d}")
    T, switches = run_times(model, T)
    fv, red, cells = distribute(mesh, scheme, comm, model.noise)
    if fv.diffusion is not None:
        # The explicit diffusion's step bound alone, before any field is evaluated: a sigma that
        # would take years of steps is a typo (as particles' MAX_STEPS).
        fastest = -red.min(-float(np.max(fv.diffusion.outflow_rates() / fv.mesh.areas)))  # over ranks
        need = (T - t0) * fastest / scheme.cfl
        if need > MAX_STEPS:
            raise ValueError(
                f"noise sigma = {model.noise:g} on this mesh needs about {need:.2g} explicit steps (the "
                f"diffusion's stable step ~ h^2 / sigma), more than MAX_STEPS = {MAX_STEPS:.0e}"
            )
    told = trackers_of(trackers, callback, step_counts)
    told.append(ProgressBar(f"grid ({mesh.kind}, C={mesh.n_cells})", bar=progress))  # logged, bar or not
    loop = TimeLoop.start(T, switches, t_eval, t0, trackers=told if red.root else ())
    ranks = 1 if comm is None else comm.size  # rank 0 gathers every snapshot
    need = mesh.n_cells * (BYTES_PER_CELL / ranks + 8 * len(loop.times))
    check_memory(need, f"solve_grid: {mesh.n_cells} cells, {len(loop.times)} output times")
    control = Controller(scheme.step_options, red, loop.tol)
    areas, n = fv.mesh.areas, red.n_owned
    tolerances = None if scheme.rtol is None else (scheme.rtol, scheme.atol)
    split = None if fv.split_diffusion is None else ImplicitDiffusion(fv.split_diffusion, red, tolerances)
    out_mass: list[float] = []

    def emit(t: float, mass: np.ndarray) -> np.ndarray:
        rho = mass / areas
        taken, rejected = control.since_output()
        out_mass.append(red.sum(float(rho[:n] @ areas[:n])))
        full = red.gather(rho[:n])
        if full is not None:  # rank 0 only
            loop.store(t, full, taken, rejected)
        # Continue from the emitted density, as a resumed run does: resume is then bit-exact.
        return rho * areas

    def stepper(t: float, t_next: float) -> GridStepper:
        # The block in force up to the next stop (steps never straddle a switch).
        return GridStepper(fv, model.piece(0.5 * (t + t_next)), red, split)

    with loop.tracking():
        control.run(loop, rho[cells] * areas, stepper, emit)
    dens = np.array(loop.snapshots) if loop.snapshots else np.empty((len(out_mass), 0))
    return GridSolution(mesh, loop.times, dens, np.array(out_mass), control.taken, control.rejected)


def distribute(
    mesh: MeshGeometry, scheme: GridScheme, comm: Comm | None = None, noise: float = 0.0
) -> tuple[FiniteVolume, Reductions, np.ndarray | slice]:
    """The scheme's operator on this rank's share of ``mesh`` (with the diffusion ``noise *
    Laplace`` for noise > 0), its reductions, and which global cells it holds (an index of the
    global cell values; the whole mesh serially)."""
    recon, method, measure = scheme.reconstruction, scheme.field_method, scheme.field_measure
    accuracy = scheme.field_accuracy
    if comm is None:
        fv = FiniteVolume(mesh, scheme.limiter, reconstruction=recon, field_method=method, noise=noise,
                          field_measure=measure, field_accuracy=accuracy,
                          diffusion=scheme.diffusion)  # fmt: skip
        return fv, Reductions(mesh.n_cells), slice(None)
    # The diffusion reads quadratic polynomials, whose stencils need the vertex halo.
    local = LocalMesh.distribute(mesh, comm, vertex_halo=recon != "linear" or noise > 0)
    red = MpiReductions(local)
    fv = FiniteVolume(
        local.mesh, scheme.limiter, reconstruction=recon, ring=RingSums(comm), n_owned=local.n_owned,
        field_method=method, noise=noise, field_measure=measure, field_accuracy=accuracy,
        exchange=red.exchange, face_length=float(mesh.face_lengths.sum()), diffusion=scheme.diffusion,
    )  # fmt: skip
    return fv, red, local.cells


@dataclass(frozen=True)
class GridStepper:
    """SSP-RK3 on the cell masses of ``fv``'s mesh by the piece ``field``
    (:class:`~vlasov_tf.solvers.step_control.Stepper`; velocities: the normal velocities);
    with ``split``, Strang-split around its implicit diffusion (the transport's first stage then
    evaluates the field of the diffused masses: one field evaluation more a step)."""

    fv: FiniteVolume
    field: MeanField
    reductions: Reductions
    split: ImplicitDiffusion | None = None

    def velocity(self, t: float, state: np.ndarray) -> np.ndarray:
        return self.fv.normal_velocity(self.field, t, state / self.fv.mesh.areas)

    def stable_dt(self, velocity: np.ndarray, cfl: float) -> float:
        return self.fv.stable_dt(velocity, cfl)

    def rate(self, state: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        return self.fv.rate(state / self.fv.mesh.areas, velocity)

    def step(
        self, state: np.ndarray, t: float, dt: float, velocity: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.split is None:
            return ssp_rk3_step(self.fv, self.field, t, state, dt, velocity, self.reductions.exchange)
        fv, field, exchange = self.fv, self.field, self.reductions.exchange
        return self.split.strang(state, dt, lambda m: ssp_rk3_step(fv, field, t, m, dt, None, exchange))


def ssp_rk3_step(
    fv: FiniteVolume,
    field: MeanField,
    t: float,
    m0: np.ndarray,
    dt: float,
    u0: np.ndarray | None,
    exchange: Callable[[np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One Shu-Osher SSP-RK3 step on the cell masses, and its embedded second-order solution.

    Returns ``(m3, m_heun)``: the SSP-RK3 masses and Heun's (SSP-RK2) from the same stages,
    ``m_heun = (m0 + stage(m1)) / 2 = 2 m2 - m0``; their difference estimates the local error,
    O(dt^3) (:func:`~vlasov_tf.solvers.step_control.ssp_rk3`). Stage velocities are recomputed
    (``u0`` is the first's; None: evaluated). ``exchange(m)`` refreshes halo cells in place after
    each stage (MPI).
    """
    areas = fv.mesh.areas

    def stage(m: np.ndarray, ts: float, u: np.ndarray | None) -> np.ndarray:
        rho = m / areas
        a = fv.polynomials(rho)
        sides = fv.face_values(rho, a)  # serves the fluxes and the "flux" budget alike
        if u is None:
            u = fv.normal_velocity(field, ts, rho, a, sides)
        return fv.euler_step(m, fv.fluxes(rho, u, a, sides), dt)

    return ssp_rk3(stage, m0, t, dt, u0, exchange)
