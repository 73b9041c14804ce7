"""The kinetic Vlasov equation on the phase space S^1 x [-V, V]: a conservative semi-Lagrangian grid.

The density ``f(t, theta, v)`` of second-order (momentum) tokens on the circle solves

    d/dt f + v d/dtheta f + d/dv ((F[rho](t, theta) - gamma v) f) = sigma d^2/dv^2 f,
    rho(t, theta) = int f(t, theta, v) dv,

where ``F[rho]`` is the model's field (:meth:`~vlasov_tf.models.base.MeanField.evaluate`) of the
spatial marginal ``rho``, as a signed speed along the unit tangent ``(-sin theta, cos theta)``,
``gamma >= 0`` the friction and ``sigma = model.noise`` the velocity diffusion (tokens: ``dv = (F -
gamma v) dt + sqrt(2 sigma) dW``; the thermal state has temperature ``sigma / gamma``).

Unknowns: cell averages ``f[i, j]`` on ``Ntheta`` equal arcs (centres ``(i + 1/2) 2 pi / Ntheta``, the
cells of :func:`~vlasov_tf.geometry.meshes.circle_mesh`) times ``Nv`` equal velocity cells of
``[-V, V]``. Mass ``sum f dtheta dv``.

Scheme (docs/numerics.md, "Kinetic grid"): Strang splitting ``S(tau/2) A(tau) S(tau/2)`` with

- ``S``, free streaming: each velocity row shifts by ``v_j tau`` in theta, exactly in flux form: a
  new cell average is the integral of the old reconstruction over the cell moved back, i.e. the
  tail of one cell plus the head of the next (``streaming="remap"``: the mean-preserving quadratic
  of three cells, scaled towards its mean where it dips below 0, so that every integral is >= 0:
  positive, third order in space); or the exact phase shift of the row's discrete Fourier modes
  (``streaming="spectral"``: exact for trigonometric rows, not positive);
- ``A``, the force: ``F`` of the marginal after the first half stream (the v step does not change
  the marginal), then each column is remapped along the exact characteristics of ``dv/dt = F -
  gamma v`` (``v(tau) = F / gamma + (v0 - F / gamma) e^{-gamma tau}``): the new cell holds the old
  reconstruction's mass between the feet of its two faces (same reconstruction, zero outside
  ``[-V, V]``: what crosses ``|v| = V`` is the outflow, measured); with noise, then, the
  convolution with the Gaussian of the Ornstein-Uhlenbeck transition ``v(tau) = F / gamma + (v0 -
  F / gamma) e^{-gamma tau} + N(0, (sigma / gamma)(1 - e^{-2 gamma tau}))`` (exact for a frozen F;
  cell to cell by exact integrals: :func:`ou_kernel`, positive), so the thermal state's temperature
  is ``sigma / gamma`` whatever the step.

Second order in time, mass exact (to round-off, up to the measured
outflow), positive with ``remap``. Under MPI the theta cells are split in contiguous blocks with
the velocity whole (:func:`solve_kinetic_grid` with ``comm``): the v step is local per column, the
stream needs a halo of ``ceil(V tau / dtheta) + 2`` columns from the neighbours, and the force needs
the whole marginal (``Ntheta`` numbers: one allgather a step), each rank evaluating it at its own
centres (the force's cost falls as 1/P too). A column's arithmetic is the serial one and the
marginal is gathered, not summed across ranks: a parallel run equals the serial one up to the
rounding of the model's sums over another block of queries (BLAS), about 1e-16 relative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr

from vlasov_tf.models.base import MeanField, as_model, run_times
from vlasov_tf.models.sums import DENSE
from vlasov_tf.parallel import block_range

__all__ = [
    "KineticSolution",
    "PhaseGrid",
    "kinetic_force",
    "ou_kernel",
    "remap_columns",
    "smooth_columns",
    "solve_kinetic_grid",
    "stream_rows",
]

Streaming = Literal["remap", "spectral"]
Comm = Any


@dataclass(frozen=True)
class PhaseGrid:
    """``Ntheta`` equal arcs of S^1 times ``Nv`` equal cells of ``[-V, V]``."""

    n_theta: int
    n_v: int
    V: float

    def __post_init__(self) -> None:
        for name, n in (("theta cells", self.n_theta), ("velocity cells", self.n_v)):
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 4:
                raise ValueError(f"the phase-space grid needs an integer number of {name} >= 4; got {n!r}")
        if not (np.isfinite(self.V) and self.V > 0):
            raise ValueError(f"the velocity box V must be finite and > 0; got {self.V}")

    @property
    def dtheta(self) -> float:
        return 2 * np.pi / self.n_theta

    @property
    def dv(self) -> float:
        return 2 * self.V / self.n_v

    @property
    def theta(self) -> np.ndarray:
        """(Ntheta,) cell centres."""
        return (np.arange(self.n_theta) + 0.5) * self.dtheta

    @property
    def v(self) -> np.ndarray:
        """(Nv,) cell centres."""
        return -self.V + (np.arange(self.n_v) + 0.5) * self.dv

    @property
    def v_faces(self) -> np.ndarray:
        """(Nv + 1,) cell faces."""
        return -self.V + np.arange(self.n_v + 1) * self.dv

    @property
    def cell_area(self) -> float:
        return self.dtheta * self.dv

    def cell_averages(self, f: Callable[[np.ndarray, np.ndarray], np.ndarray], order: int = 4) -> np.ndarray:
        """(Ntheta, Nv) cell averages of ``f(theta, v)`` (broadcasting) by Gauss-Legendre with
        ``order`` points per direction."""
        x, w = np.polynomial.legendre.leggauss(order)
        th = self.theta[:, None] + 0.5 * self.dtheta * x[None, :]
        vv = self.v[:, None] + 0.5 * self.dv * x[None, :]
        shape = (self.n_theta, self.n_v, order, order)
        vals = np.broadcast_to(f(th[:, None, :, None], vv[None, :, None, :]), shape)
        return np.einsum("ijab,a,b->ij", vals, w, w) / 4


@dataclass
class KineticSolution:
    """What :func:`solve_kinetic_grid` returns (on rank 0; the other ranks get ``f = None``).

    ``f`` (n_out, Ntheta, Nv) cell averages at ``times``; ``outflow`` (n_out,) the mass that has left
    through ``|v| = V`` by then; ``steps`` the Strang steps taken. :meth:`moments` gives mass,
    momentum, kinetic energy and the first Fourier mode of the marginal.
    """

    grid: PhaseGrid
    times: np.ndarray
    f: np.ndarray
    outflow: np.ndarray
    steps: int
    friction: float
    noise: float
    streaming: str
    extras: dict[str, Any] = field(default_factory=dict)

    def marginal(self) -> np.ndarray:
        """(n_out, Ntheta) ``rho = int f dv`` (cell averages in theta)."""
        return self.f.sum(axis=2) * self.grid.dv

    def moments(self) -> dict[str, np.ndarray]:
        """Per output: ``mass``, ``momentum`` (``int v f``), ``kinetic`` (``int v^2 / 2 f``),
        ``magnetisation`` (complex ``int e^{i theta} rho``, cell averages of ``e^{i theta}``)."""
        g = self.grid
        a = g.cell_area
        rho = self.marginal()
        # The cell average of e^{i theta} is e^{i theta_c} sinc: the exact first mode of the
        # piecewise-constant marginal.
        modes = np.exp(1j * g.theta) * np.sinc(g.dtheta / (2 * np.pi))
        return {
            "mass": self.f.sum(axis=(1, 2)) * a,
            "momentum": (self.f * g.v).sum(axis=(1, 2)) * a,
            "kinetic": (self.f * (0.5 * g.v**2 + g.dv**2 / 24)).sum(axis=(1, 2)) * a,
            "magnetisation": rho @ modes * g.dtheta,
        }


# -- the reconstruction and its integrals -------------------------------------------------------------


def _parabolas(
    u: np.ndarray, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients ``(a0, a1, a2)`` of ``p(s) = a0 + a1 s + a2 s^2`` on ``s in [-1/2, 1/2]`` with mean
    ``u`` through the neighbours' means, scaled towards ``u`` where its minimum is below 0 (so that
    ``p >= 0`` when ``u >= 0``; Zhang and Shu's limiter, which keeps the order at smooth data)."""
    a1 = 0.5 * (right - left)
    a2 = 0.5 * (right - 2 * u + left)
    ends = u - a2 / 12 - 0.5 * np.abs(a1) + a2 / 4  # the lower of p(-1/2), p(1/2)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_min = np.where(a2 > 0, -a1 / (2 * a2), 0.0)
    inside = (a2 > 0) & (np.abs(s_min) < 0.5)
    vertex = np.where(inside, u - a2 / 12 + a1 * s_min + a2 * s_min**2, np.inf)
    low = np.minimum(ends, vertex)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(low < 0, u / (u - low), 1.0)
    scale = np.clip(np.nan_to_num(scale, nan=0.0, posinf=0.0), 0.0, 1.0)
    a1, a2 = scale * a1, scale * a2
    return u - a2 / 12, a1, a2


