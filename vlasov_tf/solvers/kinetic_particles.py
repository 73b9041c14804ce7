"""Second-order (kinetic) tokens: a momentum Transformer and its continuous limit on the tangent bundle.

N weighted tokens ``(x_i, v_i)``, ``x_i`` on S^{d-1}, ``v_i`` tangent at ``x_i``, solve::

    x_i' = v_i,      D v_i / dt = F[mu](t, x_i) - gamma v_i + K A_i(v)

(``D/dt`` the covariant derivative: in the embedding ``v_i' = ... - |v_i|^2 x_i``), with
``mu = sum_j w_j delta_{x_j}`` the spatial marginal, ``F`` any :class:`~vlasov_tf.models.base.MeanField`
(its field is now a force), ``gamma >= 0`` the friction and ``K >= 0`` an optional velocity
alignment (Cucker-Smale type with a constant interaction)::

    A_i(v) = L x_i - M v_i,      L = sum_j w_j (v_j x_j^T - x_j v_j^T),   M = sum_j w_j,

each token relaxing to the velocity ``L x_i`` of the tokens' mean rigid rotation. On the circle
``L x_i = (sum_j w_j theta_j') tau_i``, so ``theta_i'' = K sum_j w_j (theta_j' - theta_i')``:
velocity differences decay exactly as ``exp(-K M t)`` whatever the positions.

Three integrators, each one field evaluation a step:

``"layers"``
    The momentum Transformer, a residual stream with heavy-ball momentum: a kick
    ``v <- v + h (F[mu](x) - gamma v + K A(v))``, then the exact geodesic drift
    (:func:`~vlasov_tf.geometry.tangent_bundle.geodesic_flow`: x along its great circle at speed
    ``|v|`` for time h, v parallel-transported). Symplectic Euler: order 1.
``"verlet"``
    The reference: geodesic Stormer-Verlet, the Strang splitting half kick, drift, half kick,
    where the kick is the exact flow of ``v' = F(x) - gamma v + K A(v)`` at frozen x (friction by
    its exponential factor; with alignment a small matrix exponential). Order 2, symmetric; for
    gamma = K = 0 the composition of two exact Hamiltonian flows, so symplectic, with the energy
    error bounded (no drift) and the angular momentum of a zonal force conserved to round-off.
``"rk4"``
    Classical Runge-Kutta in the embedding R^d x R^d (the force at the normalised stage tokens,
    the centripetal term ``-|v|^2 x``), then the projection back onto the bundle. Order 4.

**Energy.** With gamma = K = 0 and a conservative force, ``F_i = -(1/w_i) grad_{x_i} U``, the
energy ``E = sum_i w_i |v_i|^2 / 2 + U`` is conserved (:func:`potential_energy` knows U for the
models that have one). For the unnormalised interaction kernels ``U = -1/2 sum_ij w_i w_j W(<x_i, x_j>)``
(``W' = phi``; minus :meth:`Interaction.energy <vlasov_tf.models.interaction.Interaction.energy>`),
for USA attention with B = beta I ``U = -(1 / 2 beta) sum_ij w_i w_j exp(beta <x_i, x_j>)``, and for
attention with B = 0 (SA: the barycentre ``X = P_x m / M``, ``m = sum_j w_j x_j``)
``U = -|m|^2 / (2 M)``: on the circle with M = 1, ``U = -1/2 sum_ij w_i w_j cos(theta_i - theta_j)``,
the Hamiltonian mean-field (HMF) model (its usual ``1/2 sum (1 - cos)`` is this plus the constant
M/2). Softmax attention with beta > 0 is not conservative (its force is the gradient of
``(1/beta) log Phi(x_i)``, a potential that differs per token): its energy is reported as NaN.
With friction ``dE/dt = -2 gamma E_kin``. The angular momentum
(:func:`~vlasov_tf.geometry.tangent_bundle.angular_momentum`) of a zonal force is conserved to
round-off by "layers" and "verlet" (the kicks add ``h sum_i w_i x_i ^ F_i = 0``, the drift keeps
each ``x_i ^ v_i``), by "rk4" to its order (a quadratic invariant, and the projection); with
friction it decays as ``exp(-gamma t)`` ("verlet", exactly) or ``(1 - gamma h)^n`` ("layers").

**Heat bath.** A noisy model (:attr:`~vlasov_tf.models.base.MeanField.noise` = sigma > 0, the
generator ``sigma Laplace`` of the first-order flow) adds the Langevin kicks
``sqrt(2 gamma sigma) dW`` (tangent) to the velocities: a bath at temperature sigma (Einstein's
relation; the overdamped limit is then the first-order flow with the same noise). The stationary
states are the Gibbs measures ``exp(-(sum_i w_i |v_i|^2 / 2 + U) / sigma)`` of the tokens (for the
HMF model in the mean-field limit: the self-consistent magnetisation ``m = I_1(m / sigma) /
I_0(m / sigma)``, nonzero below ``sigma = 1/2``). "layers" adds ``sqrt(2 gamma sigma h) P_x xi`` to
each kick (Euler-Maruyama), "verlet" makes each half kick the exact Ornstein-Uhlenbeck step.
Needs friction, and no alignment.

**Overdamped limit.** In the time ``tau = t / gamma`` the positions ``y(tau) = x(gamma tau)`` solve
``gamma^{-2} y'' + y' = F(y)``: as gamma grows they follow the first-order flow
``y' = F(y)`` (:func:`~vlasov_tf.solvers.particles.solve_particles`), with error O(1/gamma) when
the initial velocities are O(1) (a displacement ``v_0 / gamma``), O(1/gamma^2) when they vanish
(an initial layer of length ``gamma^{-2}`` and the ``gamma^{-2} y''`` correction).

Under MPI (``comm``) the tokens are split in contiguous blocks as for
:func:`~vlasov_tf.solvers.particles.solve_particles`; the force sums every block
(:class:`~vlasov_tf.parallel.RingSums`), the alignment's ``L``, ``M`` and second moments are summed
over the ranks, the outputs gathered to rank 0: serial equals parallel to round-off.

Design notes: docs/guide/kinetic_particles.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm

from vlasov_tf.geometry.measures import SPHERE_ATOL, check_points, check_weights, normalize
from vlasov_tf.geometry.tangent_bundle import angular_momentum, check_velocities, geodesic_flow, tangent_part
from vlasov_tf.kernels import blas_single_thread
from vlasov_tf.logs import Progress
from vlasov_tf.models.attention import Params, interaction_energy, zonal_beta
from vlasov_tf.models.base import MeanField, Model, as_model, deterministic, run_times
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.models.sums import Sums
from vlasov_tf.parallel import Comm, RingSums, block_range, gather_rows, is_root
from vlasov_tf.solvers.brownian import brownian_increments
from vlasov_tf.solvers.particles import FIELD_METHODS, MAX_STEPS, step_pieces
from vlasov_tf.solvers.time_loop import TimeLoop, Tracker

__all__ = [
    "KINETIC_METHODS",
    "ORDERS",
    "KineticSolution",
    "potential_energy",
    "solve_kinetic_particles",
]

KINETIC_METHODS = ("layers", "verlet", "rk4")
#: The observed order of each method (docs/guide/kinetic_particles.md; tests/test_kinetic_particles.py).
ORDERS = {"layers": 1, "verlet": 2, "rk4": 4}


@dataclass(frozen=True)
class KineticSolution:
    """Second-order tokens at the output times.

    times : (n_out,); positions, velocities : (n_out, N, d); weights : (N,);
    kinetic : (n_out,) ``sum_i w_i |v_i|^2 / 2``; potential : (n_out,) U (:func:`potential_energy`;
    NaN where the force has none); momentum : (n_out, d (d - 1) / 2) the angular momentum's
    components (:func:`~vlasov_tf.geometry.tangent_bundle.angular_momentum`); steps : steps taken.
    Under MPI only rank 0 holds the snapshots (the other ranks get N = 0 and empty diagnostics).
    """

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    weights: np.ndarray
    kinetic: np.ndarray
    potential: np.ndarray
    momentum: np.ndarray
    method: str
    steps: int
    friction: float
    alignment: float

    @property
    def energy(self) -> np.ndarray:
        """(n_out,) ``kinetic + potential`` (NaN without a potential)."""
        return self.kinetic + self.potential

    @property
    def final(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, v)``, (N, d) each, at the last output time."""
        return self.positions[-1], self.velocities[-1]


