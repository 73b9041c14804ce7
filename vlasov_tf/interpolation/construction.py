"""Measure-to-measure interpolation: the explicit Transformer of arXiv 2411.04551, Theorem 1.1.

Given N probability measures ``mu^i`` on S^{d-1} (d >= 3) whose supports all
miss a common point ``w0`` and N distinct targets ``x^i``, build ONE
piecewise-constant ``theta(t) = (V, B, W, U, b)`` (a :class:`~vlasov_tf.model.Schedule`
of ``Params.interpolation`` blocks, field ``P_x(V A_B[mu](x) + W (U x + b)_+)``)
such that the flow of every input ends within ``eps`` of its target:
``W2(mu^i(T), delta_{x^i}) <= eps``. The same theta moves every input; the
attention term is the only thing that tells the inputs apart.

The construction is built by simulating, as the proof does: each stage picks
its parameters from the current states of the N measures (tokens), then the
measures are advanced through that stage with ``solve_particles(method="rk4")``
(each measure on its own: the inputs never interact), and the next stage
sees where they are. Stages, each with the lemma it must achieve:

0. Orthant transport (paper section 3, step 0). Perceptron only: ``V = 0``,
   ``U = 0``, ``b = 1`` so ``(U x + b)_+ = 1`` and ``W 1 = a`` is a constant
   vector; ``d<x, a>/dt = 1 - <x, a>^2``, i.e. ``<x, a> = tanh(t + artanh <x0, a>)``,
   so the block lengths are explicit. First ``a = -w0`` (everything into a
   cap around ``-w0``; possible because the supports miss ``w0``), then ``a``
   the centre of the positive orthant ``Q`` (with a midpoint in between when
   ``-w0`` is nearly opposite to it). Achieves: every support in a cap inside
   ``Q``: all coordinates > 0.
1. Disentanglement (Prop. 3.1, in the form of Lemma 3.3). ``B = 0`` so the
   attention is the barycentre ``m_i = E_{mu_i}[x]``, and ``V = P_c^perp =
   I - c c^T``, ``W = 0``: measure i is carried by the constant field
   ``P_x(P_c^perp m_i)``, towards the point ``u_i = P_c^perp m_i / |.|`` of the
   great sphere orthogonal to ``c``. Different inputs go to different points
   ``u_i`` (pairwise non-colinear barycentres), so they come apart. Achieves:
   supports pairwise disjoint, with a gap of at least ``0.4 min_{i != k}
   angle(u_i, u_k)`` (capped at 0.5 rad), the margin :attr:`Interpolation.diagnostics`
   reports as ``stage1_gap_target``.
2. Clustering (Prop. 2.1, no switch). ``V = I``, ``W = 0``, ``B = beta I`` with
   ``beta = max(1, log(1/eps))``: each (now small, disjoint) measure collapses
   towards its own point. Stopped at the first time every measure has angular
   radius (largest distance of a token to the measure's barycentre direction)
   at most ``cluster_tol`` (default ``eps / 8``): measured, not predicted.
3. Atom matching (Prop. 4.1). ``V = 0``; one atom at a time is moved by gated
   perceptron fields ``kappa (<x, q> - cos R)_+ P_x q`` (``U = q^T``,
   ``b = -cos R``, ``W = kappa q``: active exactly inside the cap ``B(q, R)``,
   the sign the paper's Lemma B.2 gets backwards, see ``docs/interpolation.md``),
   along a chain of waypoints ``q`` ending at the target. Every other atom
   lies outside every cap used, so it does not move at all. Achieves: each
   atom within ``match_tol`` (default ``eps / 4``, in W2) of its target.

Deviations from the paper (all keep the stage structure and the lemma each
stage proves; numbers are in the module's report):

- Stage 1 uses one block instead of the induction of Prop. 3.1 (O(dN)
  switches, horizon split in quarters, reversals). Lemma 3.3's ``V =
  sum_k a_k a_k^T`` (projector on the complement of one measure's barycentre)
  keeps that measure exactly still and sends all the others to its equator;
  we project instead on the complement of a direction ``c`` chosen in the
  spherical hull of the barycentres that maximises ``min angle(u_i, u_k) x
  min |P_c^perp m_i|``. Reason: the anchored measure sits at an unstable
  equilibrium (``|P^perp m|`` grows like ``e^t``), so a schedule built on one
  sample of it would throw a second sample (or the grid density) anywhere;
  with ``c`` off every barycentre each measure moves with a direction that is
  only ``O(perturbation / |P_c^perp m_i|)`` sensitive. The contraction and
  time reversal of Lemma 3.3 are not needed once all measures leave the
  common region at once.
- Lemma 3.4 (equal or colinear barycentres) is replaced by one
  symmetry-breaking block ``V = a c^T`` (B = 0): all measures drift towards
  the tangent direction ``a`` at speeds ``<c, m_i>``, and a measure's
  barycentre moves by ``a - E[<x, a> x]``, which depends on its second
  moments; equal barycentres with different second moments and colinear ones
  with different norms come apart, in principle; it is a best effort (run
  until the barycentres are ``2 bary_tol`` apart, at most 1.5 time units)
  and on small, nearly symmetric inputs it does not help (tested: two
  coaxial elliptic rings). If the barycentres are still within ``bary_tol``
  (and always for identical inputs, which no Transformer can send to
  different targets) it is a ``ValueError`` naming the two inputs. The full
  Lemma 3.4 (a gate moving a small ball of mass of one measure) is not
  implemented. Exactly colinear inputs are usually made generic by stage 0
  already (the Mobius-like flow bends their barycentres apart).
- Stage 3 uses caps ``B(q, R)`` centred at the next waypoint ``q`` (with a
  waypoint planner on a point set of the sphere, fewest blocks first) rather
  than the paper's slab ``|<x, gamma>| <= eps`` plus the gathering of the
  inactive atoms into a cap and its undoing (6 switches per atom): with caps
  that avoid every other atom no gathering is needed, and each block
  contracts towards its waypoint, so errors in where an atom starts are
  absorbed rather than carried along. When an unplaced atom sits on another
  one's target, it is first parked at a free point.
- The clustering stops at a measured finite time (the paper's limit
  statement is asymptotic).

Times and norms. Blocks are built in natural units (field speeds O(1)); then
time is rescaled block by block to fit ``T``: block k, of natural length
``tau_k`` and scalable size ``s_k = max(|V_k|, |W_k|)``, gets the length
``T A_k / sum A`` with action ``A_k = tau_k s_k``, and its ``V, W`` are
multiplied by ``tau_k / tau'_k`` (the flow is the same, reparametrised). This
equalises ``max(|V|, |W|) = sum_k A_k / T`` over all blocks (the best a
uniform bound can do); ``B, U, b`` do not scale with time. So the norm is
``max(A / T, beta, 1)`` against the paper's ``O(dN / T + log(1/eps))``.

Shapes: measures are ``(points (n_i, d), weights (n_i,))``; targets ``(N, d)``.
"""