def _head(a0: np.ndarray, a1: np.ndarray, a2: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``int_{-1/2}^{q - 1/2} p(s) ds``: the share of the cell's mass (in cell units) left of the
    fraction ``q in [0, 1]``."""
    s = q - 0.5
    s2 = s * s  # products, not s**3: numpy's general power is 10 times slower
    return a0 * q + 0.5 * a1 * (s2 - 0.25) + a2 / 3 * (s2 * s + 0.125)


def stream_rows(ext: np.ndarray, shift: np.ndarray, halo: int) -> np.ndarray:
    """Free streaming of theta rows by ``shift`` cells each, in flux form.

    ``ext`` (n + 2 halo, Nv): cell averages along theta (axis 0) of ``n`` owned cells with ``halo``
    cells either side; ``shift`` (Nv,) the displacement ``v_j tau / dtheta`` of each velocity row, with
    ``|shift| <= halo - 2``. Returns (n, Nv): the new average of owned cell i is the old
    reconstruction's integral over cell i moved back by the shift, the tail of one cell plus the
    head of the next. Only ``remap``: the spectral shift needs whole rows (:func:`_spectral_stream`).
    """
    n = ext.shape[0] - 2 * halo
    whole = np.floor(shift).astype(np.int64)
    q = 1.0 - (shift - whole)  # the head of cell i - whole, the tail of cell i - whole - 1
    a0, a1, a2 = _parabolas(ext[1:-1], ext[:-2], ext[2:])  # of ext cells 1 .. len - 2
    # Every cell's head at its row's q, once; then each owned cell takes two of them.
    heads = _head(a0, a1, a2, q[None, :])
    m = ext.shape[1]
    cols = np.arange(m)
    owned = np.arange(n)[:, None]
    near = (owned + halo - whole[None, :] - 1) * m + cols  # flat index of cell i - whole (trimmed)
    far = near - m
    flat = heads.ravel()
    return (ext[1:-1].ravel()[far] - flat[far]) + flat[near]


def _spectral_stream(f: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Whole rows (Ntheta, Nv) shifted by ``shift`` cells: each discrete Fourier mode k of a row times
    ``e^{-2 pi i k shift / Ntheta}`` (the Nyquist mode with its real part), exact for rows that are
    trigonometric polynomials of degree < Ntheta / 2 (their cell averages are)."""
    n = f.shape[0]
    k = np.fft.rfftfreq(n, d=1.0 / n)
    phase = np.exp(-2j * np.pi * np.outer(k, shift) / n)
    if n % 2 == 0:
        phase[-1] = np.cos(np.pi * shift)
    return np.fft.irfft(np.fft.rfft(f, axis=0) * phase, n=n, axis=0)


def remap_columns(f: np.ndarray, feet: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Columns ``f`` (n, Nv) of cell averages on the velocity cells with ``faces`` (Nv + 1,) carried by
    a monotone map whose inverse sends face k of column i to ``feet[i, k]``: the new average of cell
    j is the old reconstruction's integral from ``feet[i, j]`` to ``feet[i, j + 1]`` over ``dv``, the
    reconstruction 0 outside ``[faces[0], faces[-1]]`` (what the feet leave out has flowed out)."""
    n, nv = f.shape
    dv = faces[1] - faces[0]
    pad = np.zeros((n, nv + 2))
    pad[:, 1:-1] = f
    a0, a1, a2 = _parabolas(f, pad[:, :-2], pad[:, 2:])
    cum = np.zeros((n, nv + 1))
    np.cumsum(f, axis=1, out=cum[:, 1:])  # in units of dv

    x = np.clip((feet - faces[0]) / dv, 0.0, float(nv))
    cell = np.minimum(np.floor(x).astype(np.int64), nv - 1)
    q = x - cell
    at = np.arange(n)[:, None] * nv + cell  # flat indices: cheaper than 2-d fancy indexing
    prim = cum.ravel()[np.arange(n)[:, None] * (nv + 1) + cell]
    prim = prim + _head(a0.ravel()[at], a1.ravel()[at], a2.ravel()[at], q)
    return np.diff(prim, axis=1)


def ou_kernel(s: float, dv: float) -> np.ndarray:
    """(2 w + 1,) weights ``A_m``, ``m = -w .. w``, summing to 1 with variance ``sum A_m (m dv)^2 = s^2``:
    the cell-to-cell transfer of a centred Gaussian displacement of standard deviation ``s``.

    Moving a cell's mass (spread evenly over the cell) by the Gaussian and averaging over the
    landing cells is the convolution with the hat of half-width ``dv`` (variance ``dv^2 / 6``)
    sampled at ``m dv``: ``A_m = (q / dv) (psi((m+1) r) - 2 psi(m r) + psi((m-1) r))``, ``r = dv /
    q``, ``psi(x) = x Phi(x) + phi(x)`` (the normal density's second antiderivative, convex: ``A_m >
    0``). It adds ``dv^2 / 6`` to the variance each step, a numerical heating, so the Gaussian
    has ``q^2 = s^2 - dv^2 / 6``; below ``s^2 = dv^2 / 6`` the three weights ``(a, 1 - 2 a, a)``, ``a
    = s^2 / (2 dv^2) <= 1/12``. Weights below 1e-17 of the total are dropped.
    """
    if s * s <= dv * dv / 6:
        a = s * s / (2 * dv * dv)
        return np.array([a, 1 - 2 * a, a])
    q = np.sqrt(s * s - dv * dv / 6)
    r = dv / q
    w = int(np.ceil(9.0 / r)) + 1
    m = np.arange(-w, w + 1, dtype=float)

    # psi(x) = psi(-|x|) + max(x, 0): the tails from psi(-|x|) (no cancellation far out), the kink's
    # second difference r at m = 0 only.
    def lower(x: np.ndarray) -> np.ndarray:
        y = -np.abs(x)
        return y * ndtr(y) + np.exp(-0.5 * y * y) / np.sqrt(2 * np.pi)

    weights = (q / dv) * (lower((m + 1) * r) - 2 * lower(m * r) + lower((m - 1) * r))
    weights[w] += 1.0
    keep = weights > 1e-17 * weights.sum()
    cut = int(np.argmax(keep))  # symmetric: the same count is dropped at both ends
    return weights[cut : len(weights) - cut]


def smooth_columns(f: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``sum_m A_m f[:, j - m]``: each column (n, Nv) convolved with the (2 w + 1,) ``kernel`` of
    :func:`ou_kernel`, 0 beyond the box (what the kernel carries out has flowed out); summed in a
    fixed order, so that a column's result does not depend on the other columns."""
    w = len(kernel) // 2
    nv = f.shape[1]
    out = kernel[w] * f
    for m in range(1, min(w, nv - 1) + 1):
        out[:, m:] += kernel[w + m] * f[:, :-m]
        out[:, :-m] += kernel[w - m] * f[:, m:]
    return out


# -- the force -----------------------------------------------------------------------------------------


def kinetic_force(
    model: MeanField, t: float, grid: PhaseGrid, rho: np.ndarray, cells: slice = slice(None)
) -> np.ndarray:
    """The model's field at the theta centres ``cells`` (default all) of the marginal ``rho``
    (Ntheta,) (cell averages: the measure of cell masses ``rho dtheta`` at the centres), as a signed
    speed along the unit tangent ``(-sin theta, cos theta)``. For attention at ``B = 0`` (SA) and
    for the constant interaction kernel ``K`` it is the Hamiltonian mean-field force ``K int
    sin(theta' - theta) rho(theta') dtheta'`` (:mod:`vlasov_tf.analysis.kinetic_theory`)."""
    th = grid.theta
    centres = np.stack([np.cos(th), np.sin(th)], axis=1)
    x = model.evaluate(t, centres, rho * grid.dtheta, centres[cells], True, DENSE)
    return -x[:, 0] * np.sin(th[cells]) + x[:, 1] * np.cos(th[cells])


# -- MPI: the theta blocks and their halos -------------------------------------------------------------


class _Blocks:
    """This rank's theta cells ``[lo, hi)`` and the halo exchange (serial: one block, wrap-around)."""

    def __init__(self, n_theta: int, comm: Comm | None) -> None:
        self.comm, self.n = comm, n_theta
        size = 1 if comm is None else comm.size
        rank = 0 if comm is None else comm.rank
        self.ranges = [block_range(n_theta, size, r) for r in range(size)]
        self.lo, self.hi = self.ranges[rank]
        if self.hi <= self.lo:
            raise ValueError(f"cannot split {n_theta} theta cells into {size} blocks: use fewer ranks")

    def extended(self, f: np.ndarray, halo: int) -> np.ndarray:
        """(hi - lo + 2 halo, Nv): the owned rows with ``halo`` rows either side, periodic in theta."""
        want = np.arange(self.lo - halo, self.hi + halo) % self.n
        if self.comm is None:
            return f[want]
        # Every rank knows every rank's halo, so each sends what the others need without requests.
        out: list[np.ndarray] = []
        for lo, hi in self.ranges:
            need = np.arange(lo - halo, hi + halo) % self.n
            mine = need[(need >= self.lo) & (need < self.hi)]
            out.append(f[mine - self.lo])
        got = self.comm.alltoall(out)
        ext = np.empty((len(want), f.shape[1]))
        for (lo, hi), rows in zip(self.ranges, got, strict=True):
            sel = (want >= lo) & (want < hi)
            ext[sel] = rows
        return ext

    def whole(self, x: np.ndarray) -> np.ndarray:
        """The owned entries of a theta vector gathered on every rank, in theta order."""
        return x if self.comm is None else np.concatenate(self.comm.allgather(x))

    def gather(self, f: np.ndarray) -> np.ndarray | None:
        if self.comm is None:
            return f
        parts = self.comm.gather(f, root=0)
        return None if parts is None else np.concatenate(parts)


# -- the solver ----------------------------------------------------------------------------------------


def solve_kinetic_grid(
    model: Any,
    f0: np.ndarray,
    grid: PhaseGrid,
    T: float | None = None,
    *,
    dt: float,
    friction: float = 0.0,
    t_eval: Sequence[float] | np.ndarray | None = None,
    streaming: Streaming = "remap",
    comm: Comm | None = None,
    callback: Callable[[float, np.ndarray, np.ndarray], None] | None = None,
    t0: float = 0.0,
    outflow0: np.ndarray | None = None,
) -> KineticSolution:
    """Solve the kinetic Vlasov equation (module docstring) from ``f0`` (Ntheta, Nv) cell averages.

    ``dt``: the largest Strang step (every interval between output and switch times is cut into
    equal steps no longer); ``friction`` gamma >= 0; the noise sigma is ``model.noise``; ``t_eval``
    output times in ``[0, T]`` (default ``0`` and ``T``). With ``comm`` (mpi4py) the theta cells are
    split across its ranks and rank 0 returns the gathered solution (the others ``f = None``);
    ``callback(t, f, lost)`` is called on rank 0 at each output with the whole grid and the
    (Ntheta,) sums over the steps of each column's loss through ``|v| = V`` (in units of f; times
    ``dtheta dv`` the mass). ``t0``: a resumed run's start (``f0`` is the state there, an output or
    switch time; ``outflow0`` the (Ntheta,) column losses by then): the outputs from it on are
    returned (and called back), and the steps and their bits are those of a run from 0.
    """
    model = as_model(model, d=2)
    if model.d != 2:
        raise ValueError(f"the kinetic grid is on the circle: the model must have d = 2; got d = {model.d}")
    f0 = np.asarray(f0, dtype=float)
    if f0.shape != (grid.n_theta, grid.n_v):
        raise ValueError(f"f0 must have shape {(grid.n_theta, grid.n_v)}; got {f0.shape}")
    if not (np.isfinite(f0).all() and (f0 >= 0).all()):
        raise ValueError("f0 must be finite and >= 0")
    if not (np.isfinite(friction) and friction >= 0):
        raise ValueError(f"the friction gamma must be finite and >= 0; got {friction}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"the step dt must be finite and > 0; got {dt}")
    if streaming not in ("remap", "spectral"):
        raise ValueError(f"streaming must be 'remap' or 'spectral'; got {streaming!r}")
    if streaming == "spectral" and comm is not None and comm.size > 1:
        raise ValueError("the spectral stream needs whole rows: use streaming = 'remap' under MPI")
    T, switches = run_times(model, T)
    outs = np.array([0.0, T]) if t_eval is None else np.unique(np.asarray(t_eval, dtype=float))
    if outs[0] < 0 or outs[-1] > T * (1 + 1e-12):
        raise ValueError(f"output times must lie in [0, {T}]")
    stops = np.unique(np.concatenate([outs, switches]))
    if not np.any(np.isclose(stops, t0, rtol=1e-12, atol=0.0)):
        raise ValueError(f"t0 = {t0} is not an output or switch time: a run resumes from one")
    stops = stops[stops >= t0 * (1 - 1e-12)]
    sigma = float(model.noise)

    blocks = _Blocks(grid.n_theta, comm)
    f = f0[blocks.lo : blocks.hi].copy()
    shift_per_time = grid.v / grid.dtheta
    faces = grid.v_faces
    root = comm is None or comm.rank == 0
    frames: list[np.ndarray] = []
    outflow_cols = np.zeros(blocks.hi - blocks.lo)
    if outflow0 is not None:
        outflow_cols += np.asarray(outflow0, dtype=float)[blocks.lo : blocks.hi]
    outflows: list[float] = []
    steps = 0

    def stream(g: np.ndarray, tau: float) -> np.ndarray:
        shift = shift_per_time * tau
        if streaming == "spectral":
            return _spectral_stream(g, shift)
        halo = int(np.ceil(np.abs(shift).max())) + 2
        return stream_rows(blocks.extended(g, halo), shift, halo)

    def record(t: float) -> None:
        whole = blocks.gather(f)
        lost = blocks.gather(outflow_cols[:, None])
        if root:
            assert whole is not None and lost is not None
            frames.append(whole.copy())
            outflows.append(float(lost.sum()) * grid.cell_area)
            if callback is not None:
                callback(t, whole, lost[:, 0])

    t = t0
    if np.any(np.isclose(outs, t0, rtol=1e-12, atol=0.0)):
        record(t0)
    for a, b in pairwise(stops):
        piece = model.piece(0.5 * (a + b))
        n = max(1, int(np.ceil((b - a) / dt * (1 - 1e-12))))
        tau = (b - a) / n
        growth = np.expm1(friction * tau) / (friction * tau) if friction > 0 else 1.0
        # The OU transition over tau: v(tau) = mean + N(0, s^2), s^2 = 2 sigma tau phi(-2 gamma tau).
        relax = -np.expm1(-2 * friction * tau) / (2 * friction * tau) if friction > 0 else 1.0
        var = 2 * sigma * tau * relax
        kernel = ou_kernel(np.sqrt(var), grid.dv) if sigma > 0 else None
        for s in range(n):
            t = a + s * tau
            f = stream(f, 0.5 * tau)
            rho = blocks.whole(f.sum(axis=1) * grid.dv)
            force = kinetic_force(piece, t + 0.5 * tau, grid, rho, slice(blocks.lo, blocks.hi))
            # Feet of the faces: v0 = w + (gamma w - F) tau phi(gamma tau), phi(x) = expm1(x) / x.
            feet = faces[None, :] + (friction * faces[None, :] - force[:, None]) * (tau * growth)
            before = f.sum(axis=1)
            f = remap_columns(f, feet, faces)
            if kernel is not None:
                f = smooth_columns(f, kernel)
            outflow_cols += before - f.sum(axis=1)
            f = stream(f, 0.5 * tau)
            steps += 1
        t = b
        if np.any(np.isclose(outs, b, rtol=1e-12, atol=0.0)):
            record(b)
    return KineticSolution(
        grid=grid,
        times=outs[outs >= t0 * (1 - 1e-12)],
        f=np.array(frames) if root else None,  # type: ignore[arg-type]  # None off rank 0, documented
        outflow=np.array(outflows),
        steps=steps,
        friction=float(friction),
        noise=sigma,
        streaming=streaming,
    )
