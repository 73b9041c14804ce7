"""Benchmark of the attention field's kernel sums: every method side by side, on S^2 and S^1.

What it measures
----------------
For N tokens (seeded random points uniform on the sphere, uniform weights 1/N) and each
inverse temperature beta it evaluates the softmax-attention velocity at the tokens themselves
(queries = tokens, N = M, N * N query-key pairs),
``P_x (sum_j w_j e^{<B x, y_j>} V y_j / sum_j w_j e^{<B x, y_j>})``, for the problems
(``--problems``, default all four):

* ``sphere-general``: S^2 (d = 3), a general head ``B = beta K^T Q``, values ``V y`` (seeded Q, K,
  V with entries N(0, 1/d), so that ``<Q x, K y>`` is O(1));
* ``sphere-zonal``: S^2, Q = K = V = I: ``B = beta I``, values ``y``;
* ``circle-zonal``: S^1 (d = 2), ``B = beta I``, values ``y``;
* ``circle-general``: S^1, ``B = beta K^T Q``, values ``V y`` as for the sphere.

by the methods (``--methods``; a method is left out of the problems it does not apply to):

* ``naive``: the textbook dense numpy formula (:func:`naive_velocity`: the full N x N score
  matrix, row max subtracted, exp, two products); general problems only, and only where its
  three N x N temporaries fit in ``--naive-limit-gib``.
* ``dense``: :func:`vlasov_tf.kernels.kernel_sums` with ``method="dense"`` (blocked,
  log-sum-exp, the fused numba engine on all threads).
* ``taylor``: ``method="taylor"`` (truncated Taylor features, tol ``--tol``), linear in N,
  feasible for small beta only; general problems only.
* ``spectral``: ``method="spectral"`` (harmonic expansions: ducc0 on S^2, finufft on S^1, zonal
  and general B, per-row error bound and dense fix-up; tol ``--tol``).
* ``harmonics``: the previous method, the hand-written spherical-harmonic tables of
  ``scripts/legacy_harmonics.py`` (zonal heads on S^2 only: ``sphere-zonal``), kept as the
  baseline; its degree selection fails for beta of about 10.9 to 12.6, printed as ``failed: ...``.
* ``keops``: pykeops' LazyTensor softmax reduction, when ``import pykeops`` works.

Columns: problem, N (= M), beta, method, time (best of ``--repeats`` below 1 s, one run above),
pairs/s (N^2 / time), max relative error of the field against the dense sums on
``--check-queries`` random rows (``max |v - v_dense| / max |v_dense|``; the dense row itself is
checked against naive: on every row where naive ran, else on the check rows), peak traced
memory (tracemalloc: numpy's allocations, not BLAS's; ``n/a (C++)`` for spectral, whose ducc0
and finufft buffers tracemalloc does not see) and the speed-up over dense. After each
(problem, N, beta) an ``auto`` line says what ``kernel_sums(method="auto")`` picks
(:func:`vlasov_tf.kernels.choose_method`) and the cost estimates of
:func:`vlasov_tf.kernels.method_costs` relative to dense. A run whose estimate exceeds
``--max-seconds`` is printed as ``skipped (est. X s)`` and not run; the estimate is the
method's cost (``method_costs``; the legacy harmonics: its own ``harmonic_cost``; naive and keops:
N^2) times seconds per cost unit measured on the same problem at a smaller run (else on another
problem, else the dense rate, else a first guess).

Then: the hardware (np.exp throughput and GEMM flops per core, the best pairs/s one exp plus
``2 (d + 2)`` flops per pair allows, and how close the dense path comes at N = 1e4); a cost
model check (for each measured (problem, N, beta): the fastest of dense/taylor/spectral, what
"auto" picks, and the picked method's time over the fastest); and the verdicts:

* dense >= 10x naive at N = 1e4, each general problem and beta (same run);
* peak memory < 2 GiB at N = 1e5 (dense);
* general head (non-zonal B, beta = 10) on S^2, N = 1e5: spectral >= 20x faster than dense
  (same run; needs 1e5 in ``--sizes`` and 10 in ``--betas``);
* particles, one layer, N = 1e6 tokens, beta = 10, Q = K = V = I: <= 2 s on S^2, <= 0.5 s on the
  circle: ``solve_particles(Schedule.constant(Params.identity(d, 10), 0.1), x, None,
  method="layers", steps=1)`` with its default ``field_method="auto"`` (which must pick spectral;
  the line says which sums ran), timed once per geometry of ``--problems`` when 1e6 is among
  ``--sizes``.

``--threads`` sets ``VLASOV_TF_NUM_THREADS`` before the package is imported. Notes: the legacy
harmonics' memory is traced (numpy) except its per-thread scratch buffers, which are kept between
calls. finufft's OpenMP threads spin-waited by default and slowed the circle's spectral rows that
ran after the sphere's up to 10x: :mod:`vlasov_tf.kernels.threads` now sets
``OMP_WAIT_POLICY=PASSIVE`` (unless set).

Run it from the repository root (the default, N up to 1e6 with runs over ``--max-seconds``
skipped, takes several minutes on 2 cores)::

    .venv/bin/python scripts/bench_field.py
    .venv/bin/python scripts/bench_field.py --sizes 1000 10000 --betas 1 10 --max-seconds 5
    .venv/bin/python scripts/bench_field.py --problems sphere-general --sizes 100000 --betas 10 \\
        --methods dense spectral --max-seconds 60
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from benchlib import peak_mib

GIB = 1024.0**3
SPEEDUP_TARGET = 10.0
SPEEDUP_N = 10_000
MEMORY_TARGET_GIB = 2.0
MEMORY_N = 100_000
SPECTRAL_TARGET = 20.0
SPECTRAL_N = 100_000
SPECTRAL_BETA = 10.0
LAYER_N = 1_000_000
LAYER_BETA = 10.0
LAYER_TARGETS = {3: 2.0, 2: 0.5}  # seconds, by dimension (S^2, S^1)
GEOMETRY = {3: "S^2", 2: "the circle"}
SOLVER_TOL = 1e-10  # the solvers' per-row tolerance of field_method="auto"
METHODS = ("naive", "dense", "taylor", "spectral", "harmonics", "keops")
# name: (d, general head)
PROBLEMS = {
    "sphere-general": (3, True),
    "sphere-zonal": (3, False),
    "circle-zonal": (2, False),
    "circle-general": (2, True),
}
# Methods the choice ("auto") picks from, and those whose cost comes from method_costs.
CHOICES = ("dense", "taylor", "spectral")
# Seconds per cost unit assumed before anything comparable has run: naive and keops per pair, the
# legacy harmonics per unit of its harmonic_cost (a dense term), the others per method_costs unit
# (one thread of the fused dense kernel does ~31 units per pair in ~0.55 ns).
_FIRST_GUESS = {"naive": 1e-8, "keops": 1e-9, "harmonics": 1e-9, "unit": 1.8e-11}
# Picked / fastest time above this is flagged in the cost model check.
_PICK_SLACK = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000], help="N = M")
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="inverse temperatures")
    p.add_argument(
        "--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS), help="problems to run"
    )
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to run")
    p.add_argument("--tol", type=float, default=1e-10, help="tolerance of taylor, spectral and auto")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats for runs under 1 s")
    p.add_argument("--max-seconds", type=float, default=30.0, help="skip runs estimated above this")
    p.add_argument("--threads", type=int, default=None, help="sets VLASOV_TF_NUM_THREADS")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--naive-limit-gib", type=float, default=4.0, help="skip naive above this N x N footprint")
    p.add_argument("--check-queries", type=int, default=500, help="rows on which errors are measured")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def sphere_points(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) points uniform on S^{d-1}."""
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_qkv(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """General Q, K, V with entries N(0, 1/d): ``<Q x, K y>`` is O(1) on the sphere."""
    scale = 1.0 / np.sqrt(d)
    return tuple(scale * rng.standard_normal((d, d)) for _ in range(3))  # type: ignore[return-value]


def problem_qkv(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q, K, V of a problem: seeded N(0, 1/d) entries (general) or identities (zonal)."""
    d, general = PROBLEMS[name]
    if general:
        return random_qkv(d, np.random.default_rng([seed, d]))
    return np.eye(d), np.eye(d), np.eye(d)


def naive_velocity(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    beta: float,
    points: np.ndarray,
    weights: np.ndarray,
    queries: np.ndarray,
) -> np.ndarray:
    """Dense textbook softmax attention, projected on the tangent space at each query."""
    S = (queries @ Q.T) @ (points @ K.T).T * beta  # (M, N) scores beta <Q x_i, K y_j>
    S = S - S.max(axis=1, keepdims=True)
    E = np.exp(S)
    E = E * weights[None, :]
    A = (E @ (points @ V.T)) / E.sum(axis=1, keepdims=True)  # (M, d) attention averages of V y
    return A - np.sum(A * queries, axis=1, keepdims=True) * queries  # P_x A


def naive_gib(n_query: int, n_key: int) -> float:
    """Peak of the naive method's N x N temporaries: S, E and E * w live at once (float64)."""
    return 3.0 * n_query * n_key * 8 / GIB


def field(shift: np.ndarray, sums: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``P_x`` of the softmax average ``sums[:, :-1] / sums[:, -1]`` (the shift cancels)."""
    a = sums[:, :-1] / sums[:, -1:]
    return a - np.sum(a * queries, axis=1, keepdims=True) * queries


def sums_field(method: str, tol: float, z, queries, points, weights, vals) -> np.ndarray:
    """The field at ``queries`` (scores ``z``) from :func:`vlasov_tf.kernels.kernel_sums` by ``method``."""
    from vlasov_tf.kernels import kernel_sums

    return field(*kernel_sums(z, points, weights, vals, method=method, tol=tol), queries)


def harmonics_field(beta: float, points, weights) -> np.ndarray:
    """The zonal field (B = beta I, values y) by the legacy :func:`legacy_harmonics.harmonic_sums`.

    With its default truncation tolerance (1e-15 of ``e^beta sum w``), as the solvers called it:
    its per-row guarantee (1e-10) is fixed, and a looser truncation only sends more rows to
    the dense fix-up (every row of a uniform measure at beta >= 10 with 1e-10).
    """
    from legacy_harmonics import harmonic_sums

    eye = beta * np.eye(points.shape[1])
    return field(*harmonic_sums(eye, points, points, weights, points), points)


def keops_field(z: np.ndarray, points: np.ndarray, weights: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """pykeops' symbolic softmax-weighted sum (log-sum-exp stabilised inside KeOps)."""
    from pykeops.numpy import LazyTensor

    zi = LazyTensor(np.ascontiguousarray(z)[:, None, :])
    yj = LazyTensor(np.ascontiguousarray(points)[None, :, :])
    lw = LazyTensor(np.log(weights)[None, :, None])
    vj = LazyTensor(np.ascontiguousarray(vals)[None, :, :])
    a = ((zi | yj) + lw).sumsoftmaxweight(vj, axis=1)
    return a - np.sum(a * points, axis=1, keepdims=True) * points


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time over ``repeats`` calls (one call if it takes over a second), and the result."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        if best > 1.0:
            break
    return best, out


def rel_err(v: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(v - ref).max() / np.abs(ref).max())


def hardware() -> dict[str, float]:
    """Per-core np.exp rate (exps/s), GEMM rate (flop/s) and the fused kernel's own exp rate."""
    from vlasov_tf.kernels.dense import numba_available, numba_exp
    from vlasov_tf.kernels.threads import blas_single_thread

    rng = np.random.default_rng(0)
    a = -40.0 * rng.random(1 << 16)  # 512 KiB: in L2, like a tile
    out = np.empty_like(a)
    t_exp, _ = best_time(lambda: [np.exp(a, out=out) for _ in range(20)], 15)
    A, B = rng.random((2, 1024, 1024))
    with blas_single_thread():
        np.dot(A, B)
        t_gemm, _ = best_time(lambda: np.dot(A, B), 7)
    hw = {"exp": 20 * a.size / t_exp, "flops": 2.0 * 1024**3 / t_gemm}
    if numba_available():
        import numba

        fexp = numba_exp()

        @numba.njit(nogil=True)
        def apply(x: np.ndarray, o: np.ndarray) -> None:
            for _ in range(20):
                for j in range(x.shape[0]):
                    o[j] = fexp(x[j])

        apply(a, out)
        t_f, _ = best_time(lambda: apply(a, out), 15)
        hw["fused_exp"] = 20 * a.size / t_f
    return hw


def power_of_ten(n: int) -> str:
    """``1e5`` for 100000, else the integer."""
    k = len(str(n)) - 1
    return f"1e{k}" if n == 10**k else str(n)


def pair_bound(hw: dict[str, float], d: int, threads: int) -> float:
    """Pairs/s one np.exp and ``2 (d + 2)`` flops per pair (score with shift, value sums) allow."""
    return threads / (1.0 / hw["exp"] + 2.0 * (d + 2) / hw["flops"])


def one_layer(d: int, n: int, seed: int, max_seconds: float, unit: float) -> str:
    """Time one layer of :func:`vlasov_tf.solve_particles` (Q = K = V = I, beta = LAYER_BETA) at ``n``
    tokens on S^{d-1}; the verdict line."""
    import vlasov_tf
    from vlasov_tf import profiling
    from vlasov_tf.kernels import choose_method, method_costs

    target = LAYER_TARGETS[d]
    head = (
        f"verdict: particles, one layer, N = {power_of_ten(n)} tokens, beta = {LAYER_BETA:g}, Q = K = V = I: "
        f"<= {target:g} s on {GEOMETRY[d]}"
    )
    schedule = vlasov_tf.Schedule.constant(vlasov_tf.Params.identity(d, LAYER_BETA), 0.1)
    warm = sphere_points(1000, d, np.random.default_rng([seed, d, 1000, 2]))
    vlasov_tf.solve_particles(schedule, warm, None, method="layers", steps=1)  # imports, compiles
    x = sphere_points(n, d, np.random.default_rng([seed, d, n, 2]))
    w = np.full(n, 1.0 / n)
    pick = choose_method(LAYER_BETA * x, x, w, d, SOLVER_TOL)
    if pick != "spectral":
        est = method_costs(LAYER_BETA * x, x, w, d, SOLVER_TOL)[pick] * unit
        if est > max_seconds:
            return f"{head}: NOT MEASURED (auto picks {pick}, not spectral; est. {est:.3g} s)"
    with profiling.profile() as prof:
        t0 = time.perf_counter()
        vlasov_tf.solve_particles(schedule, x, None, method="layers", steps=1)
        t = time.perf_counter() - t0
    ran = ", ".join(
        f"{name[5:]} {sec:.3f} s" for name, sec in sorted(prof.seconds.items()) if name.startswith("sums.")
    )
    note = "" if pick == "spectral" else f"; auto picks {pick}, not spectral"
    return (
        f"{head}: {'PASS' if t <= target else 'FAIL'} ({t:.3f} s; kernel sums by {ran or 'none seen'}{note})"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["VLASOV_TF_NUM_THREADS"] = str(args.threads)
    # Imported only now so that VLASOV_TF_NUM_THREADS is in place first.
    from benchlib import timed_peak
    from legacy_harmonics import harmonic_cost, harmonic_degree

    from vlasov_tf.kernels import choose_method, exp_kernel_sums, method_costs, num_threads
    from vlasov_tf.kernels.dense import numba_available
    from vlasov_tf.kernels.taylor import radii

    methods = list(args.methods)
    try:
        import pykeops  # noqa: F401
    except ImportError:
        if "keops" in methods:
            methods.remove("keops")  # a peer column only where pykeops is installed

    def applies(meth: str, problem: str) -> bool:
        if meth in ("naive", "taylor"):
            return PROBLEMS[problem][1]
        if meth == "harmonics":
            return problem == "sphere-zonal"
        return True

    tol = args.tol
    threads = num_threads()
    dims = sorted({PROBLEMS[p][0] for p in args.problems}, reverse=True)
    # Compile the fused dense kernel for (d, k = d) now, not inside the first timing.
    for d in dims:
        warm = sphere_points(300, d, np.random.default_rng(1))
        exp_kernel_sums(warm, warm, np.ones(300), warm, engine="fused" if numba_available() else "auto")
    print(
        f"kernel-sum benchmark: queries = tokens, seeded uniform points on the sphere, uniform weights; "
        f"general heads B = beta K^T Q, values V y (Q, K, V ~ N(0, 1/d), seed {args.seed}); zonal heads "
        f"B = beta I, values y; threads={threads}, cores={os.cpu_count()}, tol={tol:g}"
    )
    header = ["problem", "N", "beta", "method", "time (s)", "pairs/s", "max rel err", "peak MiB", "vs dense"]
    widths = [14, 8, 6, 10, 10, 10, 11, 10, 9]

    def row(cells: list[str]) -> None:
        print(
            "  ".join(
                c.ljust(w) if i in (0, 3) else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=False))
            )
        )
        sys.stdout.flush()

    row(header)
    row(["-" * w for w in widths])

    # seconds per cost unit, by (problem, method) and by method (latest); "unit": dense's, for the
    # other method_costs methods before they have run
    rates: dict[Any, float] = {}
    results: dict[tuple[str, int, float, str], dict[str, float]] = {}
    picks: dict[tuple[str, int, float], str] = {}
    skipped: dict[tuple[str, int, float, str], float] = {}

    def seconds_per_unit(problem: str, meth: str) -> float:
        if (problem, meth) in rates:
            return rates[(problem, meth)]
        if meth in rates:
            return rates[meth]
        if meth in CHOICES:
            return rates.get("unit", _FIRST_GUESS["unit"] / threads)
        return _FIRST_GUESS[meth]

    for problem in args.problems:
        d = PROBLEMS[problem][0]
        Q, K, V = problem_qkv(problem, args.seed)
        for n in args.sizes:
            x = sphere_points(n, d, np.random.default_rng([args.seed, d, n]))
            w = np.full(n, 1.0 / n)
            pairs = float(n) * n
            m_check = min(args.check_queries, n)
            idx = np.random.default_rng([args.seed, n, 1]).choice(n, size=m_check, replace=False)
            for beta in args.betas:
                B = beta * K.T @ Q
                z, vals = x @ B.T, x @ V.T
                costs = method_costs(z, x, w, d, tol)
                pick = choose_method(z, x, w, d, tol)
                picks[(problem, n, beta)] = pick
                ref: np.ndarray | None = None  # dense field on the check rows
                naive_out: np.ndarray | None = None
                for meth in methods:
                    if not applies(meth, problem):
                        continue
                    label = [problem, f"{n}", f"{beta:g}", meth]
                    if meth == "naive":
                        need = naive_gib(n, n)
                        if need > args.naive_limit_gib:
                            row([*label, f"skipped (needs {need:.0f} GiB)"])
                            continue
                        cost = pairs
                        fn = functools.partial(naive_velocity, Q, K, V, beta, x, w, x)
                    elif meth == "keops":
                        cost = pairs
                        fn = functools.partial(keops_field, z, x, w, vals)
                    elif meth == "harmonics":
                        cost = harmonic_cost(beta, n, n)
                        if not np.isfinite(cost):
                            try:
                                harmonic_degree(beta, 1e-15)
                                reason = "infeasible (cost estimate inf)"
                            except ValueError as e:
                                reason = f"failed: {e}"
                            row([*label, reason])
                            continue
                        fn = functools.partial(harmonics_field, beta, x, w)
                    else:  # dense, taylor, spectral: kernel_sums by name
                        cost = costs[meth]
                        if not np.isfinite(cost):
                            why = (
                                f"rho = r_z r_y = {radii(z, x):.3g} beyond the caps"
                                if meth == "taylor"
                                else "method_costs: inf"
                            )
                            row([*label, f"infeasible ({why})"])
                            continue
                        fn = functools.partial(sums_field, meth, tol, z, x, x, w, vals)
                    est = cost * seconds_per_unit(problem, meth)
                    if est > args.max_seconds:
                        row([*label, f"skipped (est. {est:.3g} s)"])
                        skipped[(problem, n, beta, meth)] = est
                        continue
                    try:
                        if meth == "spectral":  # its buffers are C++ (ducc0, finufft): not traced
                            t, out = best_time(fn, args.repeats)
                            mem = np.nan
                        elif est > 2.0:  # one traced run gives both the time and the memory
                            t, out, mem = timed_peak(fn)
                        else:
                            t, out = best_time(fn, args.repeats)
                            mem = peak_mib(fn)
                    except ValueError as e:
                        if meth != "harmonics":
                            raise
                        row([*label, f"failed: {e}"])
                        continue
                    rates[(problem, meth)] = rates[meth] = t / cost
                    if meth == "dense":
                        rates["unit"] = t / cost
                    if meth == "naive":
                        naive_out, err = out, 0.0
                    elif meth == "dense" and naive_out is not None:
                        err = rel_err(out, naive_out)
                    elif meth == "dense" and naive_gib(m_check, n) <= args.naive_limit_gib:
                        err = rel_err(out[idx], naive_velocity(Q, K, V, beta, x, w, x[idx]))
                    elif meth == "dense":
                        err = np.nan
                    else:
                        if ref is None:
                            ref = sums_field("dense", tol, z[idx], x[idx], x, w, vals)
                        err = rel_err(out[idx], ref)
                    results[(problem, n, beta, meth)] = {"time": t, "mem": mem, "err": err}
                    t_dense = results.get((problem, n, beta, "dense"), {}).get("time", np.nan)
                    row(
                        [
                            *label,
                            f"{t:.4f}",
                            f"{pairs / t:.3e}",
                            "-" if meth == "naive" else f"{err:.2e}",
                            "n/a (C++)" if np.isnan(mem) else f"{mem:.1f}",
                            "-" if np.isnan(t_dense) else f"{t_dense / t:.2f}x",
                        ]
                    )
                others = ", ".join(
                    f"{m} {costs[m] / costs['dense']:.3g}"
                    for m in costs
                    if m != "dense" and (m != "fft" or np.isfinite(costs[m]))
                )
                row([problem, f"{n}", f"{beta:g}", "auto", f"-> {pick} (est. cost / dense: {others})"])
    print(
        "max rel err: max |v - v_dense| / max |v_dense| over check rows (dense: against naive); "
        "auto: kernel_sums(method='auto') by choose_method"
    )
    print()

    # --- hardware bound
    if "dense" in methods:
        hw = hardware()
        print(
            f"hardware (per core): np.exp {hw['exp']:.3e} exps/s, GEMM {hw['flops'] / 1e9:.1f} GFLOP/s"
            + (f", fused-kernel exp {hw['fused_exp']:.3e} exps/s" if "fused_exp" in hw else "")
        )
        for d in dims:
            bound = pair_bound(hw, d, threads)
            print(
                f"  d = {d}: bound for one np.exp + 2(d+2) = {2 * (d + 2)} flops per pair on {threads} "
                f"threads: {bound:.3e} pairs/s"
            )
            for problem in args.problems:
                if PROBLEMS[problem][0] != d:
                    continue
                for beta in args.betas:
                    r = results.get((problem, SPEEDUP_N, beta, "dense"))
                    if r is not None:
                        rate = SPEEDUP_N**2 / r["time"]
                        print(
                            f"    dense, {problem}, N={SPEEDUP_N}, beta={beta:g}: {rate:.3e} pairs/s = "
                            f"{rate / bound:.0%} of that bound"
                        )
        print("  (above 100%: the fused exp beats np.exp)")
        print()

    # --- cost model check
    print(
        f"cost model check: fastest of {'/'.join(CHOICES)} measured vs what auto picks "
        f"(picked/fastest > {_PICK_SLACK:g} flagged)"
    )
    print(f"  {'problem':<14}  {'N':>8}  {'beta':>6}  {'fastest':<20}  {'auto picks':<22}  picked/fastest")
    for (problem, n, beta), pick in picks.items():
        measured = {
            m: results[(problem, n, beta, m)]["time"] for m in CHOICES if (problem, n, beta, m) in results
        }
        if not measured:
            continue
        fastest = min(measured, key=measured.__getitem__)
        if pick in measured:
            ratio = measured[pick] / measured[fastest]
            picked = f"{pick} {measured[pick]:.4f} s"
            verdict = f"{ratio:.2f}" + ("  <- off" if ratio > _PICK_SLACK else "")
        elif (problem, n, beta, pick) in skipped:
            picked = f"{pick} (skipped)"
            verdict = f"n/a (est. {skipped[(problem, n, beta, pick)]:.3g} s)"
        else:
            picked = f"{pick} (not run)"
            verdict = "n/a"
        print(
            f"  {problem:<14}  {n:>8}  {beta:>6g}  {fastest + f' {measured[fastest]:.4f} s':<20}  "
            f"{picked:<22}  {verdict}"
        )
    print()

    # --- verdicts
    for problem in args.problems:
        if not PROBLEMS[problem][1]:
            continue
        for beta in args.betas:
            r = results.get((problem, SPEEDUP_N, beta, "dense"))
            rn = results.get((problem, SPEEDUP_N, beta, "naive"))
            head = f"verdict: dense >= {SPEEDUP_TARGET:g}x naive, {problem}, N={SPEEDUP_N}, beta={beta:g}"
            if r is None or rn is None:
                print(f"{head}: NOT MEASURED")
            else:
                s = rn["time"] / r["time"]
                print(
                    f"{head}: {'PASS' if s >= SPEEDUP_TARGET else 'FAIL'} "
                    f"({s:.1f}x: {r['time']:.4f} s vs {rn['time']:.4f} s naive)"
                )
    at_mem = {key: r["mem"] for key, r in results.items() if key[1] == MEMORY_N and np.isfinite(r["mem"])}
    dense_mem = [mem for key, mem in at_mem.items() if key[3] == "dense"]
    if not dense_mem:
        print(f"verdict: peak memory < {MEMORY_TARGET_GIB:g} GiB at N={MEMORY_N}: NOT MEASURED")
    else:
        worst = max(dense_mem)
        others = ", ".join(
            f"{meth} {max(mem for key, mem in at_mem.items() if key[3] == meth):.0f}"
            for meth in dict.fromkeys(key[3] for key in at_mem)
            if meth != "dense"
        )
        print(
            f"verdict: peak memory < {MEMORY_TARGET_GIB:g} GiB at N={MEMORY_N}: "
            f"{'PASS' if worst < MEMORY_TARGET_GIB * 1024 else 'FAIL'} (dense {worst:.1f} MiB"
            + (f"; {others} MiB" if others else "")
            + "; spectral: C++, not traced)"
        )
    head = (
        f"verdict: general head (non-zonal B, beta = {SPECTRAL_BETA:g}) on S^2, "
        f"N = {power_of_ten(SPECTRAL_N)}: spectral >= {SPECTRAL_TARGET:g}x faster than dense (same run)"
    )
    rs = results.get(("sphere-general", SPECTRAL_N, SPECTRAL_BETA, "spectral"))
    rd = results.get(("sphere-general", SPECTRAL_N, SPECTRAL_BETA, "dense"))
    if rs is None or rd is None:
        print(f"{head}: NOT MEASURED")
    else:
        s = rd["time"] / rs["time"]
        print(
            f"{head}: {'PASS' if s >= SPECTRAL_TARGET else 'FAIL'} "
            f"({s:.1f}x: {rs['time']:.4f} s vs {rd['time']:.4f} s dense)"
        )
    unit = rates.get("unit", _FIRST_GUESS["unit"] / threads)
    for d in dims:
        if LAYER_N in args.sizes:
            print(one_layer(d, LAYER_N, args.seed, args.max_seconds, unit))
        else:
            print(
                f"verdict: particles, one layer, N = {power_of_ten(LAYER_N)} tokens, beta = {LAYER_BETA:g}, "
                f"Q = K = V = I: <= {LAYER_TARGETS[d]:g} s on {GEOMETRY[d]}: NOT MEASURED "
                f"({LAYER_N} not in --sizes)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