def potential_energy(model: MeanField, points: np.ndarray, weights: np.ndarray) -> float | None:
    """U of the force ``F_i = -(1/w_i) grad_{x_i} U`` of ``model`` (one piece of it) for the tokens,
    or None where the force is not conservative (module docstring).

    Known: unnormalised :class:`~vlasov_tf.models.interaction.Interaction` models without a drift
    or rotation (``-energy``; a constant kernel in closed form), attention with one head
    Q = K = V = I, USA at any beta and SA at beta = 0, and any model with a method
    ``potential(points, weights)`` (a user's conservative force declares it so).
    """
    model = deterministic(model)  # a heat bath's noise does not change the force
    own = getattr(model, "potential", None)
    if own is None:
        own = getattr(getattr(model, "user", None), "potential", None)
    if callable(own):
        return float(own(points, weights))
    if isinstance(model, Interaction):
        rotates = model.omega is not None and bool(np.any(model.omega))
        if model.normalised or model.drift is not None or rotates:
            return None
        if model.kernel.name == "constant":
            m = weights @ points  # U = -(c/2) sum_ij w_i w_j (<x_i, x_j> - 1)
            c = model.kernel.minimum()
            return -0.5 * c * (float(m @ m) - float(weights.sum()) ** 2)
        energy = model.energy(points, weights)
        return None if energy is None else -energy
    if isinstance(model, Params):
        beta = zonal_beta(model)
        if beta is None:
            return None
        if beta == 0.0:  # the barycentre: SA divides by the mass, USA does not
            m = weights @ points
            mass = float(weights.sum()) if model.attention == "SA" else 1.0
            return -0.5 * float(m @ m) / mass
        return -interaction_energy(points, weights, beta) if model.attention == "USA" else None
    return None


