"""Convergence studies: the numbers behind the project's claims.

Now: depth convergence on the circle. A deep Transformer (one residual
attention layer per step ``h = T / L``, then layer normalisation) tends to
the continuous-time flow of its tokens as the depth ``L`` grows, with error
O(h). :func:`depth_convergence` computes it, :func:`format_report` prints it,
and :func:`vlasov_tf.plots.plot_depth_convergence` draws it.

Design notes: docs/numerics.md §7 (the orders the tests check); docs/design.md §1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vlasov_tf.analysis.clusters import Clusters, merges, plateaus
from vlasov_tf.analysis.wasserstein import geodesic_distance, wasserstein, wasserstein_circle
from vlasov_tf.model import interaction_energy, zonal_beta
from vlasov_tf.runs.cases import Case
from vlasov_tf.runs.diagnostics import MAX_EXACT_PAIRS, run_jobs, shown_jobs
from vlasov_tf.runs.ensembles import PhaseMaps
from vlasov_tf.solvers.particles import solve_particles

__all__ = [
    "DEFAULT_LAYERS",
    "N_TIMES",
    "DepthConvergence",
    "check_case",
    "depth_convergence",
    "fitted_order",
    "format_report",
    "grid_against_deep",
    "observed_orders",
]

DEFAULT_LAYERS = (10, 20, 40, 80, 160, 320, 640)
#: Output times of the reference trajectory (for the figure and the energy check).
N_TIMES = 51

# Relative slack on the monotonicity of the energy along the reference: above
# its integration error (rtol 1e-10), far below the physical increments.
_ENERGY_RTOL = 1e-9


def observed_orders(h: np.ndarray, err: np.ndarray) -> np.ndarray:
    """(n,) orders ``log(e_{k-1} / e_k) / log(h_{k-1} / h_k)`` between successive rows; NaN first.

    For halved steps this is ``log2(e_{k-1} / e_k)``.
    """
    h, err = np.asarray(h, dtype=float), np.asarray(err, dtype=float)
    out = np.full(len(h), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = np.log(err[:-1] / err[1:]) / np.log(h[:-1] / h[1:])
    return out


def fitted_order(h: np.ndarray, err: np.ndarray) -> float:
    """Slope of the least-squares line of ``log err`` against ``log h`` (NaN with < 2 points)."""
    h, err = np.asarray(h, dtype=float), np.asarray(err, dtype=float)
    ok = (h > 0) & (err > 0) & np.isfinite(err)
    if np.unique(h[ok]).size < 2:
        return math.nan
    return float(np.polyfit(np.log(h[ok]), np.log(err[ok]), 1)[0])


@dataclass(frozen=True)
class DepthConvergence:
    """Results of :func:`depth_convergence`.
    Case: ``case`` (its name), ``n_tokens`` tokens, inverse temperature ``beta``, final time ``T``.
    Case: ``n_tokens`` tokens, inverse temperature ``beta``, final time ``T``.

    times : (n_times,) output times of the reference, ``linspace(0, T, n_times)``.
    reference : (n_times, N, 2) reference trajectory (DOP853, rtol ``ref_rtol``).
    weights : (N,) token weights (uniform).
    ref_error : bound on the max token error of the reference at T: its
        distance to a run with 100x looser tolerances (whose error dominates).
    ref_energy : (n_times,) interaction energy along the reference.
    layers : (n_L,) depths L, increasing; ``h = T / L``.
    w1 : (n_L,) W1 on the circle at T between the L-layer output and the reference.
    max_error : (n_L,) max over tokens of the arc length between the L-layer
        output and the reference at T (the tokens are labelled).
    energy : (n_L,) interaction energy of the L-layer output.
    seconds : wall time of each part (``reference``, ``reference_check``, ``layers``).
    """

    case: str
    n_tokens: int
    beta: float
    T: float
    seed: int
    ref_rtol: float
    times: np.ndarray
    reference: np.ndarray
    weights: np.ndarray
    ref_error: float
    ref_energy: np.ndarray
    layers: np.ndarray
    w1: np.ndarray
    max_error: np.ndarray
    energy: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def h(self) -> np.ndarray:
        """(n_L,) layer step sizes ``T / L``."""
        return self.T / self.layers

    @property
    def w1_orders(self) -> np.ndarray:
        return observed_orders(self.h, self.w1)

    @property
    def max_error_orders(self) -> np.ndarray:
        return observed_orders(self.h, self.max_error)

    @property
    def energy_increments(self) -> np.ndarray:
        """(n_times - 1,) ``E(t_{k+1}) - E(t_k)`` along the reference."""
        return np.diff(self.ref_energy)

    @property
    def energy_nondecreasing(self) -> bool:
        """Whether the reference energy never decreases (beyond round-off)."""
        return bool((self.energy_increments >= -_ENERGY_RTOL * np.abs(self.ref_energy[1:])).all())


def check_case(n_tokens: int, layers: Sequence[int], n_times: int = N_TIMES) -> None:
    """Raise ``ValueError`` with a readable message if the study's parameters are unusable."""
    if int(n_tokens) != n_tokens or n_tokens < 2:
        raise ValueError(f"the number of tokens N must be an integer >= 2; got {n_tokens}")
    if len(layers) == 0 or any(int(L) != L or L < 1 for L in layers):
        raise ValueError(f"the depths L must be positive integers; got {list(layers)}")
    if int(n_times) != n_times or n_times < 2:
        raise ValueError(f"the reference needs at least 2 output times; got {n_times}")


