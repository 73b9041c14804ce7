"""Benchmark of the attention field's kernel sums: every method side by side.

What it measures
----------------
For N tokens on the sphere S^{d-1} (d = 3, seeded random points, uniform weights) and each
inverse temperature beta it evaluates the softmax-attention velocity at the tokens themselves
(N * N query-key pairs), ``P_x (sum_j w_j e^{<B x, y_j>} V y_j / sum_j w_j e^{<B x, y_j>})``, by

* ``naive``: the textbook dense numpy formula (:func:`naive_velocity`: the full N x N score
  matrix, row max subtracted, exp, two products). Only where its three N x N temporaries fit
  in ``--naive-limit-gib``.
* ``dense``: :func:`vlasov_tf.kernels.kernel_sums` with ``method="dense"`` (blocked,
  log-sum-exp, the fused numba engine on both cores).
* ``taylor``: ``method="taylor"`` (:func:`vlasov_tf.expansions.taylor_sums`, tol ``--tol``),
  linear in N, feasible for small beta only.
* ``harmonics``: :func:`vlasov_tf.harmonics.harmonic_sums` (zonal kernels only, so this row
  solves Q = K = V = I, ``B = beta I``, against the dense sums of that problem).
* ``keops``: pykeops' LazyTensor softmax reduction, when ``import pykeops`` works.

``naive``, ``dense`` and ``taylor`` share one general head (``B = beta K^T Q``, seeded Q, K, V
with entries N(0, 1/d)). Columns: N (= M), beta, method, time (best of ``--repeats`` below 1 s,
one run above), pairs/s (N^2 / time), max relative error of the field against the dense
sums on ``--check-queries`` random rows (``max |v - v_dense| / max |v_dense|``; the dense row
itself is checked against naive where naive ran), peak traced memory (tracemalloc: numpy's
allocations, not BLAS's), and speed-up over dense. A run whose estimate (from the measured
rate of the same method at a smaller N, or its cost model) exceeds ``--max-seconds`` is
printed as ``skipped (est. X s)`` and not run.

Then: the hardware (np.exp throughput and GEMM flops per core, the best pairs/s one exp plus
``2 (d + 2)`` flops per pair allows, and how close the dense path comes), the taylor/dense
crossover (measured and predicted by the cost models), and the verdicts: dense >= 10x naive at
N = 1e4 (same run), peak memory < 2 GiB at N = 1e5.

Run it from the repository root (the default takes a few minutes on 2 cores)::

    .venv/bin/python scripts/bench_field.py
    .venv/bin/python scripts/bench_field.py --sizes 1000 10000 --betas 1 --methods naive dense
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
METHODS = ("naive", "dense", "taylor", "harmonics", "keops")
# Rates assumed before a method has run at all (pairs/s, or seconds per cost unit).
_FIRST_GUESS = {"naive": 1e8, "dense": 1e9, "taylor": 2e-9, "harmonics": 1e-9, "keops": 1e9}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000], help="N = M")
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="inverse temperatures")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to run")
    p.add_argument("--tol", type=float, default=1e-10, help="tolerance of taylor (harmonics: 1e-10 per row)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats for runs under 1 s")
    p.add_argument("--max-seconds", type=float, default=30.0, help="skip runs estimated above this")
    p.add_argument("--threads", type=int, default=None, help="sets VLASOV_TF_NUM_THREADS")
    p.add_argument("--dim", type=int, default=3, help="dimension d (default 3)")
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
    """The zonal field (B = beta I, values y) from :func:`vlasov_tf.harmonics.harmonic_sums`.

    With its default truncation tolerance (1e-15 of ``e^beta sum w``), as the solvers call it:
    its per-row guarantee (1e-10) is fixed, and a looser truncation only sends more rows to
    the dense fix-up (every row of a uniform measure at beta >= 10 with 1e-10).
    """
    from vlasov_tf.harmonics import harmonic_sums

    eye = beta * np.eye(points.shape[1])
    return field(*harmonic_sums(eye, points, points, weights, points), points)


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


def hardware(d: int, threads: int) -> dict[str, float]:
    """Per-core np.exp rate (exps/s), GEMM rate (flop/s) and the fused kernel's own exp rate."""
    from vlasov_tf.kernels import _numba_available, _numba_exp, blas_single_thread

    rng = np.random.default_rng(0)
    a = -40.0 * rng.random(1 << 16)  # 512 KiB: in L2, like a tile
    out = np.empty_like(a)
    t_exp, _ = best_time(lambda: [np.exp(a, out=out) for _ in range(20)], 15)
    A, B = rng.random((2, 1024, 1024))
    with blas_single_thread():
        np.dot(A, B)
        t_gemm, _ = best_time(lambda: np.dot(A, B), 7)
    hw = {"exp": 20 * a.size / t_exp, "flops": 2.0 * 1024**3 / t_gemm, "threads": float(threads)}
    if _numba_available():
        import numba

        fexp = _numba_exp()

        @numba.njit(nogil=True)
        def apply(x: np.ndarray, o: np.ndarray) -> None:
            for _ in range(20):
                for j in range(x.shape[0]):
                    o[j] = fexp(x[j])

        apply(a, out)
        t_f, _ = best_time(lambda: apply(a, out), 15)
        hw["fused_exp"] = 20 * a.size / t_f
    # one exp and ~2 (d + 2) flops (score with shift, weighted value sums) per pair
    hw["bound"] = threads / (1.0 / hw["exp"] + 2.0 * (d + 2) / hw["flops"])
    return hw