@dataclass
class _Forces:
    """The force of one piece's field on this rank's tokens, and the sums over ranks."""

    field: MeanField
    w: np.ndarray
    sums: Sums
    friction: float
    alignment: float
    comm: Comm | None
    #: The bath temperature sigma (the model's noise; 0: none), the seed and this rank's tokens.
    noise: float = 0.0
    seed: int | tuple[int, ...] = 0
    block: tuple[int, int] = (0, 0)

    def normals(self, j: int, x: np.ndarray) -> np.ndarray:
        """(n, d) tangent standard normals ``P_x xi`` of kick ``j`` for this rank's tokens (keyed
        by the global token index: the same on any number of ranks and on resume)."""
        return tangent_part(x, brownian_increments(self.seed, j, *self.block, x.shape[1]))

    def total(self, a: np.ndarray) -> np.ndarray:
        """``a`` summed over the ranks (itself serially)."""
        return a if self.comm is None else np.asarray(self.comm.allreduce(a))

    def field_at(self, t: float, x: np.ndarray) -> np.ndarray:
        """(n, d) ``F[mu](t, x_i)`` at this rank's tokens (tangent; mu every rank's tokens)."""
        return self.field.evaluate(t, x, self.w, x, True, self.sums)

    def rotation(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(d, d) ``L = sum_j w_j (v_j x_j^T - x_j v_j^T)`` over every rank's tokens."""
        part = np.einsum("i,ia,ib->ab", self.w, v, x)
        return self.total(part - part.T)

    def mass(self) -> float:
        return float(self.total(np.array([self.w.sum()]))[0])

    def acceleration(self, F: np.ndarray, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``F - gamma v + K (L x_i - M v_i)`` (the alignment only for K > 0)."""
        a = F - self.friction * v
        if self.alignment > 0:
            a += self.alignment * (np.dot(x, self.rotation(x, v).T) - self.mass() * v)
        return a

    def kick(self, F: np.ndarray, x: np.ndarray, v: np.ndarray, h: float, j: int) -> np.ndarray:
        """The exact flow for time ``h`` of ``v' = F - gamma v + K (L(v) x_i - M v_i)`` at fixed x
        (with noise, ``K = 0``: the Ornstein-Uhlenbeck step, kick ``j``'s normals scaled by
        ``sqrt(sigma (1 - e^{-2 gamma h}))``).

        With ``c = gamma + K M``: ``v_i(h) = e^{-c h} v_i + phi F_i + K J x_i``, ``phi = (1 - e^{-ch}) / c``
        and ``J = int_0^h e^{-c (h - s)} L(s) ds``, where ``L' = L[F] - c L + K (L C + C L)``
        (``C = sum_j w_j x_j x_j^T``): one (2 d^2 + 1)-matrix exponential for L and J together.
        """
        c = self.friction + self.alignment * (self.mass() if self.alignment > 0 else 0.0)
        decay = np.exp(-c * h)
        phi = -np.expm1(-c * h) / c if c > 0 else h
        out = decay * v + phi * F
        if self.noise > 0:
            out += np.sqrt(-self.noise * np.expm1(-2.0 * c * h)) * self.normals(j, x)
        if self.alignment == 0:
            return out
        d = x.shape[1]
        n = d * d
        C = self.total(np.einsum("i,ia,ib->ab", self.w, x, x))
        eye = np.eye(d)
        # vec(L C + C L), row-major vec: (I kron C^T + C kron I) vec(L).
        A = self.alignment * (np.kron(eye, C.T) + np.kron(C, eye)) - c * np.eye(n)
        gen = np.zeros((2 * n + 1, 2 * n + 1))
        gen[:n, :n] = A
        gen[:n, -1] = self.rotation(x, F).ravel()
        gen[n : 2 * n, :n] = np.eye(n)
        gen[n : 2 * n, n : 2 * n] = -c * np.eye(n)
        z0 = np.r_[self.rotation(x, v).ravel(), np.zeros(n), 1.0]
        # Inside the solver's one-thread pin: a 19 x 19 exponential (d = 3) on threads took ~100x longer.
        J = (expm(h * gen) @ z0)[n : 2 * n].reshape(d, d)
        return out + self.alignment * np.dot(x, J.T)


def _layers_step(
    forces: _Forces, t: float, x: np.ndarray, v: np.ndarray, F: np.ndarray, h: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    v = v + h * forces.acceleration(F, x, v)
    if forces.noise > 0:  # Euler-Maruyama: sqrt(2 gamma sigma h) P_x xi
        v += np.sqrt(2.0 * forces.friction * forces.noise * h) * forces.normals(k, x)
    x, v = geodesic_flow(x, v, h)
    return x, v, None


def _verlet_step(
    forces: _Forces, t: float, x: np.ndarray, v: np.ndarray, F: np.ndarray, h: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    v = forces.kick(F, x, v, 0.5 * h, 2 * k)
    x, v = geodesic_flow(x, v, h)
    F_end = forces.field_at(t + h, x)
    return x, forces.kick(F_end, x, v, 0.5 * h, 2 * k + 1), F_end


def _rk4_step(
    forces: _Forces, t: float, x: np.ndarray, v: np.ndarray, F: np.ndarray, h: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    def rates(
        s: float, y: np.ndarray, u: np.ndarray, Fy: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        yn = normalize(y)
        Fy = forces.field_at(s, yn) if Fy is None else Fy
        # The centripetal -|u|^2 y keeps <y, u> = 0 on the bundle (any smooth extension off it
        # is as good: the projection changes the step by O(h^5)).
        return u, forces.acceleration(Fy, yn, u) - np.einsum("ij,ij->i", u, u)[:, None] * yn

    k1x, k1v = rates(t, x, v, F)
    k2x, k2v = rates(t + 0.5 * h, x + 0.5 * h * k1x, v + 0.5 * h * k1v)
    k3x, k3v = rates(t + 0.5 * h, x + 0.5 * h * k2x, v + 0.5 * h * k2v)
    k4x, k4v = rates(t + h, x + h * k3x, v + h * k3v)
    x = normalize(x + (h / 6.0) * (k1x + 2 * k2x + 2 * k3x + k4x))
    v = tangent_part(x, v + (h / 6.0) * (k1v + 2 * k2v + 2 * k3v + k4v))
    return x, v, None


_STEPPERS = {"layers": _layers_step, "verlet": _verlet_step, "rk4": _rk4_step}


def _check_rate(value: float, name: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"the {name} must be finite and >= 0; got {value}")
    return value


def solve_kinetic_particles(
    model: MeanField | Model,
    points: np.ndarray,
    velocities: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    T: float | None = None,
    method: str = "layers",
    steps: int,
    friction: float = 0.0,
    alignment: float = 0.0,
    t_eval: np.ndarray | None = None,
    t0: float = 0.0,
    comm: Comm | None = None,
    field_method: str = "auto",
    callback: Callable[[float, tuple[np.ndarray, np.ndarray]], None] | None = None,
    trackers: Sequence[Tracker] = (),
    progress: bool = False,
    noise_seed: int | tuple[int, ...] = 0,
) -> KineticSolution:
    """Move N weighted second-order tokens by the force of ``model`` up to ``T`` (module docstring).

    Parameters
    ----------
    model : the force field, any model :func:`~vlasov_tf.solvers.particles.solve_particles` takes
        (its field at x_i is the force ``F[mu](t, x_i)``, mu the tokens' spatial marginal).
    points : (N, d) initial tokens on S^{d-1}.
    velocities : (N, d) initial velocities, tangent at the tokens
        (:func:`~vlasov_tf.geometry.tangent_bundle.check_velocities`).
    weights : (N,) non-negative, positive total; None means 1/N each.
    T : final time (default: the model's).
    method : ``"layers"`` (order 1), ``"verlet"`` (order 2), ``"rk4"`` (order 4).
    steps : the number of steps on [0, T], shared among the pieces between switches and output
        times as in ``solve_particles`` (exactly ``steps`` when there are at least as many).
    friction : gamma >= 0.
    alignment : K >= 0, the velocity alignment's strength.
    t_eval : increasing output times in [0, T]; default ``[0, T]``.
    t0 : resume: ``points, velocities`` are the state at ``t0`` (a switch or output time); the
        steps after it are those of a run from 0.
    comm : an mpi4py communicator: every rank passes the same tokens; the result on rank 0.
    field_method : how the kernel sums are computed (:data:`~vlasov_tf.solvers.particles.FIELD_METHODS`).
    callback : ``callback(t, (x, v))`` at every output time on rank 0, as it is reached.
    trackers : told of every output (the state ``(x, v)``) on rank 0, after ``callback``.
    progress : show a progress bar.
    noise_seed : the seed of the heat bath's kicks for a noisy model (``model.noise = sigma > 0``,
        the bath temperature; module docstring): the same seed gives the same kicks on any number
        of ranks and on resume.
    """
    if method not in KINETIC_METHODS:
        raise ValueError(f"unknown kinetic method {method!r}; choose one of {KINETIC_METHODS}")
    if isinstance(steps, bool) or int(steps) != steps or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in [1, {MAX_STEPS:.0e}]; got {steps}")
    if field_method not in FIELD_METHODS:
        raise ValueError(f"unknown field method {field_method!r} for tokens; choose one of {FIELD_METHODS}")
    gamma = _check_rate(friction, "friction gamma")
    K = _check_rate(alignment, "alignment K")
    model = as_model(model, np.shape(points)[-1])
    sigma = model.noise
    if sigma > 0 and (gamma == 0 or K > 0 or method == "rk4"):
        raise ValueError(
            f"a noisy model (noise = {sigma:g}: a heat bath at temperature sigma, velocity noise "
            f"sqrt(2 gamma sigma)) needs friction > 0, no alignment and method 'layers' or 'verlet'; "
            f"got friction {gamma:g}, alignment {K:g}, method {method!r}"
        )
    T, switches = run_times(model, T)
    x = check_points(points, name="initial tokens", dim=model.d, sphere=True, atol=SPHERE_ATOL)
    v = check_velocities(velocities, x)
    if t0 == 0.0:  # not on resume: the solver's own state stays as it was, bit for bit
        x = normalize(x)
        v = tangent_part(x, v)
    w = check_weights(weights, len(x))
    loop = TimeLoop.start(T, switches, t_eval, t0, callback, trackers)
    lo, hi = (0, len(x)) if comm is None else block_range(len(x), comm.size, comm.rank)
    x, v, w_local = x[lo:hi], v[lo:hi], w[lo:hi]
    sums = Sums.by_method(field_method, split=None if comm is None else RingSums(comm))
    step = _STEPPERS[method]
    diagnostics: list[tuple[float, float, np.ndarray]] = []

    def emit(t: float, field: MeanField, xs: np.ndarray, vs: np.ndarray) -> None:
        if comm is not None:
            xs_all, vs_all = gather_rows(comm, xs), gather_rows(comm, vs)
            if comm.rank != 0 or xs_all is None or vs_all is None:
                return
            xs, vs = xs_all, vs_all
        u = potential_energy(field, xs, w)
        kin = 0.5 * float(w @ np.einsum("ij,ij->i", vs, vs))
        diagnostics.append((kin, np.nan if u is None else u, angular_momentum(xs, vs, w)))
        loop.store(t, (xs.copy(), vs.copy()))

    every = step_pieces(model, T, loop.stops, int(steps))
    # The index of each piece's first step in the whole run: the noise's streams are keyed by it.
    firsts = np.cumsum([0] + [n for _, _, n, _ in every])
    pieces = [(p, int(k)) for p, k in zip(every, firsts, strict=False) if p[1] > t0 + loop.tol]
    total = sum(p[2] for p, _ in pieces)
    with loop.tracking(), Progress(total, desc=f"kinetic {method} (N={len(w)})", unit="step",
                                   bar=progress and is_root(comm)) as bar:  # fmt: skip
        for (start, end, n, field), first in pieces:
            for t_out in loop.due(start):
                emit(t_out, field, x, v)
            h = (end - start) / n
            forces = _Forces(field, w_local, sums, gamma, K, comm, sigma, noise_seed, (lo, hi))
            F: np.ndarray | None = None  # "verlet" hands on the force at the step's end
            # BLAS on one thread for the piece, as solve_particles: the bits do not depend on the
            # thread count, and small products do not pay for threads.
            with blas_single_thread():
                for i in range(n):
                    t = start + i * h
                    if F is None:
                        F = forces.field_at(t, x)
                    x, v, F = step(forces, t, x, v, F, h, first + i)
                    loop.stepped(t + h, h)
                    bar.update()
        last = pieces[-1][0][3] if pieces else model.piece(T)
        for t_out in loop.rest():
            emit(t_out, last, x, v)
    return _solution(loop, diagnostics, w, method, total, gamma, K, model.d)


def _solution(
    loop: TimeLoop,
    diagnostics: list[tuple[float, float, np.ndarray]],
    w: np.ndarray,
    method: str,
    steps: int,
    gamma: float,
    K: float,
    d: int,
) -> KineticSolution:
    n_out, p = len(loop.times), d * (d - 1) // 2
    if loop.snapshots:
        xs = np.array([s[0] for s in loop.snapshots])
        vs = np.array([s[1] for s in loop.snapshots])
        kin = np.array([k for k, _, _ in diagnostics])
        pot = np.array([u for _, u, _ in diagnostics])
        mom = np.array([m for _, _, m in diagnostics])
    else:  # not rank 0
        xs = vs = np.empty((n_out, 0, d))
        kin = pot = np.empty(0)
        mom = np.empty((0, p))
    return KineticSolution(loop.times, xs, vs, w, kin, pot, mom, method, steps, gamma, K)