def study_beta(case: Case) -> float:
    """The beta of a case the depth study can take: on the circle, one block with Q = K = V = I
    (:func:`~vlasov_tf.model.zonal_beta`); else ``ValueError`` naming what is not."""
    if case.geometry != "circle":
        raise ValueError(f"case {case.name}: the depth study is on the circle, not the {case.geometry}")
    beta = zonal_beta(case.schedule.blocks[0][1]) if len(case.schedule.blocks) == 1 else None
    if beta is None:
        raise ValueError(
            f"case {case.name}: the depth study needs one block with Q = K = V = I and no perceptron "
            "(the interaction energy it checks is that model's)"
        )
    return beta


def depth_convergence(
    case: Case,
    n_tokens: int = 2000,
    layers: Sequence[int] = DEFAULT_LAYERS,
    *,
    ref_rtol: float = 1e-10,
    n_times: int = N_TIMES,
    seed: int = 0,
    progress: bool = False,
) -> DepthConvergence:
    """Errors at time T of L-layer Transformers against the continuous flow of a circle case.

    Tokens: ``n_tokens`` draws of the case's initial measure (``default_rng(seed)``), uniform
    weights. Model: the case's schedule, one block with a zonal kernel (:func:`study_beta`), on
    [0, T]. Reference: DOP853 at relative tolerance ``ref_rtol``, stored at ``n_times`` equally
    spaced times; its error is bounded by a second run at 100x that tolerance. Each depth L in
    ``layers`` is the Transformer step (explicit Euler plus normalisation) with h = T / L.
    """
    check_case(n_tokens, layers, n_times)
    beta, T, schedule = study_beta(case), case.T, case.schedule
    layers_arr = np.unique(np.asarray(layers, dtype=int))
    x0 = case.initial.sample(int(n_tokens), np.random.default_rng(seed))
    weights = np.full(len(x0), 1.0 / len(x0))
    times = np.linspace(0.0, T, n_times)
    seconds: dict[str, float] = {}

    tic = time.perf_counter()
    ref = solve_particles(schedule, x0, weights, method="adaptive", t_eval=times, progress=progress,
                          rtol=ref_rtol, atol=1e-2 * ref_rtol)  # fmt: skip
    seconds["reference"] = time.perf_counter() - tic

    tic = time.perf_counter()
    coarse = solve_particles(schedule, x0, weights, method="adaptive", progress=progress,
                             rtol=1e2 * ref_rtol, atol=ref_rtol)  # fmt: skip
    ref_error = float(geodesic_distance(coarse.final, ref.final).max())
    seconds["reference_check"] = time.perf_counter() - tic

    tic = time.perf_counter()
    w1, max_error, energy = [], [], []
    for L in layers_arr:
        out = solve_particles(schedule, x0, weights, method="layers", steps=int(L), progress=progress).final
        w1.append(wasserstein_circle(out, weights, ref.final, weights))
        max_error.append(float(geodesic_distance(out, ref.final).max()))
        energy.append(interaction_energy(out, weights, beta))
    seconds["layers"] = time.perf_counter() - tic

    ref_energy = np.array([interaction_energy(x, weights, beta) for x in ref.positions])
    return DepthConvergence(
        case=case.name,
        n_tokens=int(n_tokens),
        beta=float(beta),
        T=float(T),
        seed=int(seed),
        ref_rtol=float(ref_rtol),
        times=times,
        reference=ref.positions,
        weights=weights,
        ref_error=ref_error,
        ref_energy=ref_energy,
        layers=layers_arr,
        w1=np.array(w1),
        max_error=np.array(max_error),
        energy=np.array(energy),
        seconds=seconds,
    )


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------