from __future__ import annotations

import math
import os
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from scipy.sparse.csgraph import dijkstra

from vlasov_tf.analysis.wasserstein import geodesic_cost, w2_to_dirac
from vlasov_tf.geometry.measures import check_points, check_weights, normalize
from vlasov_tf.model import Params, Schedule
from vlasov_tf.runs.toml_reader import TomlReader
from vlasov_tf.solvers.particles import solve_particles

__all__ = [
    "STAGES",
    "CapInput",
    "Interpolation",
    "InterpolationCase",
    "MeasureRecord",
    "build_interpolation",
    "depth_study",
    "find_missed_point",
    "grid_w2",
    "load_interpolation_case",
    "parse_interpolation_case",
    "particle_w2",
    "run_interpolation_case",
]

STAGES = ("orthant", "disentangle", "cluster", "match")


# -- small geometry helpers ---------------------------------------------------------------------------


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Arc lengths between the unit rows of ``a`` and ``b`` ((d,) or (n, d) each), flattened;
    a 0-d array for two single points."""
    out = geodesic_cost(np.atleast_2d(a), np.atleast_2d(b))
    return out[0, 0] if np.ndim(a) == np.ndim(b) == 1 else out.ravel()


def _barycentre(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ x) / w.sum()


def _centre(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unit direction of the barycentre."""
    m = _barycentre(x, w)
    return m / np.linalg.norm(m)


def _radius(x: np.ndarray, w: np.ndarray) -> float:
    """Largest arc length from a token of positive weight to the barycentre direction."""
    return float(_angle(x[w > 0], _centre(x, w)).max())


def _gap(xs: Sequence[np.ndarray], ws: Sequence[np.ndarray]) -> tuple[float, tuple[int, int]]:
    """Smallest arc length between tokens of different measures, and the pair that attains it."""
    best, pair = math.inf, (-1, -1)
    for i in range(len(xs)):
        for k in range(i + 1, len(xs)):
            g = float(geodesic_cost(xs[i][ws[i] > 0], xs[k][ws[k] > 0]).min())
            if g < best:
                best, pair = g, (i, k)
    return best, pair


def _sphere_nodes(d: int, n: int, seed: int = 0) -> np.ndarray:
    """(n, d) well-spread points: a Fibonacci lattice on S^2, seeded uniform points beyond."""
    if d == 3:
        k = np.arange(n) + 0.5
        z = 1.0 - 2.0 * k / n
        phi = np.pi * (1.0 + 5.0**0.5) * k
        r = np.sqrt(1.0 - z * z)
        return np.c_[r * np.cos(phi), r * np.sin(phi), z]
    return normalize(np.random.default_rng(seed).standard_normal((n, d)))


def _orthogonal_unit(v: np.ndarray) -> np.ndarray:
    """A unit vector orthogonal to ``v`` (the first basis vector least aligned with it, made orthogonal)."""
    e = np.zeros_like(v)
    e[int(np.argmin(np.abs(v)))] = 1.0
    e = e - (e @ v) * v / (v @ v)
    return e / np.linalg.norm(e)


def find_missed_point(
    points: np.ndarray, *, min_gap: float = 0.25, n_candidates: int = 4000
) -> tuple[np.ndarray, float]:
    """A point ``w0`` far from every support point, and its distance to them (the empty cap's radius).

    ``points`` (n, d): the union of the supports. Candidates are well-spread
    points of the sphere and the antipode of the mean; the one farthest from
    all points wins. Raises ``ValueError`` when the largest empty cap found has
    radius below ``min_gap`` (rad): the supports (as far as a point cloud can
    say) cover the sphere and the theorem's hypothesis fails.
    """
    x = check_points(points, name="support points")
    d = x.shape[1]
    cand = _sphere_nodes(d, n_candidates, seed=1)
    mean = x.mean(axis=0)
    if np.linalg.norm(mean) > 1e-12:
        cand = np.r_[cand, -mean[None] / np.linalg.norm(mean)]
    nearest = np.empty(len(cand))
    for s in range(0, len(cand), 512):
        nearest[s : s + 512] = (cand[s : s + 512] @ x.T).max(axis=1)
    j = int(np.argmin(nearest))
    gap = float(np.arccos(np.clip(nearest[j], -1.0, 1.0)))
    if gap < min_gap:
        raise ValueError(
            f"the supports cover the sphere: no common missed point (largest empty cap found has radius "
            f"{gap:.3g} rad < min_gap = {min_gap:g}); Theorem 1.1 needs a point w0 outside every support"
        )
    return cand[j], gap


# -- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasureRecord:
    """The construction's record of one input measure.

    times : (K,) snapshot times (in the rescaled schedule's time, [0, T]);
    barycentres : (K, d) unit barycentre directions at those times;
    tracks : (K, m, d) a few tracked tokens; weights : (n,);
    stage_points : (len(STAGES) + 1, n, d) all tokens at the stage boundaries
    (index 0: input, index s + 1: after stage s).
    """

    times: np.ndarray
    barycentres: np.ndarray
    tracks: np.ndarray
    weights: np.ndarray
    stage_points: np.ndarray

    @property
    def final(self) -> np.ndarray:
        return self.stage_points[-1]


