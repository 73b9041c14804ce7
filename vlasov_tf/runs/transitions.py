"""Stationary states against the noise: a case's ``[transition]`` scan, run into one run file.

For each sigma of ``transition.noise`` (:class:`~vlasov_tf.runs.case_tables.TransitionSpec`) the
grid solves the noisy model (the case's model with ``noise = sigma``) for the case's T, starting
from the state the previous sigma left (continuation) mixed with a fraction ``transition.kick`` of the
initial measure: up the list from the initial measure, then back down from the top. The mix
leaves an unstable state (a deterministic grid would stay on the uniform state below the
critical noise forever, as no token noise perturbs it); the change of the order parameter over
the last output interval says how stationary each end state is. Where the stationary state is
not unique (a subcritical transition) the two branches differ: hysteresis. The order parameter
of a state is ``r = |int x dmu| / mu(S)`` (0 for the uniform measure). Ensembles of ``members``
token sets, each from the initial measure, run through ``layers`` noisy layers at each sigma as
the Lagrangian cross-check (under MPI the (sigma, member) pairs are dealt to the ranks, as in a
sweep).

Linear theory predicts where the uniform state loses stability: mode k grows at ``lambda_k -
sigma kappa_k`` (``lambda_k`` the noiseless growth rate, ``kappa_k`` the Laplacian's eigenvalue),
so at ``sigma_c = max_k lambda_k / kappa_k`` (:func:`critical_noise`). For identical Kuramoto /
Lohe oscillators (a constant kernel c) the stationary states are explicit: von Mises-Fisher
densities ``exp(kappa <x, m>)`` whose order parameter solves ``r = A_d(c r / sigma)``
(:func:`kuramoto_order`), a supercritical pitchfork at ``sigma_c = c / d``.

Run file: ``transition/up/s<i>``, ``transition/down/s<i>`` (grid jobs: the density at the
case's output times of each relaxation) and ``transition/tokens/s<i>`` (the members' tokens,
member-major), each with the attribute ``noise``. It resumes like every run: finished jobs are
skipped, an interrupted one restarts from its last snapshot.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import i0e, i1e

from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.base import MeanField, deterministic, laplacian_eigenvalue, with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.parallel import Comm, block_range, is_root, on_root, root_only
from vlasov_tf.runs.case_tables import TransitionSpec
from vlasov_tf.runs.cases import Case
from vlasov_tf.runs.runner import open_run_file
from vlasov_tf.runs.storage import JobLayout, RunFile
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.particles import solve_particles

__all__ = [
    "SETTLED",
    "Branches",
    "critical_noise",
    "format_branches",
    "kuramoto_order",
    "order_parameter",
    "read_branches",
    "run_transition",
    "transition_layouts",
]

_log = logging.getLogger(__name__)
#: Modes of the uniform state the critical noise looks at.
_MODES = 12
#: An end state is settled when its order parameter changed by less than this over the last
#: output interval; near the critical noise relaxation slows down (critical slowing) and the two
#: branches may differ only because one has not settled: that is not hysteresis.
SETTLED = 1e-3


def _spec(case: Case) -> TransitionSpec:
    if case.transition is None:
        raise ValueError(f"{case.source}: no [transition] table (noise, ...) to scan")
    return case.transition


def order_parameter(points: np.ndarray, weights: np.ndarray) -> float:
    """``|sum_i w_i x_i| / sum_i w_i`` for points (n, d) and weights (n,)."""
    return float(np.linalg.norm(weights @ points) / weights.sum())


def critical_noise(model: MeanField) -> float | None:
    """``max_k lambda_k / kappa_k`` over the modes k = 1..12 of the uniform state (module
    docstring): the noise above which it is linearly stable; None without growth rates, or when
    no mode grows without noise."""
    flow = deterministic(model)
    rates = [flow.growth_rate(k) for k in range(1, _MODES + 1)]
    if any(r is None for r in rates):
        return None
    best = max(r / laplacian_eigenvalue(model.d, k) for k, r in enumerate(rates, start=1) if r is not None)
    return best if best > 0 else None


def kuramoto_order(model: MeanField, sigma: float) -> float | None:
    """The stationary order parameter of identical Kuramoto (S^1) / Lohe (S^2) oscillators, a
    constant kernel c without normaliser or drift, at noise sigma: the largest root of
    ``r = A_d(c r / sigma)`` (``A_2 = I_1 / I_0``, ``A_3(k) = coth k - 1/k``); None for other models."""
    flow = deterministic(model)
    if not (isinstance(flow, Interaction) and isinstance(flow.kernel, Constant)) or model.d not in (2, 3):
        return None
    rotating = flow.omega is not None and bool(np.any(flow.omega))
    if flow.normaliser is not None or flow.drift is not None or rotating:
        return None
    c = flow.kernel.c
    if sigma <= 0:
        return 1.0

    def mean_cos(k: float) -> float:
        if model.d == 2:
            return float(i1e(k) / i0e(k))
        return 1.0 / np.tanh(k) - 1.0 / k if k > 1e-6 else k / 3.0

    r = 1.0
    for _ in range(100_000):  # the iteration decreases monotonically from 1 to the largest root
        nxt = mean_cos(c * r / sigma)
        if abs(nxt - r) < 1e-14:
            break
        r = nxt
    return r if r > 1e-6 else 0.0


def transition_layouts(case: Case) -> list[JobLayout]:
    """Grid jobs up and down the noise list, and a tokens job per sigma (members x tokens)."""
    spec = _spec(case)
    mesh = case.mesh(spec.resolution)
    out = []
    for branch in ("up", "down"):
        attrs = [{"noise": s, "branch": branch} for s in spec.noise]
        out += [JobLayout(f"transition/{branch}/s{i:03d}", "grid", mesh=mesh, attrs=a)
                for i, a in enumerate(attrs)]  # fmt: skip
    if spec.tokens:
        n = spec.members * spec.tokens
        out += [
            JobLayout(f"transition/tokens/s{i:03d}", "particles", tokens=n, d=case.d, attrs={"noise": s})
            for i, s in enumerate(spec.noise)
        ]
    return out


def _noisy(case: Case, sigma: float) -> MeanField:
    return with_noise(deterministic(case.model), sigma)


def run_transition(
    case: Case, path: str | Path, *, resume: bool = False, overwrite: bool = False, comm: Comm | None = None
) -> Path:
    """Run the scan of ``case`` (module docstring) into the run file ``path``; resumable."""
    path, spec = Path(path), _spec(case)
    layouts = transition_layouts(case)
    opened: list[tuple[RunFile, bool]] = []
    on_root(comm, lambda: opened.append(open_run_file(case, path, layouts, resume=resume, overwrite=overwrite,
                                                      comm=comm)))  # fmt: skip
    run = opened[0][0] if opened else None
    try:
        mesh = case.mesh(spec.resolution)
        state = case.initial.cell_averages(mesh)
        grid = case.grid
        assert grid is not None  # read_transition: a [grid] table
        scheme = grid.scheme
        order = [("up", i) for i in range(len(spec.noise))]
        order += [("down", i) for i in reversed(range(len(spec.noise)))]
        initial = state
        for branch, i in order:
            key = f"transition/{branch}/s{i:03d}"
            kick = spec.kick
            start = state if (branch, i) == order[0] else (1 - kick) * state + kick * initial
            state = _relax(case, run, key, mesh, start, spec.noise[i], scheme, comm)
        if spec.tokens:
            _tokens(case, run, spec, comm)
    finally:
        if run is not None:
            run.close()
    return path


def _relax(case, run, key, mesh, start, sigma, scheme, comm) -> np.ndarray:
    """One grid relaxation at ``sigma`` from ``start`` (or from where the file stops); its final
    density (on every rank)."""
    stored = on_root(comm, lambda: root_only(run).job_state(key))
    t0 = 0.0
    if stored is not None and len(stored[0]):
        t0, start = float(stored[0][-1]), stored[1][-1]
    on_root(comm, lambda: root_only(run).start_job(key, "grid", mesh=mesh, noise=sigma,
                                                   branch=key.split("/")[1]))  # fmt: skip
    if t0 >= case.T:
        return start
    tic = time.perf_counter()

    def store(t: float, rho: np.ndarray) -> None:
        if t > t0 or stored is None or not len(stored[0]):
            root_only(run).append(key, t, rho)

    sol = solve_grid(mesh, start, _noisy(case, sigma), case.T, t_eval=case.output_times, t0=t0, comm=comm,
                     scheme=scheme, callback=store if is_root(comm) else None)  # fmt: skip
    on_root(comm, lambda: root_only(run).finish_job(key))
    final = sol.final if is_root(comm) else None
    if comm is not None:
        final = comm.bcast(final, root=0)
    assert final is not None
    r = order_parameter(mesh.centres, final * mesh.areas)
    _log.info(f"{key}: sigma = {sigma:g}, r = {r:.4f} ({time.perf_counter() - tic:.1f} s)")
    return final


def _tokens(case: Case, run: RunFile | None, spec: TransitionSpec, comm: Comm | None) -> None:
    """The members at every sigma not yet stored; the (sigma, member) pairs dealt to the ranks."""
    keys = [f"transition/tokens/s{i:03d}" for i in range(len(spec.noise))]
    todo = on_root(comm, lambda: [i for i, k in enumerate(keys) if not root_only(run).is_complete(k)])
    pairs = [(i, m) for i in todo for m in range(spec.members)]
    lo, hi = (0, len(pairs)) if comm is None else block_range(len(pairs), comm.size, comm.rank)
    finals = {}
    for i, m in pairs[lo:hi]:
        x0, w = case.initial_tokens(spec.tokens, sample=m)
        sol = solve_particles(_noisy(case, spec.noise[i]), x0, w, T=case.T, steps=spec.layers,
                              t_eval=case.output_times, noise_seed=(case.particles.seed, spec.tokens, m, i),
                              field_method=case.particles.field_method)  # fmt: skip
        finals[(i, m)] = (sol.positions, w)
    if comm is not None:
        gathered = comm.gather(finals, root=0)
        if comm.rank != 0:
            return
        finals = {k: v for part in gathered for k, v in part.items()}
    out = root_only(run)
    for i in todo:
        key = f"transition/tokens/s{i:03d}"
        weights = np.concatenate([finals[(i, m)][1] for m in range(spec.members)]) / spec.members
        out.start_job(key, "particles", weights=weights, noise=spec.noise[i])
        stored = out.job_info(key)["n"]
        for k, t in enumerate(case.output_times):
            if k >= stored:
                out.append(key, t, np.concatenate([finals[(i, m)][0][k] for m in range(spec.members)]))
        out.finish_job(key)
        _log.info(f"{key}: sigma = {spec.noise[i]:g}, {spec.members} x {spec.tokens} tokens")


@dataclass(frozen=True)
class Branches:
    """A finished scan: ``noise`` (n,), the grid's final order parameters ``up`` and ``down`` (n,),
    their change over the last output interval ``drift_up``, ``drift_down`` (n,: how stationary),
    the tokens' per-member order parameters ``tokens`` (n, members) or None, and the theory:
    ``critical`` (linear), ``explicit`` (n,) the explicit stationary branch or None."""

    noise: np.ndarray
    up: np.ndarray
    down: np.ndarray
    drift_up: np.ndarray
    drift_down: np.ndarray
    tokens: np.ndarray | None
    critical: float | None
    explicit: np.ndarray | None

    @property
    def settled(self) -> np.ndarray:
        """(n,) whether both branches' end states are settled (:data:`SETTLED`)."""
        return (self.drift_up < SETTLED) & (self.drift_down < SETTLED)

    @property
    def hysteresis(self) -> float:
        """``max |r_up - r_down|`` over the sigmas where both branches settled (0 if none)."""
        gap = np.abs(self.up - self.down)[self.settled]
        return float(gap.max()) if gap.size else 0.0


