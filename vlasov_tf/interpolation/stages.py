"""The stages of the interpolating Transformer's construction, and the state they act on.

:class:`Builder` holds the N measures' tokens, the blocks chosen so far and the snapshots the
figure draws; each ``stageK_*`` function picks the parameters of one or more :class:`Block`
from where the measures are, runs them on the builder (every measure on its own, RK4) and
returns what it achieved. What each stage must achieve, the lemma it stands for and where it
departs from the paper are in :mod:`vlasov_tf.interpolation.construction`, which calls them in
order (:func:`~vlasov_tf.interpolation.construction.build_interpolation`) and rescales the
blocks' times to the horizon T.

Shapes: a measure is ``(points (n, d), weights (n,))``; targets ``(N, d)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse.csgraph import dijkstra

from vlasov_tf.analysis.wasserstein import geodesic_cost, w2_to_dirac
from vlasov_tf.geometry.measures import normalize
from vlasov_tf.models.attention import Params, Schedule
from vlasov_tf.solvers.particles import solve_particles

__all__ = [
    "Block",
    "Builder",
    "sphere_nodes",
    "stage0_orthant",
    "stage1_disentangle",
    "stage2_cluster",
    "stage3_match",
]


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


def sphere_nodes(d: int, n: int, seed: int = 0) -> np.ndarray:
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


# -- blocks and the builder ---------------------------------------------------------------------------


@dataclass
class Block:
    """One constant block of the schedule in natural units: ``tau``, the stage it belongs to, and
    ``B, V, W, U, b`` of ``Params.interpolation`` (None: absent); ``V, W`` scale with time."""

    tau: float  # natural duration
    stage: int
    B: np.ndarray | None = None
    V: np.ndarray | None = None
    W: np.ndarray | None = None
    U: np.ndarray | None = None
    b: np.ndarray | None = None

    @property
    def size(self) -> float:
        """The scalable size ``max(|V|, |W|)`` (spectral norms)."""
        return max(float(np.linalg.norm(m, 2)) for m in (self.V, self.W) if m is not None)

    def params(self, d: int, scale: float = 1.0) -> Params:
        """The block's parameters, ``V`` and ``W`` multiplied by ``scale`` (the time rescaling)."""
        return Params.interpolation(
            d,
            B=self.B,
            V=None if self.V is None else scale * self.V,
            W=None if self.W is None else scale * self.W,
            U=self.U,
            b=self.b,
        )


class Builder:
    """State of the construction: the N measures' tokens, the blocks so far, the snapshots."""

    def __init__(self, xs: list[np.ndarray], ws: list[np.ndarray], h0: float, n_tracks: int) -> None:
        self.xs, self.ws = xs, ws
        self.d = xs[0].shape[1]
        self.h0 = h0
        self.blocks: list[Block] = []
        self.t = 0.0  # natural time
        self.steps = 0
        # Snapshots: (block index, natural offset inside the block) so times can be rescaled later.
        self.snap_at: list[tuple[int, float]] = [(0, 0.0)]
        self.snap_bary: list[list[np.ndarray]] = [[_centre(x, w) for x, w in zip(xs, ws, strict=True)]]
        self.track_idx = [np.linspace(0, len(x) - 1, min(n_tracks, len(x))).astype(int) for x in xs]
        self.snap_tracks: list[list[np.ndarray]] = [[x[j] for x, j in zip(xs, self.track_idx, strict=True)]]
        self.stage_points: list[list[np.ndarray]] = [[x.copy() for x in xs]]

    def _advance(self, blk: Block, dt: float) -> None:
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

    def run(self, blk: Block, chunk: float | None = None) -> None:
        """A block of fixed natural length ``blk.tau``, with snapshots every ``chunk``."""
        n_chunks = max(1, math.ceil(blk.tau / chunk)) if chunk else 1
        for k in range(n_chunks):
            self._advance(blk, blk.tau / n_chunks)
            self._snapshot((k + 1) * blk.tau / n_chunks)
        self.blocks.append(blk)
        self.t += blk.tau

    def run_until(self, blk: Block, done, chunk: float, t_max: float, what: str) -> float:
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


