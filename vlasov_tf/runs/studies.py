"""Convergence studies of a run file: the numbers behind the project's claims.

Observed and fitted orders; the rate tables of a cross-validation run in depth L, tokens N and
mesh size h (:func:`crossval_tables`, with their expected rates), the grid against the deepest
Transformer, the clusters and phase maps as printed, and the ladders of ``study --full``. The
depth study of the particles alone is :mod:`vlasov_tf.runs.depth_study`; the stability of the
solution map :mod:`vlasov_tf.runs.stability`.

Design notes: docs/numerics.md §7 (the orders the tests check); docs/design.md §1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlasov_tf.analysis.clusters import Clusters, merges, plateaus
from vlasov_tf.runs.diagnostics import MAX_EXACT_PAIRS, run_jobs, shown_jobs
from vlasov_tf.runs.ensembles import PhaseMaps

__all__ = [
    "EXPECTED_RATES",
    "NOISY_LAYERS_RATE",
    "QUADRATURE_GRID_RATE",
    "RateTable",
    "cluster_history",
    "cluster_jobs",
    "crossval_tables",
    "fitted_order",
    "format_clusters",
    "format_order",
    "format_phase",
    "format_tables",
    "full_study",
    "grid_against_deep",
    "observed_orders",
]


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


def format_order(x: float) -> str:
    """An observed order for a table: three decimals, or "-" where there is none."""
    return "-" if not np.isfinite(x) else f"{x:.3f}"


# ---------------------------------------------------------------------------
# cross-validation tables (from a run file of vlasov_tf.runs.runner.run_case)
# ---------------------------------------------------------------------------

#: Expected convergence rates of W1 at time T: in the depth L (the Transformer step is
#: explicit Euler), in the number of tokens N (W1 between an empirical measure and its
#: law on a 1- or 2-dimensional manifold, up to logarithms), and in the mesh size h
#: (the finite-volume scheme's order).
EXPECTED_RATES = {"layers": 1.0, "tokens": 0.5, "grid": 2.0}
#: With noise the depths' tokens follow one Brownian path (coupled kicks), and their distance to
#: the reference's is the Euler-Maruyama scheme's pathwise (strong) error: order 1/2.
NOISY_LAYERS_RATE = 0.5
#: The grid's rate with ``field_measure = "quadrature"`` and no noise: the field is then a third-order
#: quadrature too, and the quadratic transport sets the order (with noise the diffusion is second order).
QUADRATURE_GRID_RATE = 3.0


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
            noisy = case.model.noise > 0
            tables.append(
                RateTable(
                    "layers",
                    f"{'W1 <= coupling' if bound else 'W1'}(L layers, {case.reference}), N = {n_max}",
                    L,
                    w,
                    -fitted_order(L, w),
                    NOISY_LAYERS_RATE if noisy else EXPECTED_RATES["layers"],
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
            label = f"{metric}(N tokens under the {case.reference}, finest grid)"
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
            third = case.grid.field_measure == "quadrature" and case.model.noise == 0
            expected = QUADRATURE_GRID_RATE if third else EXPECTED_RATES["grid"]
            tables.append(RateTable(name, label, h, w, rate, expected, metric=what))
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
        line += f" (the same tokens under the {case.reference}: {_final(diag, ref):.4e})"
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
        f"clusters (linking distance {case.linking_distance:.3g} = {spec.scale:g} "
        f"{'beta^-1/2' if case.model.width is None else 'kernel widths'}, "
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
            lines.append(f"{cols} {format_order(o):>6}")
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

    tokens: tuple[int, ...] = (100, 1000, 10_000, 100_000)
    if case.geometry == "sphere":
        tokens = (*tokens, 1_000_000)
    steps = math.ceil(100 * case.T)
    particles = replace(case.particles, tokens=tokens, layers=(10, 100, 1000, 10_000), reference_steps=steps)
    grid = case.grid
    if grid is not None:
        res = (256, 1024, 4096, 16384) if case.geometry == "circle" else (0, 1, 2, 3, 4, 5)
        grid = replace(grid, resolutions=res)
    return replace(case, particles=particles, grid=grid)