def read_branches(case: Case, run: RunFile) -> Branches:
    """The order parameters of a finished scan (:class:`Branches`)."""
    spec = _spec(case)
    mesh = case.mesh(spec.resolution)
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for branch in ("up", "down"):
        last, drift = [], []
        for i in range(len(spec.noise)):
            stored = run.job_state(f"transition/{branch}/s{i:03d}")
            if stored is None or len(stored[0]) < 2:
                raise ValueError(f"{run.path}: the scan is not finished (transition/{branch}/s{i:03d})")
            r = [order_parameter(mesh.centres, rho * mesh.areas) for rho in stored[1][-2:]]
            last.append(r[-1])
            drift.append(abs(r[-1] - r[-2]))
        values[branch] = (np.array(last), np.array(drift))
    tokens = None
    if spec.tokens:
        rows = []
        for i in range(len(spec.noise)):
            key = f"transition/tokens/s{i:03d}"
            x = run.job_state(key)[1][-1] if run.is_complete(key) else None  # type: ignore[index]
            if x is None:
                raise ValueError(f"{run.path}: the scan is not finished ({key})")
            per = x.reshape(spec.members, spec.tokens, case.d)
            rows.append([np.linalg.norm(p.mean(axis=0)) for p in per])
        tokens = np.array(rows)
    sigmas = np.array(spec.noise)
    explicit = [kuramoto_order(case.model, s) for s in sigmas]
    return Branches(
        sigmas, values["up"][0], values["down"][0], values["up"][1], values["down"][1], tokens,
        critical_noise(case.model), None if explicit[0] is None else np.array(explicit, dtype=float),
    )  # fmt: skip