@dataclass(frozen=True)
class Interpolation:
    """The constructed Transformer and what the construction saw.

    schedule : the piecewise-constant theta on [0, T] (rescaled);
    targets : (N, d); w0 : (d,) the common missed point used; T, eps;
    block_stages : (n_blocks,) stage index of each block;
    stage_times : (len(STAGES) + 1,) stage boundaries in [0, T];
    action : (n_blocks,) ``A_k = tau_k max(|V_k|, |W_k|)`` in natural units;
    records : one :class:`MeasureRecord` per input;
    rk4_steps : RK4 steps the construction took (all measures step together);
    diagnostics : what each stage achieved (see the module docstring).
    """

    schedule: Schedule
    targets: np.ndarray
    w0: np.ndarray
    T: float
    eps: float
    block_stages: np.ndarray
    stage_times: np.ndarray
    action: np.ndarray
    records: tuple[MeasureRecord, ...]
    rk4_steps: int
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def d(self) -> int:
        return self.schedule.d

    @property
    def N(self) -> int:
        return len(self.targets)

    @property
    def switches(self) -> int:
        """Number of parameter switches: blocks - 1."""
        return len(self.schedule.blocks) - 1

    @property
    def stage_blocks(self) -> tuple[int, ...]:
        """Blocks per stage."""
        return tuple(int((self.block_stages == s).sum()) for s in range(len(STAGES)))

    @property
    def norms(self) -> dict[str, float]:
        """Max over blocks of the spectral norms of V, B, W, U and the Euclidean norm of b; 'max' of all."""
        out = {"V": 0.0, "B": 0.0, "W": 0.0, "U": 0.0, "b": 0.0}
        for _, p in self.schedule.blocks:
            for h in p.heads:
                out["V"] = max(out["V"], float(np.linalg.norm(h.V, 2)))
                out["B"] = max(out["B"], float(np.linalg.norm(h.B, 2)))
            if p.perceptron is not None:
                out["W"] = max(out["W"], float(np.linalg.norm(p.perceptron.W, 2)))
                out["U"] = max(out["U"], float(np.linalg.norm(p.perceptron.U, 2)))
                out["b"] = max(out["b"], float(np.linalg.norm(p.perceptron.b)))
        out["max"] = max(out.values())
        return out

    def bound_constants(self) -> dict[str, float]:
        """Constants implied by the paper's bounds: switches / (d N) and norm / (d N / T + log(1/eps))."""
        dn = self.d * self.N
        return {
            "switches_over_dN": self.switches / dn,
            "norm_bound": dn / self.T + math.log(1.0 / self.eps),
            "norm_over_bound": self.norms["max"] / (dn / self.T + math.log(1.0 / self.eps)),
            "action_over_dN": float(self.action.sum()) / dn,
        }

    def w2(self) -> np.ndarray:
        """(N,) W2 of each recorded final measure to its target."""
        return np.array(
            [w2_to_dirac(r.final, r.weights, y) for r, y in zip(self.records, self.targets, strict=True)]
        )

    def summary(self) -> str:
        """Switch count, norms against the bounds, stage blocks and the W2 to each target."""
        nm, bc = self.norms, self.bound_constants()
        lines = [
            f"d = {self.d}, N = {self.N}, T = {self.T:g}, eps = {self.eps:g}",
            f"switches: {self.switches} (blocks per stage "
            + ", ".join(f"{s} {n}" for s, n in zip(STAGES, self.stage_blocks, strict=True))
            + f"); O(dN) bound: dN = {self.d * self.N}, implied constant {bc['switches_over_dN']:.2f}",
            "norms (max over blocks): " + ", ".join(f"|{k}| {v:.3g}" for k, v in nm.items() if k != "max"),
            f"||theta|| = {nm['max']:.3g}; bound dN/T + log(1/eps) = {bc['norm_bound']:.3g}, "
            f"implied constant {bc['norm_over_bound']:.2f}; action sum A = {self.action.sum():.3g} "
            f"(A / dN = {bc['action_over_dN']:.2f}), A / T = {self.action.sum() / self.T:.3g}",
            "stage ends (t): " + ", ".join(f"{t:.3g}" for t in self.stage_times[1:]),
            "W2 to targets (construction's tokens): " + ", ".join(f"{v:.3g}" for v in self.w2()),
        ]
        return "\n".join(lines)


# -- the construction ---------------------------------------------------------------------------------


@dataclass
class _Block:
    tau: float  # natural duration
    stage: int
    B: np.ndarray | None = None
    V: np.ndarray | None = None
    W: np.ndarray | None = None
    U: np.ndarray | None = None
    b: np.ndarray | None = None

    @property
    def size(self) -> float:
        """The scalable size max(|V|, |W|) (spectral norms)."""
        return max(float(np.linalg.norm(m, 2)) for m in (self.V, self.W) if m is not None)

    def params(self, d: int, scale: float = 1.0) -> Params:
        return Params.interpolation(
            d,
            B=self.B,
            V=None if self.V is None else scale * self.V,
            W=None if self.W is None else scale * self.W,
            U=self.U,
            b=self.b,
        )


class _Builder:
    """State of the construction: the N measures' tokens, the blocks so far, the snapshots."""

    def __init__(self, xs: list[np.ndarray], ws: list[np.ndarray], h0: float, n_tracks: int) -> None:
        self.xs, self.ws = xs, ws
        self.d = xs[0].shape[1]
        self.h0 = h0
        self.blocks: list[_Block] = []
        self.t = 0.0  # natural time
        self.steps = 0
        # Snapshots: (block index, natural offset inside the block) so times can be rescaled later.
        self.snap_at: list[tuple[int, float]] = [(0, 0.0)]
        self.snap_bary: list[list[np.ndarray]] = [[_centre(x, w) for x, w in zip(xs, ws, strict=True)]]
        self.track_idx = [np.linspace(0, len(x) - 1, min(n_tracks, len(x))).astype(int) for x in xs]
        self.snap_tracks: list[list[np.ndarray]] = [[x[j] for x, j in zip(xs, self.track_idx, strict=True)]]
        self.stage_points: list[list[np.ndarray]] = [[x.copy() for x in xs]]

    def _advance(self, blk: _Block, dt: float) -> None:
        """Move every measure (each on its own) by ``dt`` natural time under ``blk``'s parameters."""
        n = max(1, math.ceil(dt * blk.size / self.h0))
        sched = Schedule.constant(blk.params(self.d), dt)
        for i in range(len(self.xs)):
            self.xs[i] = solve_particles(sched, self.xs[i], self.ws[i], method="rk4", steps=n).final
        self.steps += n

    def _snapshot(self, offset: float) -> None:
        self.snap_at.append((len(self.blocks), offset))
        self.snap_bary.append([_centre(x, w) for x, w in zip(self.xs, self.ws, strict=True)])
        self.snap_tracks.append([x[j] for x, j in zip(self.xs, self.track_idx, strict=True)])

    def run(self, blk: _Block, chunk: float | None = None) -> None:
        """A block of fixed natural length ``blk.tau``, with snapshots every ``chunk``."""
        n_chunks = max(1, math.ceil(blk.tau / chunk)) if chunk else 1
        for k in range(n_chunks):
            self._advance(blk, blk.tau / n_chunks)
            self._snapshot((k + 1) * blk.tau / n_chunks)
        self.blocks.append(blk)
        self.t += blk.tau

    def run_until(self, blk: _Block, done, chunk: float, t_max: float, what: str) -> float:
        """A block run in chunks until ``done()`` holds; its length is what that took. Returns it."""
        tau = 0.0
        while not done():
            if tau >= t_max:
                raise RuntimeError(f"{what}: not reached after natural time {tau:.3g}")
            self._advance(blk, chunk)
            tau += chunk
            self._snapshot(tau)
        blk.tau = max(tau, 1e-300)
        if tau == 0.0:
            return 0.0
        self.blocks.append(blk)
        self.t += tau
        return tau

    def end_stage(self) -> None:
        self.stage_points.append([x.copy() for x in self.xs])


