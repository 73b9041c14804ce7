"""Benchmark of the attention velocity field: vlasov_tf against a dense numpy baseline.

What it measures
----------------
For N tokens on the sphere S^{d-1} (d = 3, seeded random points, uniform
weights) it evaluates the softmax-attention velocity field at the tokens
themselves (so N * N query-key pairs) with one general head
``Q, K, V`` (seeded random matrices scaled so that the scores
``beta <Q x, K y>`` are O(beta)), in two ways:

* ``naive``: the textbook dense numpy formula written below
  (:func:`naive_velocity`): the full N x N score matrix
  ``S = beta (X Q^T)(Y K^T)^T``, row max subtracted, ``exp``, times weights,
  ``E @ (Y V^T)`` divided by the row sums, projected with ``P_x = I - x x^T``.
  It is skipped where its N x N temporaries (three live N x N float64
  arrays at the out-of-place ``E * w`` step: S, E and the product) would
  exceed ``--naive-limit-gib`` (4 GiB).
* ``vlasov_tf``: :func:`vlasov_tf.model.velocity` (blocked log-sum-exp kernel
  sums, threaded).

Columns: N, method, time (best of a few repeats, fewer for large N), token
pairs per second, peak memory of one evaluation in MiB (``tracemalloc``, to
which numpy reports its array allocations; BLAS-internal buffers are not
seen), max abs difference against the naive result, and speed-up over naive.
Where the full naive result does not fit, the difference is taken on a
subset of ``--check-queries`` query rows (marked ``*``), which the naive
formula evaluates against all N keys. Timings are taken without tracemalloc;
the memory figure comes from one extra traced evaluation.

The last lines are a verdict for the targets: speed-up >= 5x over naive at
N = 1e4, and peak memory < 2 GiB at N = 1e5.

Run it from the repository root::

    .venv/bin/python scripts/bench_field.py
    .venv/bin/python scripts/bench_field.py --sizes 1000 10000 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from benchlib import peak_mib

GIB = 1024.0**3
MIB = 1024.0**2
SPEEDUP_TARGET = 5.0
SPEEDUP_N = 10_000
MEMORY_TARGET_GIB = 2.0
MEMORY_N = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000], help="token counts N")
    p.add_argument("--beta", type=float, default=1.0, help="inverse temperature (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats for N <= 1e4 (1 above)")
    p.add_argument("--threads", type=int, default=None, help="sets VLASOV_TF_NUM_THREADS")
    p.add_argument("--dim", type=int, default=3, help="dimension d (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--naive-limit-gib", type=float, default=4.0, help="skip naive above this N x N footprint")
    p.add_argument(
        "--check-queries", type=int, default=1000, help="query subset for the difference where naive skips"
    )
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


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time over ``repeats`` calls, and the last result."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["VLASOV_TF_NUM_THREADS"] = str(args.threads)
    # Imported only now so that VLASOV_TF_NUM_THREADS is in place first.
    from vlasov_tf import Params
    from vlasov_tf.kernels import num_threads
    from vlasov_tf.model import velocity

    d, beta = args.dim, args.beta
    rng = np.random.default_rng(args.seed)
    Q, K, V = random_qkv(d, rng)
    params = Params.qkv(Q, K, V, beta)

    print(
        f"velocity field benchmark: d={d}, beta={beta:g}, one general Q,K,V head (seed {args.seed}), "
        f"queries = tokens, uniform weights, vlasov_tf threads={num_threads()}, cores={os.cpu_count()}"
    )
    header = ["N", "method", "time (s)", "pairs/s", "peak MiB", "max|diff|", "speed-up"]
    widths = [7, 10, 10, 10, 10, 10, 9]
    print(fmt_row(header, widths))
    print(fmt_row(["-" * w for w in widths], widths))

    results: dict[tuple[int, str], dict[str, float]] = {}
    subset_used = False
    for n in args.sizes:
        x = sphere_points(n, d, np.random.default_rng([args.seed, n]))
        w = np.full(n, 1.0 / n)
        repeats = args.repeats if n * n <= 10**8 else 1
        pairs = float(n) * n

        # naive
        need = naive_gib(n, n)
        ref: np.ndarray | None = None
        t_naive = np.nan
        if need <= args.naive_limit_gib:
            t_naive, ref = best_time(lambda x=x, w=w: naive_velocity(Q, K, V, beta, x, w, x), repeats)
            mem = peak_mib(lambda x=x, w=w: naive_velocity(Q, K, V, beta, x, w, x))
            results[(n, "naive")] = {"time": t_naive, "mem": mem}
            cells = [f"{n}", "naive", f"{t_naive:.4f}", f"{pairs / t_naive:.3e}", f"{mem:.1f}", "-", "1.0x"]
            print(fmt_row(cells, widths))
        else:
            print(fmt_row([f"{n}", "naive"], widths[:2]) + f"  skipped (needs {need:.0f} GiB)")

        # vlasov_tf
        t_vtf, out = best_time(lambda x=x, w=w: velocity(params, x, w), repeats)
        mem = peak_mib(lambda x=x, w=w: velocity(params, x, w))
        if ref is not None:
            diff = f"{np.abs(out - ref).max():.2e}"
        else:
            m = min(args.check_queries, n)
            idx = np.random.default_rng([args.seed, n, 1]).choice(n, size=m, replace=False)
            if naive_gib(m, n) <= args.naive_limit_gib:
                sub = naive_velocity(Q, K, V, beta, x, w, x[idx])
                diff = f"{np.abs(out[idx] - sub).max():.2e}*"
                subset_used = True
            else:
                diff = "n/a"
        speedup = t_naive / t_vtf
        results[(n, "vlasov_tf")] = {"time": t_vtf, "mem": mem, "speedup": speedup}
        cells = [
            f"{n}",
            "vlasov_tf",
            f"{t_vtf:.4f}",
            f"{pairs / t_vtf:.3e}",
            f"{mem:.1f}",
            diff,
            "n/a" if np.isnan(speedup) else f"{speedup:.1f}x",
        ]
        print(fmt_row(cells, widths))

    if subset_used:
        print(f"* max|diff| on {args.check_queries} random query rows against naive with all N keys")

    print()
    r = results.get((SPEEDUP_N, "vlasov_tf"))
    if r is None or np.isnan(r["speedup"]):
        print(f"verdict: speed-up >= {SPEEDUP_TARGET:g}x at N={SPEEDUP_N}: NOT MEASURED")
    else:
        ok = r["speedup"] >= SPEEDUP_TARGET
        print(
            f"verdict: speed-up >= {SPEEDUP_TARGET:g}x at N={SPEEDUP_N}: "
            f"{'PASS' if ok else 'FAIL'} ({r['speedup']:.1f}x)"
        )
    r = results.get((MEMORY_N, "vlasov_tf"))
    if r is None:
        print(f"verdict: peak memory < {MEMORY_TARGET_GIB:g} GiB at N={MEMORY_N}: NOT MEASURED")
    else:
        ok = r["mem"] < MEMORY_TARGET_GIB * 1024
        print(
            f"verdict: peak memory < {MEMORY_TARGET_GIB:g} GiB at N={MEMORY_N}: "
            f"{'PASS' if ok else 'FAIL'} ({r['mem']:.1f} MiB = {r['mem'] / 1024:.3f} GiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