def format_branches(b: Branches) -> str:
    """The scan as a table, with the critical noise and the hysteresis."""
    lines = ["stationary order parameter r = |int x dmu| against the noise sigma:"]
    head = f"{'sigma':>9} {'r grid up':>10} {'r grid down':>11} {'|dr| last':>10}"
    head += f" {'r tokens':>9} {'sd':>7}" if b.tokens is not None else ""
    head += f" {'r explicit':>10}" if b.explicit is not None else ""
    lines.append(head)
    for i, s in enumerate(b.noise):
        mark = " " if b.settled[i] else "*"
        row = f"{s:9.4g} {b.up[i]:10.4f} {b.down[i]:11.4f} {max(b.drift_up[i], b.drift_down[i]):10.2e}{mark}"
        if b.tokens is not None:
            sd = b.tokens[i].std(ddof=1) if b.tokens.shape[1] > 1 else 0.0
            row += f" {b.tokens[i].mean():9.4f} {sd:7.4f}"
        if b.explicit is not None:
            row += f" {b.explicit[i]:10.4f}"
        lines.append(row)
    crit = "none (no growth rates, or no mode grows)" if b.critical is None else f"{b.critical:.4g}"
    lines.append(f"critical noise from linear theory: {crit}; hysteresis max |r_up - r_down| = "
                 f"{b.hysteresis:.3g} where both branches settled")  # fmt: skip
    if not b.settled.all():
        lines.append(f"* not settled (|dr| >= {SETTLED:g} over the last output interval): relaxation is slow "
                     "near the critical noise; a longer case.T settles it")  # fmt: skip
    return "\n".join(lines)