def _check_inputs(
    measures: Sequence[tuple[np.ndarray, np.ndarray | None]], targets: np.ndarray, T: float, eps: float
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    if len(measures) == 0:
        raise ValueError("at least one input measure is needed")
    xs, ws = [], []
    for i, m in enumerate(measures):
        pts, wts = m
        x = check_points(pts, name=f"measure {i} points")
        if x.shape[1] < 3:
            raise ValueError(
                f"Theorem 1.1 needs d >= 3 (tokens on S^2 or higher); measure {i} has d = {x.shape[1]}"
            )
        if xs and x.shape[1] != xs[0].shape[1]:
            raise ValueError(f"measure {i} has d = {x.shape[1]}, measure 0 has d = {xs[0].shape[1]}")
        w = check_weights(wts, len(x), name=f"measure {i} weights")
        xs.append(normalize(x))
        ws.append(w / w.sum())
    d = xs[0].shape[1]
    y = np.asarray(targets, dtype=float)
    if y.ndim != 2 or y.shape[1] != d:
        raise ValueError(f"targets must have shape (N, d) = ({len(xs)}, {d}); got {y.shape}")
    if len(y) != len(xs):
        raise ValueError(f"{len(xs)} input measures but {len(y)} targets: one target per measure is needed")
    y = check_points(y, name="targets")
    if len(y) > 1:
        dist = geodesic_cost(y, y) + np.diag(np.full(len(y), np.inf))
        i, k = np.unravel_index(int(np.argmin(dist)), dist.shape)
        if dist[i, k] < 1e-8:
            raise ValueError(f"targets must be distinct: targets {min(i, k)} and {max(i, k)} coincide")
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"the time horizon T must be finite and > 0; got {T}")
    if not (np.isfinite(eps) and 0 < eps < 1):
        raise ValueError(f"eps must lie in (0, 1); got {eps}")
    return xs, ws, normalize(y)


def _stage0_orthant(bld: _Builder, w0: np.ndarray, safety: float) -> float:
    """Constant fields P_x a: out of the way of -alpha (towards -w0) if needed, then into Q around alpha.

    The flow towards alpha sends everything but -alpha into any cap around alpha;
    a preliminary flow towards -w0 (through a midpoint when -w0 is nearly
    opposite to alpha) is run only while a support comes within 0.3 rad of
    -alpha. Compressing no more than needed keeps the barycentres apart, which
    is what stage 1 feeds on.
    """
    d = bld.d
    alpha = np.ones(d) / math.sqrt(d)

    def worst(a: np.ndarray) -> float:
        return max(float(_angle(x[w > 0], a).max()) for x, w in zip(bld.xs, bld.ws, strict=True))

    chain = []
    if worst(alpha) > math.pi - 0.3:
        chain.append(-w0)
        if _angle(-w0, alpha) > 2 * math.pi / 3:
            mid = alpha - w0
            mid = _orthogonal_unit(alpha) if np.linalg.norm(mid) < 1e-9 else mid / np.linalg.norm(mid)
            chain.append(mid)
    chain.append(alpha)
    # A cap of this radius around alpha lies inside Q (radius arcsin(1/sqrt d)) with 15% to spare.
    r_final = 0.85 * math.asin(1.0 / math.sqrt(d))
    for k, a in enumerate(chain):
        blk = _Block(0.0, 0, W=a[:, None], U=np.zeros((1, d)), b=np.ones(1))
        if k < len(chain) - 1:
            nxt = chain[k + 1]
            bld.run_until(
                blk,
                lambda nxt=nxt: worst(nxt) <= math.pi - 0.3,
                chunk=0.1,
                t_max=40.0,
                what="orthant transport (clearing the antipode of the next target)",
            )
            continue
        # <x, a> = tanh(t + artanh <x0, a>): aim as if the worst token were `safety` farther out.
        c0 = math.cos(min(worst(a) + safety, math.pi - 1e-6))
        blk.tau = max(math.atanh(math.cos(r_final)) - math.atanh(c0), 0.05)
        bld.run(blk, chunk=0.25)
    return min(float(x[w > 0].min()) for x, w in zip(bld.xs, bld.ws, strict=True))