def _fmt_order(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.3f}"


def format_report(res: DepthConvergence) -> str:
    """The table and summary lines printed by ``vlasov-tf particles``."""
    lines = [
        f"depth convergence on the circle, case {res.case}: N = {res.n_tokens} tokens (seed {res.seed}), "
        f"beta = {res.beta:g}, T = {res.T:g}",
        f"reference: DOP853 at rtol {res.ref_rtol:.0e}, {len(res.times)} output times; "
        f"its max token error at T is below {res.ref_error:.1e} (distance to rtol {100 * res.ref_rtol:.0e})",
        "",
        f"{'L':>5} {'h':>9} {'W1(T)':>11} {'order':>6} {'max token err':>14} {'order':>6} {'E(T)':>14}",
    ]
    for k, L in enumerate(res.layers):
        lines.append(
            f"{L:>5d} {res.h[k]:>9.6f} {res.w1[k]:>11.4e} {_fmt_order(res.w1_orders[k]):>6} "
            f"{res.max_error[k]:>14.4e} {_fmt_order(res.max_error_orders[k]):>6} {res.energy[k]:>14.10f}"
        )
    lines.append(f"{'ref':>5} {'':>9} {'':>11} {'':>6} {'':>14} {'':>6} {res.ref_energy[-1]:>14.10f}")
    lines += [
        "",
        f"fitted order (least squares of log error vs log h, expected 1): "
        f"W1 {fitted_order(res.h, res.w1):.3f}, max token error {fitted_order(res.h, res.max_error):.3f}",
    ]
    inc = res.energy_increments
    verdict = "non-decreasing" if res.energy_nondecreasing else "NOT non-decreasing"
    lines.append(
        f"energy along the reference: E(0) = {res.ref_energy[0]:.10f} -> E(T) = {res.ref_energy[-1]:.10f}, "
        f"{verdict} at the {len(res.times)} output times (smallest increment {inc.min():.3e})"
    )
    smallest = float(res.max_error.min())
    lines.append(
        f"reference error / smallest layer error = {res.ref_error / smallest:.1e}"
        + (" (reference converged)" if res.ref_error < 1e-2 * smallest else " (REFERENCE NOT CONVERGED)")
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# cross-validation tables (from a run file of vlasov_tf.runs.runner.run_case)
# ---------------------------------------------------------------------------

#: Expected convergence rates of W1 at time T: in the depth L (the Transformer step is
#: explicit Euler), in the number of tokens N (W1 between an empirical measure and its
#: law on a 1- or 2-dimensional manifold, up to logarithms), and in the mesh size h
#: (the finite-volume scheme's order).
EXPECTED_RATES = {"layers": 1.0, "tokens": 0.5, "grid": 2.0}


@dataclass(frozen=True)
class RateTable:
    """One convergence table: a distance at time T against a parameter, with the fitted rate.

    ``x`` are L, N, or mesh sizes h; ``error`` the distances (the mean over the samples where
    there are several); ``rate`` the fitted slope of ``-log error`` against ``log x`` (``log
    error`` against ``log h`` for the grid; NaN with fewer than two points), ``expected`` the
    theoretical one, ``label`` says what is compared with what and ``metric`` by which distance.
    ``spread``: the standard deviation over ``samples`` independent token sets per row (None:
    one sample); ``se``: the sliced distance's standard error over its directions (None: exact).
    """

    name: str
    label: str
    x: np.ndarray
    error: np.ndarray
    rate: float
    expected: float
    metric: str = "W1"
    spread: np.ndarray | None = None
    samples: int = 1
    se: np.ndarray | None = None


def _final(diag: dict[str, np.ndarray], key: str) -> float:
    rows = diag[key]
    return float(rows[np.argmax(rows[:, 0]), 1])


def crossval_tables(case, run) -> list[RateTable]:
    """Rate tables at the final time from the diagnostics of a finished run.

    - layers: for the N with the most depths (the largest such), the distance of N tokens after
      L layers to the same tokens under the continuous flow, against L (``w1_ref``);
    - tokens: the distance of the continuous-flow tokens to the finest grid against N, averaged
      over ``particles.samples`` independent token sets (circle: exact W1; sphere: the sliced
      W1 with its standard error);
    - grid: each coarser grid against the finest one summed into its cells (nested grids),
      in L1 and in W1 (circle: exact; sphere: sliced).
    """
    sphere = case.geometry == "sphere"
    dist = "sw1_grid" if sphere else "w1_grid"
    metric = "SW1" if sphere else "W1"
    diag = {name: run.diagnostics(name) for name in ("w1_ref", dist, "sw1_grid_se", "l1_grid")}
    tables = []
    jobs = run_jobs(run)
    particles = [j for j in jobs if j.kind == "particles"]
    if particles:
        # The depth table at the N with the most depths run (the largest such N): the full study
        # leaves the deepest runs out on its largest N.
        done = [j for j in particles if j.layers is not None and j.key in diag["w1_ref"]]
        counts: dict[int, int] = {}
        for j in done:
            counts[j.tokens or 0] = counts.get(j.tokens or 0, 0) + 1
        n_max = max(counts, key=lambda n: (counts[n], n)) if counts else 0
        deep = [j for j in done if j.tokens == n_max]
        if deep:
            L = np.array([j.layers for j in deep], dtype=float)
            w = np.array([_final(diag["w1_ref"], j.key) for j in deep])
            bound = sphere and n_max**2 > MAX_EXACT_PAIRS
            tables.append(
                RateTable(
                    "layers",
                    f"{'W1 <= coupling' if bound else 'W1'}(L layers, continuous flow), N = {n_max}",
                    L,
                    w,
                    -fitted_order(L, w),
                    EXPECTED_RATES["layers"],
                    metric="W1 bound" if bound else "W1",
                )
            )
        refs: dict[int, list] = {}
        for j in particles:
            if j.layers is None and j.key in diag[dist]:
                refs.setdefault(j.tokens or 0, []).append(j)
        if refs:
            N = np.array(sorted(refs), dtype=float)
            vals = [np.array([_final(diag[dist], j.key) for j in refs[n]]) for n in sorted(refs)]
            samples = min(len(v) for v in vals)
            w = np.array([v.mean() for v in vals])
            spread = np.array([v.std(ddof=1) for v in vals]) if samples > 1 else None
            se = None
            if sphere:
                se_of = [[_final(diag["sw1_grid_se"], j.key) for j in refs[n]] for n in sorted(refs)]
                se = np.array([np.mean(v) for v in se_of])
            label = f"{metric}(N tokens under the continuous flow, finest grid)"
            if samples > 1:
                label += f", mean of {samples} samples"
            rate = -fitted_order(N, w)
            # Quantile tokens (deterministic) approximate their law to O(1/N), not O(N^-1/2).
            expected = 1.0 if case.particles.sampling == "quantiles" else EXPECTED_RATES["tokens"]
            tables.append(RateTable("tokens", label, N, w, rate, expected, metric, spread, samples, se))
    grids = [j for j in jobs if j.kind == "grid"]
    for name, key, what in (("grid_l1", "l1_grid", "L1"), ("grid", dist, metric)):
        done = [j for j in grids if j.key in diag[key]]
        if done:
            h = np.array([case.mesh(j.resolution).h for j in done])
            w = np.array([_final(diag[key], j.key) for j in done])
            label = f"{what}(grid, finest grid summed into its cells)"
            rate = fitted_order(h, w)
            tables.append(RateTable(name, label, h, w, rate, EXPECTED_RATES["grid"], metric=what))
    return tables


def grid_against_deep(case, run) -> str | None:
    """One line: the finest grid against the deepest Transformer on the most tokens, at T."""
    sphere = case.geometry == "sphere"
    dist = "sw1_grid" if sphere else "w1_grid"
    diag = run.diagnostics(dist)
    deep = [j for j in run_jobs(run) if j.kind == "particles" and j.layers is not None and j.key in diag]
    if not deep:
        return None
    job = max(deep, key=lambda j: (j.tokens, j.layers))
    metric = "SW1" if sphere else "W1"
    value = _final(diag, job.key)
    line = f"{metric}(grid, deep Transformer) at T, N = {job.tokens}, L = {job.layers}: {value:.4e}"
    ref = f"particles/N{job.tokens}_ref"
    if ref in diag:
        line += f" (the same tokens under the continuous flow: {_final(diag, ref):.4e})"
    return line


def cluster_jobs(case, run) -> list:
    """The jobs whose clusters a study shows: the finest grid, then the continuous flow and the
    deepest Transformer of the most tokens (the first sample)."""
    shown = shown_jobs(run)
    return shown.grids[-1:] + ([shown.ref] if shown.ref else []) + shown.deep[-1:]


def cluster_history(run, key: str) -> tuple[np.ndarray, list[Clusters]]:
    """(times, clusters at each) of job ``key`` as stored while it ran."""
    times, rows = run.table(key, "clusters")
    return times, [Clusters.from_table(r) for r in rows]


def format_clusters(case, run) -> str:
    """The clusters over time of :func:`cluster_jobs` as text: counts, plateaus, merges, masses at T."""
    spec = case.clusters
    lines = [
        f"clusters (linking distance {case.linking_distance:.3g} = {spec.scale:g} beta^-1/2, "
        f"lowest-density {spec.trim:.0%} of the mass left out, clusters of >= {spec.min_mass:.0%}):"
    ]
    for job in cluster_jobs(case, run):
        times, history = cluster_history(run, job.key)
        if not len(times):
            continue
        counts = np.array([c.count for c in history])
        steps = ", ".join(f"{c} on [{a:g}, {b:g}]" for c, a, b in plateaus(times, counts))
        lines.append(f"  {job.key}: {steps}")
        for m in merges(times, history, sphere=case.sphere):
            lines.append(f"    merge at t = {m.t:g}: clusters {', '.join(map(str, m.before))} -> {m.after}")
        last = history[-1]
        masses = " ".join(f"{x:.3f}" for x in last.masses)
        rest = f"unclustered {last.unclustered:.3f}"
        lines.append(f"    at t = {times[-1]:g}: {last.count} clusters, masses {masses} ({rest})")
    return "\n".join(lines)


def format_phase(case, maps: PhaseMaps, columns: int = 6) -> str:
    """A sweep's maps as text (what ``vlasov-tf sweep`` prints): for each beta, the mean number
    of clusters (with its standard deviation over the members) at a few times, and the fraction
    of close pairs at T."""
    spec = case.sweep
    picks = sorted({round(i) for i in np.linspace(0, len(maps.times) - 1, min(columns, len(maps.times)))})
    head = "".join(f"{'t = ' + format(maps.times[i], 'g'):>14}" for i in picks)
    lines = [
        f"sweep: {maps.members} members a beta, N = {case.particles.tokens[0]}, d = {case.d}, "
        f"parameters {spec.parameters}" + (f" drawn again every {spec.redraw:g}" if spec.redraw else ""),
        f"number of clusters (mean +- sd over the members; linking distance {case.clusters.scale:g} "
        f"beta^-1/2), and close pairs (< {spec.close:g} rad) at T:",
        f"{'beta':>10}{head}{'close at T':>12}",
    ]
    for b, beta in enumerate(maps.betas):
        cells = "".join(f"{maps.clusters_mean[b, i]:>7.2f} +-{maps.clusters_sd[b, i]:>4.1f}" for i in picks)
        lines.append(f"{beta:>10.4g}{cells}{maps.close_mean[b, -1]:>12.3f}")
    return "\n".join(lines)


def format_tables(tables: list[RateTable]) -> str:
    """The rate tables as text (what ``vlasov-tf study`` prints)."""
    head = {"layers": "L", "tokens": "N", "grid": "h", "grid_l1": "h"}
    lines = []
    for tab in tables:
        lines.append(f"{tab.label}:")
        extra = ""
        if tab.spread is not None:
            extra += f" {'sample sd':>10}"
        if tab.se is not None:
            extra += f" {'sliced se':>10}"
        lines.append(f"  {head[tab.name]:>10} {tab.metric + '(T)':>11}{extra} {'order':>6}")
        orders = observed_orders(1 / tab.x if not tab.name.startswith("grid") else tab.x, tab.error)
        for i, (x, w, o) in enumerate(zip(tab.x, tab.error, orders, strict=True)):
            xs = f"{x:.4g}" if tab.name.startswith("grid") else f"{int(x)}"
            cols = f"  {xs:>10} {w:>11.4e}"
            if tab.spread is not None:
                cols += f" {tab.spread[i]:>10.2e}"
            if tab.se is not None:
                cols += f" {tab.se[i]:>10.2e}"
            lines.append(f"{cols} {_fmt_order(o):>6}")
        if np.isfinite(tab.rate):
            lines.append(f"  fitted rate {tab.rate:.2f} (expected {tab.expected:g})")
        else:
            lines.append(f"  one point: no rate (expected {tab.expected:g}; add resolutions to fit one)")
        lines.append("")
    return "\n".join(lines)


def full_study(case):
    """``case`` with the full study's ladders (about an hour on 2 cores, see the README).

    Circle: N = 1e2 ... 1e5 tokens, L = 10 ... 1e4 layers, M = 256 ... 16384 cells. Sphere:
    N = 1e2 ... 1e6, L = 10 ... 1e4, the nested levels 0 ... 5 (1.1e6 cells). Deep runs with
    ``N L`` above :data:`~vlasov_tf.runs.runner.MAX_DEEP_TOKEN_LAYERS` are left out (sphere: N = 1e6
    runs L <= 100, N = 1e5 L <= 1000); every N keeps its continuous-flow references. The
    references are RK4 with ``ceil(100 T)`` steps rather than DOP853 (which takes a quarter of an
    hour per sample on 1e6 tokens): on 2000 tokens of the shipped sphere and circle cases they
    are within 1e-10 and 8e-10 of DOP853 at rtol 1e-11, far below the depth errors at L = 1e4.
    """
    from dataclasses import replace

    tokens = (100, 1000, 10_000, 100_000)
    if case.geometry == "sphere":
        tokens = (*tokens, 1_000_000)
    steps = math.ceil(100 * case.T)
    particles = replace(case.particles, tokens=tokens, layers=(10, 100, 1000, 10_000), reference_steps=steps)
    grid = case.grid
    if grid is not None:
        res = (256, 1024, 4096, 16384) if case.geometry == "circle" else (0, 1, 2, 3, 4, 5)
        grid = replace(grid, resolutions=res)
    return replace(case, particles=particles, grid=grid)


# ---------------------------------------------------------------------------
# stability of the solution map mu_0 -> mu_T
# ---------------------------------------------------------------------------


def field_lipschitz(params) -> tuple[float, float]:
    """(Lip_x, Lip_mu) of the attention field of one block on the unit sphere (chordal metric).

    C = Lip_x + Lip_mu gives W1(mu_t, nu_t) <= exp(C t) W1(mu_0, nu_0) for that block.

    Dobrushin's coupling argument: follow both flows from an optimal coupling; then
    |x' - y'| <= Lip_x |x - y| + Lip_mu W1(mu, nu), so C = Lip_x + Lip_mu with, on the
    unit sphere (|y| = 1), k(y) = exp(<B x, y>) in [e^-|B|, e^|B|]:

    - Lip_x: grad_x A = Cov_pi(y) B with |Cov| <= 1, and grad_x (P_x u) = P_x grad u
      - <x, u> I - x u^T, so Lip_x <= sum_h |W_h V_h| (|B_h| + 2) + |W| (3 |U| + 2 |b|)
      (SA); for USA |A| <= e^|B| and |grad A| <= |B| e^|B|;
    - Lip_mu: A[mu] - A[nu] = int (y - A[nu]) k d(mu - nu) / Z_mu, a Lipschitz function
      of y with constant e^|B| (1 + 2 |B|) over Z_mu >= e^-|B| (SA): e^{2|B|} (1 + 2 |B|);
      USA: e^|B| (1 + |B|).
    Norms are spectral. The bound is crude (it is exponential in beta).
    """
    lip_x = lip_mu = np.float64(0.0)
    for h in params.heads:
        wv, b = np.linalg.norm(h.output, 2), np.linalg.norm(h.B, 2)
        if params.attention == "SA":
            lip_x += wv * (b + 2)
            lip_mu += wv * np.exp(2 * b) * (1 + 2 * b)
        else:
            lip_x += wv * np.exp(b) * (b + 2)
            lip_mu += wv * np.exp(b) * (1 + b)
    if params.perceptron is not None:
        p = params.perceptron
        lip_x += np.linalg.norm(p.W, 2) * (3 * np.linalg.norm(p.U, 2) + 2 * np.linalg.norm(p.b))
    return float(lip_x), float(lip_mu)


@dataclass(frozen=True)
class LipschitzEstimate:
    """Ratios W1(mu_T, nu_T) / W1(mu_0, nu_0) over perturbed pairs, and the Gronwall bound.

    ``log10_bound`` is log10 of (pi / 2) exp(sum_k C_k tau_k): the pi / 2 converts the
    chordal bound to geodesic W1 on the sphere.
    """

    ratios: np.ndarray
    n_tokens: int
    eps: float
    log10_bound: float


def lipschitz_estimate(case, n_tokens: int = 200, pairs: int = 8, eps: float = 1e-2) -> LipschitzEstimate:
    """Estimate the W1-Lipschitz constant of mu_0 -> mu_T with the particle reference flow.

    mu_0: ``n_tokens`` tokens of the case's initial measure; nu_0: every token moved by
    ``eps`` along its own random tangent direction (a different draw per pair). Both
    evolve by the continuous-time flow (DOP853); the ratio of W1 at T to W1 at 0 (same
    geometry and method as the cross-validation) is one sample of the constant.
    """
    x0, w = case.initial_tokens(n_tokens)
    sphere = case.geometry != "euclidean"
    rng = np.random.default_rng([case.particles.seed, n_tokens, 7])
    ratios = []
    ref = solve_particles(case.schedule, x0, w, method="adaptive", sphere=sphere).final
    for _ in range(pairs):
        xi = rng.standard_normal(x0.shape)
        if sphere:
            xi -= np.sum(xi * x0, axis=1, keepdims=True) * x0
        xi /= np.linalg.norm(xi, axis=1, keepdims=True)
        y0 = x0 + eps * xi
        if sphere:
            y0 /= np.linalg.norm(y0, axis=1, keepdims=True)
        yT = solve_particles(case.schedule, y0, w, method="adaptive", sphere=sphere).final
        d0 = wasserstein(x0, w, y0, w, geometry=case.geometry)[0]
        dT = wasserstein(ref, w, yT, w, geometry=case.geometry)[0]
        ratios.append(dT / d0)
    c_t = sum(sum(field_lipschitz(p)) * tau for tau, p in case.schedule.blocks)
    return LipschitzEstimate(np.array(ratios), n_tokens, eps, float(np.log10(np.pi / 2) + c_t / np.log(10)))


def format_lipschitz(est: LipschitzEstimate) -> str:
    r = est.ratios
    return (
        f"Lipschitz constant of mu_0 -> mu_T in W1 ({len(r)} pairs, N = {est.n_tokens}, "
        f"eps = {est.eps:g}): max ratio {r.max():.3g}, mean {r.mean():.3g}; "
        f"Gronwall bound 10^{est.log10_bound:.1f}"
    )