# -- the stages ----------------------------------------------------------------------------------------


def stage0_orthant(bld: Builder, w0: np.ndarray, safety: float) -> float:
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
        blk = Block(0.0, 0, W=a[:, None], U=np.zeros((1, d)), b=np.ones(1))
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


def _choose_direction(
    bary: np.ndarray, rng: np.random.Generator, n_cand: int = 600
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """c near the spherical hull of the barycentres maximising min(min angle, pi/4) x min size;
    returns it with :func:`_directions` of it."""
    dirs = normalize(bary)
    spread = float(geodesic_cost(dirs, dirs).max())
    lam = rng.dirichlet(np.ones(len(dirs)), size=n_cand)
    cand = lam @ dirs + 0.3 * max(spread, 1e-3) * rng.standard_normal((n_cand, dirs.shape[1]))
    cand = normalize(np.r_[dirs.mean(axis=0, keepdims=True), cand])
    best: tuple[np.ndarray, np.ndarray, float, float] | None = None
    best_score = -1.0
    for c in cand:
        u, gamma, size = _directions(c, bary)
        # Past 45 degrees between escape directions, only the sizes |P_c^perp m_i| matter: the
        # direction of measure i is as sensitive to perturbations as 1 / |P_c^perp m_i|.
        score = min(gamma, math.pi / 4) * size
        if score > best_score:
            best, best_score = (c, u, gamma, size), score
    if best is None:  # only NaN scores: the barycentres were not finite
        raise ValueError(f"no direction for the disentanglement: barycentres {bary.tolist()} are not finite")
    return best


def stage1_disentangle(bld: Builder, rng: np.random.Generator, bary_tol: float) -> dict[str, Any]:
    """``B = 0``, ``V = I - c c^T``: run until the supports are pairwise apart; its diagnostics.

    Barycentres closer than ``bary_tol`` (rad) first get the symmetry-breaking block; still that
    close after it, a ``ValueError`` naming the two inputs.
    """
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
        blk = Block(0.0, 1, B=np.zeros((d, d)), V=np.outer(a, c))
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
    blk = Block(0.0, 1, B=np.zeros((d, d)), V=np.eye(d) - np.outer(c, c))
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


def stage2_cluster(bld: Builder, eps: float, tol: float) -> dict[str, Any]:
    """``V = I``, ``B = max(1, log(1/eps)) I``: run until every measure's angular radius is <= ``tol``."""
    d = bld.d
    beta = max(1.0, math.log(1.0 / eps))
    blk = Block(0.0, 2, B=beta * np.eye(d), V=np.eye(d))

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
        free = np.asarray((geodesic_cost(pts, obstacles) >= 2.0 * margin + clear[None, :]).all(axis=1))
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


def stage3_match(
    bld: Builder, targets: np.ndarray, eps: float, match_tol: float, n_nodes: int
) -> dict[str, Any]:
    """Gated perceptron blocks moving one atom at a time along waypoints (``n_nodes`` of the
    sphere) until each is within ``match_tol`` in W2 of its target (``targets`` (N, d))."""
    d, N = bld.d, len(bld.xs)

    def centres() -> np.ndarray:
        return np.array([_centre(x, w) for x, w in zip(bld.xs, bld.ws, strict=True)])

    radii = np.array([_radius(x, w) for x, w in zip(bld.xs, bld.ws, strict=True)])
    pos = centres()
    sep = [float(geodesic_cost(targets, targets)[np.triu_indices(N, 1)].min())] if N > 1 else []
    if N > 1:
        sep.append(float(geodesic_cost(pos, pos)[np.triu_indices(N, 1)].min()))
    margin = min([0.3, *[0.22 * s for s in sep]])
    nodes = sphere_nodes(d, n_nodes, seed=2)
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
            blk = Block(0.0, 3, W=kappa * q[:, None], U=z[None, :], b=np.array([-math.cos(R)]))
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