def _directions(c: np.ndarray, bary: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Unit u_i = P_c^perp m_i / |.|, the smallest angle between two of them, the smallest |P_c^perp m_i|."""
    p = bary - np.outer(bary @ c, c)
    size = np.linalg.norm(p, axis=1)
    u = p / np.maximum(size, 1e-300)[:, None]
    if len(u) < 2:
        return u, math.pi, float(size.min())
    ang = geodesic_cost(u, u) + np.diag(np.full(len(u), np.inf))
    return u, float(ang.min()), float(size.min())


def _choose_direction(bary: np.ndarray, rng: np.random.Generator, n_cand: int = 600) -> tuple:
    """c near the spherical hull of the barycentres maximising min(min angle, pi/4) x min size."""
    dirs = normalize(bary)
    spread = float(geodesic_cost(dirs, dirs).max())
    lam = rng.dirichlet(np.ones(len(dirs)), size=n_cand)
    cand = lam @ dirs + 0.3 * max(spread, 1e-3) * rng.standard_normal((n_cand, dirs.shape[1]))
    cand = normalize(np.r_[dirs.mean(axis=0, keepdims=True), cand])
    best, best_score = None, -1.0
    for c in cand:
        u, gamma, size = _directions(c, bary)
        # Past 45 degrees between escape directions, only the sizes |P_c^perp m_i| matter: the
        # direction of measure i is as sensitive to perturbations as 1 / |P_c^perp m_i|.
        score = min(gamma, math.pi / 4) * size
        if score > best_score:
            best, best_score = (c, u, gamma, size), score
    return best


def _stage1_disentangle(bld: _Builder, rng: np.random.Generator, bary_tol: float) -> dict[str, Any]:
    d, N = bld.d, len(bld.xs)
    diag: dict[str, Any] = {"stage1_symmetry_breaking": False}
    if N == 1:
        diag.update(stage1_gap=math.inf, stage1_gap_target=0.0)
        return diag

    def bary() -> np.ndarray:
        return np.array([_barycentre(x, w) for x, w in zip(bld.xs, bld.ws, strict=True)])

    def worst_pair() -> tuple[float, int, int]:
        dirs = normalize(bary())
        ang = geodesic_cost(dirs, dirs) + np.diag(np.full(N, np.inf))
        i, k = np.unravel_index(int(np.argmin(ang)), ang.shape)
        return float(ang[i, k]), int(i), int(k)

    ang, i, k = worst_pair()
    if ang < bary_tol:
        # Lemma 3.4's situation (equal or colinear barycentres): one drift block V = a c^T, a the
        # tangent direction along which the two measures' second moments differ most.
        diag["stage1_symmetry_breaking"] = True
        c = normalize(bary().mean(axis=0, keepdims=True))[0]
        proj = np.eye(d) - np.outer(c, c)

        def second(x: np.ndarray, w: np.ndarray) -> np.ndarray:
            return (x * w[:, None]).T @ x

        diff = proj @ (second(bld.xs[i], bld.ws[i]) - second(bld.xs[k], bld.ws[k])) @ proj
        vals, vecs = np.linalg.eigh(diff)
        a = vecs[:, int(np.argmax(np.abs(vals)))]
        a = a - (a @ c) * c
        a = a / np.linalg.norm(a) if np.linalg.norm(a) > 1e-9 else _orthogonal_unit(c)
        # Run it until the barycentres are bary_tol apart, for at most a quarter turn.
        blk = _Block(0.0, 1, B=np.zeros((d, d)), V=np.outer(a, c))
        try:
            bld.run_until(blk, lambda: worst_pair()[0] >= 2 * bary_tol, chunk=0.1, t_max=1.5, what="")
        except RuntimeError:
            pass
        ang, i, k = worst_pair()
        if ang < bary_tol:
            raise ValueError(
                f"inputs {i} and {k} cannot be told apart by the attention's barycentres (equal or "
                f"colinear, angle {ang:.2g} < {bary_tol:g}, even after a symmetry-breaking block): "
                "no shared theta can separate them (identical inputs?)"
            )
    c, _u, gamma, size = _choose_direction(bary(), rng)
    if gamma < 1e-2 or size < 1e-6:
        raise ValueError(
            f"degenerate barycentres: no direction c gives pairwise distinct escape directions "
            f"(best min angle {gamma:.2g} rad, min |P_c^perp m_i| {size:.2g}); inputs too alike"
        )
    target = min(0.5, 0.4 * gamma)
    blk = _Block(0.0, 1, B=np.zeros((d, d)), V=np.eye(d) - np.outer(c, c))
    bld.run_until(
        blk, lambda: _gap(bld.xs, bld.ws)[0] >= target, chunk=0.25, t_max=80.0, what="disentanglement"
    )
    diag.update(
        stage1_direction=c,
        stage1_escape_min_angle=gamma,
        stage1_escape_min_size=size,
        stage1_gap_target=target,
        stage1_gap=_gap(bld.xs, bld.ws)[0],
    )
    return diag


def _stage2_cluster(bld: _Builder, eps: float, tol: float) -> dict[str, Any]:
    d = bld.d
    beta = max(1.0, math.log(1.0 / eps))
    blk = _Block(0.0, 2, B=beta * np.eye(d), V=np.eye(d))

    def radius() -> float:
        return max(_radius(x, w) for x, w in zip(bld.xs, bld.ws, strict=True))

    bld.run_until(blk, lambda: radius() <= tol, chunk=0.25, t_max=80.0, what="clustering")
    return {"stage2_beta": beta, "stage2_tol": tol, "stage2_max_radius": radius()}


def _plan(
    start: np.ndarray,
    goal: np.ndarray,
    obstacles: np.ndarray,
    clear: np.ndarray,
    margin: float,
    nodes: np.ndarray,
    max_move: float = 2.5,
) -> list[np.ndarray] | None:
    """Waypoints from ``start`` to ``goal`` (excluded, included) with fewest gated blocks, or None.

    A move p -> q uses the cap B(z, |pq| / 2 + margin) around the midpoint z of
    the arc; it is allowed when every obstacle o (with its own clearance r_o)
    has dist(z, o) >= |pq| / 2 + 2 margin + r_o (an obstacle may be off by ``margin`` and still
    be left alone: a schedule built on one sample must not catch another's atom), and |pq| <= ``max_move``:
    the flow towards q stretches a cluster across the path by at most
    1 / sin|pq| on the way (and contracts it at the end), so moves stay well short of antipodal.
    """
    pts = np.r_[start[None], nodes, goal[None]]
    if len(obstacles):
        free = (geodesic_cost(pts, obstacles) >= 2.0 * margin + clear[None, :]).all(axis=1)
        free[0] = True
        pts = pts[free]
    dist = geodesic_cost(pts, pts)
    ok = (dist <= max_move) & (dist > 0)
    if len(obstacles):
        mid = pts[:, None, :] + pts[None, :, :]
        mid /= np.maximum(np.linalg.norm(mid, axis=-1, keepdims=True), 1e-300)
        n = len(pts)
        room = (geodesic_cost(mid.reshape(n * n, -1), obstacles) - clear[None, :]).min(axis=1).reshape(n, n)
        ok &= dist / 2 + 2.0 * margin <= room
    cost = np.where(ok, 1.0 + 0.1 * dist, 0.0)
    _, pred = dijkstra(cost, directed=True, indices=0, return_predecessors=True)
    goal_i = len(pts) - 1
    if not np.allclose(pts[goal_i], goal) or pred[goal_i] < 0:
        return None
    path, j = [], goal_i
    while j != 0:
        path.append(pts[j])
        j = pred[j]
    return path[::-1]


def _stage3_match(
    bld: _Builder, targets: np.ndarray, eps: float, match_tol: float, n_nodes: int
) -> dict[str, Any]:
    d, N = bld.d, len(bld.xs)

    def centres() -> np.ndarray:
        return np.array([_centre(x, w) for x, w in zip(bld.xs, bld.ws, strict=True)])

    radii = np.array([_radius(x, w) for x, w in zip(bld.xs, bld.ws, strict=True)])
    pos = centres()
    sep = [float(geodesic_cost(targets, targets)[np.triu_indices(N, 1)].min())] if N > 1 else []
    if N > 1:
        sep.append(float(geodesic_cost(pos, pos)[np.triu_indices(N, 1)].min()))
    margin = min([0.3, *[0.22 * s for s in sep]])
    nodes = _sphere_nodes(d, n_nodes, seed=2)
    placed: set[int] = set()
    moves, parks = 0, 0

    def move(M: int, path: list[np.ndarray], final: bool) -> None:
        nonlocal moves
        for j, q in enumerate(path):
            p = _centre(bld.xs[M], bld.ws[M])
            z = normalize((p + q)[None])[0]
            R = 0.5 * float(_angle(p, q)) + margin + radii[M]
            # kappa normalises the gate's peak (at z) to 1: rk4 steps then have one size everywhere.
            kappa = 1.0 / (1.0 - math.cos(R))
            blk = _Block(0.0, 3, W=kappa * q[:, None], U=z[None, :], b=np.array([-math.cos(R)]))
            last = final and j == len(path) - 1

            def done(q: np.ndarray = q, last: bool = last) -> bool:
                if last:
                    return w2_to_dirac(bld.xs[M], bld.ws[M], q) <= match_tol
                return float(_angle(_centre(bld.xs[M], bld.ws[M]), q)) <= 0.25 * margin

            bld.run_until(blk, done, chunk=0.25, t_max=200.0, what=f"matching atom {M}")
            moves += 1

    for _ in range(3 * N + 3):
        todo = [M for M in range(N) if M not in placed]
        if not todo:
            break
        pos = centres()
        progressed = False
        for M in todo:
            others = [k for k in range(N) if k != M]
            path = _plan(pos[M], targets[M], pos[others], radii[others], margin, nodes)
            if path is not None:
                move(M, path, final=True)
                placed.add(M)
                progressed = True
                break
        if progressed:
            continue
        # Every unplaced atom is blocked (e.g. it sits on another's target): park one at a free point.
        M = todo[0]
        others = [k for k in range(N) if k != M]
        busy = np.r_[pos[others], targets]
        spot = nodes[int(np.argmax(geodesic_cost(nodes, busy).min(axis=1)))]
        path = _plan(pos[M], spot, pos[others], radii[others], margin, nodes)
        if path is None:
            raise RuntimeError(f"matching: no gated path for atom {M} even to a parking spot")
        move(M, path, final=False)
        parks += 1
    if len(placed) < N:
        raise RuntimeError("matching: could not place every atom")
    return {"stage3_margin": margin, "stage3_moves": moves, "stage3_parks": parks, "stage3_tol": match_tol}


def build_interpolation(
    measures: Sequence[tuple[np.ndarray, np.ndarray | None]],
    targets: np.ndarray,
    T: float,
    eps: float,
    *,
    w0: np.ndarray | None = None,
    min_gap: float = 0.25,
    cluster_tol: float | None = None,
    match_tol: float | None = None,
    bary_tol: float = 1e-3,
    h0: float = 0.02,
    n_tracks: int = 12,
    n_nodes: int = 400,
    rng: np.random.Generator | int | None = 0,
) -> Interpolation:
    """Build the interpolating schedule for ``measures`` -> ``targets`` by simulating its stages.

    Parameters
    ----------
    measures : N pairs ``(points (n_i, d), weights (n_i,) or None)`` on S^{d-1}, d >= 3.
    targets : (N, d) distinct unit vectors; measure i is sent near ``targets[i]``.
    T : the time horizon of the schedule (> 0); norms scale like 1/T.
    eps : the W2 accuracy asked for, in (0, 1).
    w0 : a common point missed by every support; found by :func:`find_missed_point` when None
        (which needs an empty cap of radius >= ``min_gap``).
    cluster_tol : stage 2 stops when every measure's angular radius is <= this (default eps / 8).
    match_tol : stage 3 stops moving an atom when its W2 to the target is <= this (default eps / 4).
    bary_tol : barycentre directions closer than this (rad) count as equal or colinear (Lemma 3.4).
    h0 : RK4 step in units of (natural time x block size); the steps of a block are
        ``ceil(tau max(|V|, |W|) / h0)``.
    n_tracks : tokens per measure whose paths are recorded.
    n_nodes : points of the sphere the stage-3 waypoint planner uses.
    rng : seed or generator for the choice of the stage-1 direction.

    Raises ``ValueError`` when the hypotheses fail: d < 3, numbers of measures
    and targets differ, targets off the sphere or repeated, supports covering
    the sphere, inputs indistinguishable by their barycentres.
    """
    xs, ws, y = _check_inputs(measures, targets, T, eps)
    d = xs[0].shape[1]
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    support = np.concatenate([x[w > 0] for x, w in zip(xs, ws, strict=True)])
    if w0 is None:
        w0, gap = find_missed_point(support, min_gap=min_gap)
    else:
        w0 = check_points(np.reshape(w0, (1, -1)), name="w0", dim=d)[0]
        gap = float(np.arccos(np.clip((support @ w0).max(), -1.0, 1.0)))
        if gap <= 0.0:
            raise ValueError("w0 lies in a support: the supports must all miss w0")
    cluster_tol = eps / 8 if cluster_tol is None else cluster_tol
    match_tol = eps / 4 if match_tol is None else match_tol
    bld = _Builder(xs, ws, h0, n_tracks)
    diag: dict[str, Any] = {"w0_gap": gap}

    diag["stage0_min_coordinate"] = _stage0_orthant(bld, w0, safety=min(0.05, 0.5 * gap))
    bld.end_stage()
    diag.update(_stage1_disentangle(bld, gen, bary_tol))
    bld.end_stage()
    diag.update(_stage2_cluster(bld, eps, cluster_tol))
    bld.end_stage()
    diag.update(_stage3_match(bld, y, eps, match_tol, n_nodes))
    bld.end_stage()
    return _finish(bld, y, w0, T, eps, diag)


def _finish(bld: _Builder, y: np.ndarray, w0: np.ndarray, T: float, eps: float, diag: dict) -> Interpolation:
    """Rescale natural time to [0, T] block by block (equal max(|V|, |W|) everywhere) and pack up."""
    d = bld.d
    tau = np.array([b.tau for b in bld.blocks])
    action = tau * np.array([b.size for b in bld.blocks])
    new_tau = T * action / action.sum()
    scale = tau / new_tau
    schedule = Schedule(
        tuple((float(nt), b.params(d, float(s))) for nt, b, s in zip(new_tau, bld.blocks, scale, strict=True))
    )
    starts = np.r_[0.0, np.cumsum(new_tau)]
    # A snapshot at offset o inside natural block k is at starts[k] + o / scale[k] (the block that
    # was running when it was taken, i.e. the one appended next: index k = blocks before it).
    times = []
    for k, off in bld.snap_at:
        if off == 0.0:
            times.append(starts[k])
        else:
            times.append(starts[k] + off / scale[k])
    times = np.minimum(np.array(times), T)
    stages = np.array([b.stage for b in bld.blocks])
    stage_times = np.r_[
        0.0,
        [
            starts[np.flatnonzero(stages <= s)[-1] + 1] if (stages <= s).any() else 0.0
            for s in range(len(STAGES))
        ],
    ]
    records = tuple(
        MeasureRecord(
            times=times,
            barycentres=np.array([s[i] for s in bld.snap_bary]),
            tracks=np.array([s[i] for s in bld.snap_tracks]),
            weights=bld.ws[i],
            stage_points=np.array([s[i] for s in bld.stage_points]),
        )
        for i in range(len(bld.xs))
    )
    return Interpolation(
        schedule=schedule,
        targets=y,
        w0=w0,
        T=float(T),
        eps=float(eps),
        block_stages=stages,
        stage_times=stage_times,
        action=action,
        records=records,
        rk4_steps=bld.steps,
        diagnostics=diag,
    )


# -- verification -------------------------------------------------------------------------------------


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
    mesh,
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
    from vlasov_tf.solvers.finite_volumes import solve_grid

    out = []
    for rho0, y in zip(densities, interp.targets, strict=True):
        rho0 = np.asarray(rho0, dtype=float)
        rho0 = rho0 + floor * rho0.max()
        sol = solve_grid(mesh, rho0, interp.schedule, cfl=cfl, max_dt=max_dt, progress=progress)
        mass = np.maximum(sol.final * mesh.areas, 0.0)
        out.append(w2_to_dirac(mesh.centres, mass, y))
    return np.array(out)


# -- case files ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapInput:
    """An input measure: density proportional to ``exp(kappa <mean, x>)`` on the cap ``B(mean, radius)``.

    ``kappa = 0`` is the uniform law on the cap; its support is the closed cap.
    """

    mean: np.ndarray
    radius: float
    kappa: float = 0.0

    def density(self, x: np.ndarray) -> np.ndarray:
        """(n, d) -> (n,) unnormalised density."""
        dot = x @ self.mean
        return np.where(dot >= math.cos(self.radius), np.exp(self.kappa * (dot - 1.0)), 0.0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, d) exact samples: vMF (uniform when kappa = 0) restricted to the cap, by rejection."""
        d = len(self.mean)
        out: list[np.ndarray] = []
        got = 0
        while got < n:
            if self.kappa > 0:
                cand = stats.vonmises_fisher(self.mean, self.kappa).rvs(4 * n, random_state=rng)
                cand = np.reshape(cand, (-1, d))
            else:
                cand = normalize(rng.standard_normal((max(4 * n, 1000), d)))
            keep = cand[cand @ self.mean >= math.cos(self.radius)]
            out.append(keep)
            got += len(keep)
        return normalize(np.concatenate(out)[:n])

    def cell_averages(self, mesh) -> np.ndarray:
        """(C,) cell averages by the centre rule, normalised to mass 1 (at least the nearest cell)."""
        rho = self.density(mesh.centres)
        if rho.sum() == 0:
            rho[int(np.argmax(mesh.centres @ self.mean))] = 1.0
        return rho / float(rho @ mesh.areas)


@dataclass(frozen=True)
class InterpolationCase:
    """A parsed ``cases/interpolation.toml``."""

    name: str
    description: str
    d: int
    T: float
    eps: float
    seed: int
    inputs: tuple[CapInput, ...]
    targets: np.ndarray
    tokens: int
    layers: tuple[int, ...]
    levels: tuple[int, ...]
    cfl: float
    max_dt: float | None
    source: str

    def measures(self, rng: np.random.Generator | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """The inputs as ``tokens`` uniform-weight samples each (default: seeded by the case's seed)."""
        rng = np.random.default_rng(self.seed) if rng is None else rng
        return [(c.sample(self.tokens, rng), np.full(self.tokens, 1.0 / self.tokens)) for c in self.inputs]


_CASE_TOP = ("case", "inputs", "targets", "particles", "grid")


def parse_interpolation_case(text: str, source: str = "<string>") -> InterpolationCase:
    """Parse and validate an interpolation case (see ``cases/interpolation.toml`` for the layout).

    Errors are ``ValueError('<source>: <dotted key> ...')``.
    """
    r = TomlReader(source, Path("."))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from err
    r.table(data, "", _CASE_TOP, required=("case", "inputs", "targets"))
    case = r.table(
        data["case"],
        "case",
        ("name", "description", "d", "T", "eps", "seed"),
        required=("name", "d", "T", "eps"),
    )
    name = r.string(case["name"], "case.name")
    d = r.integer(case["d"], "case.d")
    if d < 3:
        r.fail("case.d", f"must be >= 3 (Theorem 1.1 needs d >= 3), got {d}")
    T = r.positive(case["T"], "case.T")
    eps = r.positive(case["eps"], "case.eps")
    if eps >= 1:
        r.fail("case.eps", f"must be < 1, got {eps!r}")
    seed = r.integer(case.get("seed", 0), "case.seed", lo=0)
    inputs = []
    for i, t in enumerate(r.array(data["inputs"], "inputs", what=" of tables ([[inputs]])")):
        key = f"inputs[{i}]"
        t = r.table(t, key, ("mean", "radius", "kappa"), required=("mean", "radius"), what=f"[[inputs]] {i}")
        radius = r.positive(t["radius"], f"{key}.radius")
        if radius >= math.pi:
            r.fail(f"{key}.radius", f"must be < pi (a cap, not the sphere), got {radius!r}")
        kappa = r.real(t.get("kappa", 0.0), f"{key}.kappa")
        if kappa < 0:
            r.fail(f"{key}.kappa", f"must be >= 0, got {kappa!r}")
        inputs.append(CapInput(r.unit(t["mean"], f"{key}.mean", d), radius, kappa))
    tg = r.table(data["targets"], "targets", ("points",), required=("points",))
    pts = r.array(tg["points"], "targets.points", what=" of unit vectors")
    if len(pts) != len(inputs):
        r.fail("targets.points", f"has {len(pts)} points for {len(inputs)} inputs (one target per input)")
    targets = np.array([r.unit(p, f"targets.points[{k}]", d) for k, p in enumerate(pts)])
    for k in range(len(targets)):
        for j in range(k):
            if np.linalg.norm(targets[k] - targets[j]) < 1e-8:
                r.fail(f"targets.points[{k}]", f"repeats targets.points[{j}]: targets must be distinct")
    part = r.table(data.get("particles", {}), "particles", ("tokens", "layers"))
    tokens = r.integer(part.get("tokens", 500), "particles.tokens", lo=2)
    layers = r.counts(part.get("layers", [100, 200, 400, 800]), "particles.layers", lo=1)
    grid = r.table(data.get("grid", {}), "grid", ("levels", "cfl", "max_dt"))
    levels: tuple[int, ...] = ()
    if "levels" in grid:
        if d != 3:
            r.fail("grid.levels", f"needs d = 3 (the S^2 meshes), got case.d = {d}")
        if grid["levels"] == []:
            levels = ()
        else:
            levels = r.counts(grid["levels"], "grid.levels", lo=0, hi=4)
    cfl = r.positive(grid.get("cfl", 0.5), "grid.cfl")
    if cfl > 1:
        r.fail("grid.cfl", f"must lie in (0, 1], got {cfl!r}")
    max_dt = r.positive(grid["max_dt"], "grid.max_dt") if "max_dt" in grid else None
    return InterpolationCase(
        name=name,
        description=r.string(case.get("description", ""), "case.description"),
        d=d,
        T=T,
        eps=eps,
        seed=seed,
        inputs=tuple(inputs),
        targets=targets,
        tokens=tokens,
        layers=layers,
        levels=levels,
        cfl=cfl,
        max_dt=max_dt,
        source=source,
    )


def load_interpolation_case(path: str | os.PathLike) -> InterpolationCase:
    """Read and validate an interpolation case file; errors name the file and the dotted key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"case file {path} does not exist")
    return parse_interpolation_case(path.read_text(encoding="utf-8"), str(path))


def run_interpolation_case(
    case: InterpolationCase,
    out_dir: str | os.PathLike | None = "out",
    *,
    levels: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    log=print,
) -> dict[str, Any]:
    """Build the construction for ``case``, verify it (particles, fresh samples, grid, depth), plot.

    Returns a dict with the :class:`Interpolation` and every number printed;
    writes ``<out_dir>/<name>.png`` when ``out_dir`` is not None.
    """
    t0 = time.perf_counter()
    measures = case.measures()
    interp = build_interpolation(measures, case.targets, case.T, case.eps, rng=case.seed)
    log(interp.summary())
    log(f"construction: {interp.rk4_steps} RK4 steps, {time.perf_counter() - t0:.1f} s")
    res: dict[str, Any] = {"interp": interp, "w2_construction": interp.w2()}

    t1 = time.perf_counter()
    rerun = particle_w2(interp, measures)
    fresh = case.measures(np.random.default_rng(case.seed + 1))
    res["w2_rerun"], res["w2_fresh"] = rerun, particle_w2(interp, fresh)
    log(
        f"W2, each input alone through the schedule (RK4, {interp.rk4_steps} steps): "
        + ", ".join(f"{v:.3g}" for v in rerun)
        + f"   (eps = {case.eps:g})"
    )
    log(
        "W2, fresh samples of the inputs (not seen by the construction): "
        + ", ".join(f"{v:.3g}" for v in res["w2_fresh"])
        + f"   [{time.perf_counter() - t1:.1f} s]"
    )

    layers = case.layers if layers is None else tuple(layers)
    t1 = time.perf_counter()
    table, depth = depth_study(interp, measures, layers)
    res["depth_layers"], res["depth_table"], res["depth"] = np.array(layers), table, depth
    log("discrete Transformer (one residual layer per step, method 'layers'):")
    log("        L   " + "  ".join(f"W2[{i}]" for i in range(interp.N)))
    for L, row in zip(layers, table, strict=True):
        log(f"  {L:7d}   " + "  ".join(f"{v:.3g}" for v in row))
    log(
        f"  depth needed for W2 <= eps on every input: {depth if depth else '> ' + str(max(layers))}"
        f" ({interp.switches + 1} blocks)   [{time.perf_counter() - t1:.1f} s]"
    )

    levels = case.levels if levels is None else tuple(levels)
    res["grid_levels"], res["grid_w2"] = [], []
    if levels:
        from vlasov_tf.geometry.mesh_files import sphere_mesh

        log("grid (solve_grid, one run per input density, same schedule):")
        for level in levels:
            t1 = time.perf_counter()
            mesh = sphere_mesh(level)
            dens = [c.cell_averages(mesh) for c in case.inputs]
            w2 = grid_w2(interp, mesh, dens, cfl=case.cfl, max_dt=case.max_dt)
            res["grid_levels"].append(level)
            res["grid_w2"].append(w2)
            log(
                f"  level {level} ({mesh.n_cells} cells, h = {mesh.h:.3g}): W2 "
                + ", ".join(f"{v:.3g}" for v in w2)
                + f"   [{time.perf_counter() - t1:.1f} s]"
            )
    if out_dir is not None:
        path = Path(out_dir) / f"{case.name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        from vlasov_tf.plots import (
            plot_interpolation,  # matplotlib only when a figure is asked for
        )

        plot_interpolation(interp, res, path)
        res["figure"] = path
        log(f"figure: {path}")
    log(f"total {time.perf_counter() - t0:.1f} s")
    return res