def keops_field(z: np.ndarray, points: np.ndarray, weights: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """pykeops' symbolic softmax-weighted sum (log-sum-exp stabilised inside KeOps)."""
    from pykeops.numpy import LazyTensor

    zi = LazyTensor(np.ascontiguousarray(z)[:, None, :])
    yj = LazyTensor(np.ascontiguousarray(points)[None, :, :])
    lw = LazyTensor(np.log(weights)[None, :, None])
    vj = LazyTensor(np.ascontiguousarray(vals)[None, :, :])
    a = ((zi | yj) + lw).sumsoftmaxweight(vj, axis=1)
    return a - np.sum(a * points, axis=1, keepdims=True) * points


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["VLASOV_TF_NUM_THREADS"] = str(args.threads)
    # Imported only now so that VLASOV_TF_NUM_THREADS is in place first.
    from benchlib import timed_peak
    from vlasov_tf.expansions import _n_features, _radii, taylor_cost, taylor_degree

    from vlasov_tf.kernels import _numba_available, dense_cost, exp_kernel_sums, num_threads

    methods = list(args.methods)
    try:
        from vlasov_tf.harmonics import harmonic_cost
    except ImportError:
        if "harmonics" in methods:
            print("harmonics: vlasov_tf.harmonics not importable, column left out")
            methods.remove("harmonics")
    try:
        import pykeops  # noqa: F401
    except ImportError:
        if "keops" in methods:
            methods.remove("keops")  # a peer column only where pykeops is installed

    d, tol = args.dim, args.tol
    # Compile the fused dense kernel for (d, k = d) now, not inside the first timing.
    warm = sphere_points(300, d, np.random.default_rng(1))
    exp_kernel_sums(warm, warm, np.ones(300), warm, engine="auto" if not _numba_available() else "fused")
    rng = np.random.default_rng(args.seed)
    Q, K, V = random_qkv(d, rng)
    threads = num_threads()
    print(
        f"kernel-sum benchmark: d={d}, general head B = beta K^T Q (seed {args.seed}) for naive/dense/taylor,"
        " "
        f"B = beta I for harmonics; queries = tokens, uniform weights; threads={threads}, "
        f"cores={os.cpu_count()}, tol={tol:g}"
    )
    header = ["N", "beta", "method", "time (s)", "pairs/s", "max rel err", "peak MiB", "vs naive", "vs dense"]
    widths = [8, 6, 10, 10, 10, 11, 9, 9, 9]

    def row(cells: list[str]) -> None:
        print(
            "  ".join(
                c.ljust(w) if i == 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=False))
            )
        )
        sys.stdout.flush()

    row(header)
    row(["-" * w for w in widths])

    rates: dict[str, float] = {}  # pairs/s (naive, dense, keops) or seconds per cost unit (taylor, harmonics)
    results: dict[tuple[int, float, str], dict[str, float]] = {}
    for n in args.sizes:
        x = sphere_points(n, d, np.random.default_rng([args.seed, n]))
        w = np.full(n, 1.0 / n)
        pairs = float(n) * n
        m_check = min(args.check_queries, n)
        idx = np.random.default_rng([args.seed, n, 1]).choice(n, size=m_check, replace=False)
        for beta in args.betas:
            B = beta * K.T @ Q
            z, vals = x @ B.T, x @ V.T
            refs: dict[str, np.ndarray] = {}  # dense fields on the check rows, by problem

            naive_out: np.ndarray | None = None
            for meth in methods:
                label = [f"{n}", f"{beta:g}", meth]
                cost = 0.0
                if meth == "naive":
                    need = naive_gib(n, n)
                    if need > args.naive_limit_gib:
                        row([*label, f"skipped (needs {need:.0f} GiB)"])
                        continue
                    est = pairs / rates.get(meth, _FIRST_GUESS[meth])
                    fn = functools.partial(naive_velocity, Q, K, V, beta, x, w, x)
                elif meth in ("dense", "keops"):
                    est = pairs / rates.get(meth, _FIRST_GUESS[meth])
                    if meth == "dense":
                        fn = functools.partial(sums_field, "dense", tol, z, x, x, w, vals)
                    else:
                        fn = functools.partial(keops_field, z, x, w, vals)
                elif meth == "taylor":
                    cost = taylor_cost(z, x, tol, k=d)
                    if not np.isfinite(cost):
                        row([*label, f"infeasible (rho = r_z r_y = {_radii(z, x):.3g} beyond the caps)"])
                        continue
                    est = cost * rates.get(meth, _FIRST_GUESS[meth])
                    fn = functools.partial(sums_field, "taylor", tol, z, x, x, w, vals)
                else:  # harmonics: zonal problem
                    cost = harmonic_cost(beta, n, n)
                    if not np.isfinite(cost):
                        row([*label, "infeasible (degree beyond its cap)"])
                        continue
                    est = cost * rates.get(meth, _FIRST_GUESS[meth])
                    fn = functools.partial(harmonics_field, beta, x, w)
                if est > args.max_seconds:
                    row([*label, f"skipped (est. {est:.3g} s)"])
                    continue
                if est > 2.0:  # one traced run gives both the time and the memory
                    t, out, mem = timed_peak(fn)
                else:
                    t, out = best_time(fn, args.repeats)
                    mem = peak_mib(fn)
                rates[meth] = t / cost if meth in ("taylor", "harmonics") else pairs / t
                if meth == "naive":
                    naive_out, err = out, 0.0
                elif meth == "dense" and naive_out is not None:
                    err = rel_err(out, naive_out)
                elif meth == "dense" and naive_gib(m_check, n) <= args.naive_limit_gib:
                    err = rel_err(out[idx], naive_velocity(Q, K, V, beta, x, w, x[idx]))
                elif meth == "dense":
                    err = np.nan
                else:
                    kind = "zonal" if meth == "harmonics" else "general"
                    if kind not in refs:
                        zz, vv = (z, vals) if kind == "general" else (beta * x, x)
                        refs[kind] = sums_field("dense", tol, zz[idx], x[idx], x, w, vv)
                    err = rel_err(out[idx], refs[kind])
                results[(n, beta, meth)] = {"time": t, "mem": mem, "err": err}
                base = {k: results.get((n, beta, k), {}).get("time", np.nan) for k in ("naive", "dense")}
                row(
                    [
                        *label,
                        f"{t:.4f}",
                        f"{pairs / t:.3e}",
                        "-" if meth == "naive" else f"{err:.2e}",
                        f"{mem:.1f}",
                        "-" if np.isnan(base["naive"]) else f"{base['naive'] / t:.1f}x",
                        "-" if np.isnan(base["dense"]) else f"{base['dense'] / t:.2f}x",
                    ]
                )
    print("max rel err: max |v - v_dense| / max |v_dense| over check rows (dense: against naive)")
    print()
    # --- hardware bound
    if "dense" in methods:
        hw = hardware(d, threads)
        print(
            f"hardware (per core): np.exp {hw['exp']:.3e} exps/s, GEMM {hw['flops'] / 1e9:.1f} GFLOP/s"
            + (f", fused-kernel exp {hw['fused_exp']:.3e} exps/s" if "fused_exp" in hw else "")
        )
        print(
            f"  bound for one np.exp + 2(d+2) = {2 * (d + 2)} flops per pair on {threads} threads: "
            f"{hw['bound']:.3e} pairs/s"
        )
        for beta in args.betas:
            r = results.get((SPEEDUP_N, beta, "dense"))
            if r is not None:
                rate = SPEEDUP_N**2 / r["time"]
                print(
                    f"  dense at N={SPEEDUP_N}, beta={beta:g}: {rate:.3e} pairs/s = "
                    f"{rate / hw['bound']:.0%} of that bound (above 100%: the fused exp beats np.exp)"
                )
        print()

    # --- taylor / dense crossover
    if "taylor" in methods and "dense" in methods:
        print("taylor vs dense crossover (models: dense n m (15 + 2(d+k+2)), taylor 5 (n+m) F (2(k+1) + 8)):")
        print(
            f"  {'beta':>6}  {'rho':>6}  {'p':>3}  {'F':>6}  {'model N*':>9}  measured dense/taylor time by N"
        )
        probe = sphere_points(2000, d, np.random.default_rng([args.seed, 2000]))
        for beta in args.betas:
            zp = probe @ (beta * K.T @ Q).T
            rho = _radii(zp, probe)
            try:
                p = taylor_degree(rho, d, tol)
            except ValueError:
                print(
                    f"  {beta:>6g}  {rho:>6.2f}  {'-':>3}  {'-':>6}  {'never':>9}  (infeasible, tol={tol:g})"
                )
                continue
            nf = _n_features(p, d)
            # taylor_cost is linear in n + m with the radii of the measure: the model's N* solves
            # 2 N F c_t = N^2 c_d.
            n_star = taylor_cost(zp, probe, tol, k=d) / (2 * len(probe)) * 2 / (dense_cost(1, 1, d, d))
            measured = [
                f"N={n}: {results[(n, beta, 'dense')]['time'] / results[(n, beta, 'taylor')]['time']:.2f}"
                for n in args.sizes
                if (n, beta, "dense") in results and (n, beta, "taylor") in results
            ]
            print(f"  {beta:>6g}  {rho:>6.2f}  {p:>3}  {nf:>6}  {n_star:>9.0f}  " + ", ".join(measured))
        print("  (ratio > 1: taylor faster; kernel_sums(method='auto') switches at the model's N*)")
        print()

    # --- verdicts
    for beta in args.betas:
        r, rn = results.get((SPEEDUP_N, beta, "dense")), results.get((SPEEDUP_N, beta, "naive"))
        if r is None or rn is None:
            print(
                f"verdict: dense >= {SPEEDUP_TARGET:g}x naive at N={SPEEDUP_N}, beta={beta:g}: NOT MEASURED"
            )
        else:
            s = rn["time"] / r["time"]
            print(
                f"verdict: dense >= {SPEEDUP_TARGET:g}x naive at N={SPEEDUP_N}, beta={beta:g}: "
                f"{'PASS' if s >= SPEEDUP_TARGET else 'FAIL'} "
                f"({s:.1f}x: {r['time']:.4f} s vs {rn['time']:.4f} s naive)"
            )
    mems = {meth: r["mem"] for (n, _, meth), r in results.items() if n == MEMORY_N}
    if "dense" not in mems:
        print(f"verdict: peak memory < {MEMORY_TARGET_GIB:g} GiB at N={MEMORY_N}: NOT MEASURED")
    else:
        worst = max(r["mem"] for (n, _, meth), r in results.items() if n == MEMORY_N and meth == "dense")
        ok = worst < MEMORY_TARGET_GIB * 1024
        others = ", ".join(
            f"{meth} {max(r['mem'] for (n, _, mm), r in results.items() if n == MEMORY_N and mm == meth):.0f}"
            for meth in mems
            if meth != "dense"
        )
        print(
            f"verdict: peak memory < {MEMORY_TARGET_GIB:g} GiB at N={MEMORY_N}: {'PASS' if ok else 'FAIL'} "
            f"(dense {worst:.1f} MiB" + (f"; {others} MiB" if others else "") + ")"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
