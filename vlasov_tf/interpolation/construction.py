"""Measure-to-measure interpolation: the explicit Transformer of arXiv 2411.04551, Theorem 1.1.

Given N probability measures ``mu^i`` on S^{d-1} (d >= 3) whose supports all
miss a common point ``w0`` and N distinct targets ``x^i``, build ONE
piecewise-constant ``theta(t) = (V, B, W, U, b)`` (a :class:`~vlasov_tf.models.attention.Schedule`
of ``Params.interpolation`` blocks, field ``P_x(V A_B[mu](x) + W (U x + b)_+)``)
such that the flow of every input ends within ``eps`` of its target:
``W2(mu^i(T), delta_{x^i}) <= eps``. The same theta moves every input; the
attention term is the only thing that tells the inputs apart.

The construction is built by simulating, as the proof does: each stage picks
its parameters from the current states of the N measures (tokens), then the
measures are advanced through that stage with ``solve_particles(method="rk4")``
(each measure on its own: the inputs never interact), and the next stage
sees where they are. The stages are the functions of :mod:`vlasov_tf.interpolation.stages`;
this module checks the hypotheses, calls them in order and rescales time. Stages, each with
the lemma it must achieve:

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
stage proves; numbers are in the report of ``vlasov-tf interpolate``):

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

The paper's model and the two slips of its appendix the code corrects: ``docs/interpolation.md``.
Checking a built schedule with the solvers: :mod:`vlasov_tf.interpolation.checks`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlasov_tf.analysis.wasserstein import geodesic_cost, w2_to_dirac
from vlasov_tf.geometry.measures import check_points, check_weights, normalize
from vlasov_tf.interpolation.stages import (
    Builder,
    sphere_nodes,
    stage0_orthant,
    stage1_disentangle,
    stage2_cluster,
    stage3_match,
)
from vlasov_tf.memory import BYTES_PER_NODE_PAIR_DIM, check_memory
from vlasov_tf.models.attention import Schedule

__all__ = [
    "STAGES",
    "Interpolation",
    "MeasureRecord",
    "build_interpolation",
    "find_missed_point",
]

STAGES = ("orthant", "disentangle", "cluster", "match")


# -- the hypothesis: a point every support misses ---------------------------------------------------------


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
    cand = sphere_nodes(d, n_candidates, seed=1)
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


def _check_inputs(
    measures: Sequence[tuple[np.ndarray, np.ndarray | None]], targets: np.ndarray, T: float, eps: float
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    if len(measures) == 0:
        raise ValueError("at least one input measure is needed")
    xs: list[np.ndarray] = []
    ws: list[np.ndarray] = []
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
        i, k = (int(j) for j in np.unravel_index(int(np.argmin(dist)), dist.shape))
        if dist[i, k] < 1e-8:
            raise ValueError(f"targets must be distinct: targets {min(i, k)} and {max(i, k)} coincide")
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"the time horizon T must be finite and > 0; got {T}")
    if not (np.isfinite(eps) and 0 < eps < 1):
        raise ValueError(f"eps must lie in (0, 1); got {eps}")
    return xs, ws, normalize(y)


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
    n_tracks : tokens per measure whose paths are recorded (at most its tokens: the tracks take no
        more memory than the measures given).
    n_nodes : points of the sphere the stage-3 waypoint planner uses; it forms (n_nodes + 2)^2
        arcs, their midpoints and their distances to the obstacles: about 32 (d + N + 2) bytes
        each, checked against the memory available before anything is built
        (:class:`~vlasov_tf.memory.TooLarge` naming n_nodes).
    rng : seed or generator for the choice of the stage-1 direction.

    Raises ``ValueError`` when the hypotheses fail: d < 3, numbers of measures
    and targets differ, targets off the sphere or repeated, supports covering
    the sphere, inputs indistinguishable by their barycentres.
    """
    xs, ws, y = _check_inputs(measures, targets, T, eps)
    d = xs[0].shape[1]
    for name, count in (("n_tracks", n_tracks), ("n_nodes", n_nodes)):
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {count!r}")
    planner = BYTES_PER_NODE_PAIR_DIM * (d + len(xs) + 2) * (n_nodes + 2) ** 2
    check_memory(planner, f"build_interpolation: n_nodes = {n_nodes} ({len(xs)} measures in d = {d})")
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
    bld = Builder(xs, ws, h0, n_tracks)
    diag: dict[str, Any] = {"w0_gap": gap}

    diag["stage0_min_coordinate"] = stage0_orthant(bld, w0, safety=min(0.05, 0.5 * gap))
    bld.end_stage()
    diag.update(stage1_disentangle(bld, gen, bary_tol))
    bld.end_stage()
    diag.update(stage2_cluster(bld, eps, cluster_tol))
    bld.end_stage()
    diag.update(stage3_match(bld, y, eps, match_tol, n_nodes))
    bld.end_stage()
    return _finish(bld, y, w0, T, eps, diag)


def _finish(bld: Builder, y: np.ndarray, w0: np.ndarray, T: float, eps: float, diag: dict) -> Interpolation:
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
