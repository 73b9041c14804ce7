"""Benchmark of the particle solver's fixed costs: deep Transformer layers of a few tokens.

What it measures
----------------
N tokens (seeded, uniform on S^2, uniform weights) move by ``--layers`` Euler layers of one
zonal head (``Params.identity(3, beta)``: Q = K = V = I, softmax attention, no perceptron) on
[0, ``--T``], ``h = T / layers``; each layer is

    x_i <- normalize(x_i + h P_{x_i}^perp(sum_j softmax_j(beta <x_i, x_j>) V x_j)),

``P_x^perp = I - x x^T``. Two ways, in the same process, alternating, best of ``--repeats``:

* ``numpy loop``: the layer written as a plain numpy loop (:func:`numpy_layers`: the (N, N)
  score matrix, its row maximum subtracted, exp, two products, the projection, the
  normalisation), what one writes without the package;
* ``vlasov_tf``: ``solve_particles(Schedule.constant(params, T), x0, method="layers",
  steps=layers)`` with its defaults (``field_method="auto"``, no progress bar).

Columns: N, layers, the two times (seconds for the whole run), their ratio
(vlasov_tf / numpy loop: <= 1 means the package is at least as fast) and the largest
difference of the final tokens (the two do the same arithmetic in a different order: it must
be round-off, ~1e-12 or below; the script fails otherwise). Target: ratio <= 1 at N = 64,
10,000 layers.

Notes: up to N^2 = 16384 pairs (``kernels.SMALL_PAIRS``, N <= 128) "auto" sums densely without
looking at the tokens (:func:`vlasov_tf.kernels.few_pairs`), and ``solve_particles`` runs a lean
layer loop for such a few tokens (``particles._tile_layers``: one tile per head,
``kernels.dense.tile_sums``, shift = the exact row maximum). Above (N = 256) "auto" compares the
methods' cost estimates every layer (~100 us) and sums with the fused numba kernel, whose
compilation (~0.5 s, once per process) falls in the first repeat, which the best of ``--repeats``
leaves out.

Run it from the repository root (~10 s on 2 cores)::

    .venv/bin/python scripts/bench_particles.py
    .venv/bin/python scripts/bench_particles.py --quick           # 1,000 layers, ~2 s
    .venv/bin/python scripts/bench_particles.py --sizes 64 --layers 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

D = 3
TARGET_N = 64
TARGET_LAYERS = 10_000
AGREE_TOL = 1e-11  # final tokens of the two ways: round-off after 10,000 layers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256], help="numbers of tokens N")
    p.add_argument("--layers", type=int, default=TARGET_LAYERS, help="layers per run (N <= 64)")
    p.add_argument(
        "--pairs-budget",
        type=float,
        default=64.0 * 64 * TARGET_LAYERS,
        help="larger N run fewer layers: at most this many N^2 x layers (default: N = 64's)",
    )
    p.add_argument("--beta", type=float, default=1.0, help="inverse temperature")
    p.add_argument("--T", type=float, default=5.0, help="end time (depth x step)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the tokens")
    p.add_argument("--quick", action="store_true", help="1,000 layers (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.layers = 1000
        args.pairs_budget = min(args.pairs_budget, 64.0 * 64 * 1000)
    if args.repeats < 1 or args.layers < 1:
        p.error("--repeats and --layers must be >= 1")
    return args


def numpy_layers(x: np.ndarray, beta: float, V: np.ndarray, h: float, layers: int) -> np.ndarray:
    """``layers`` softmax self-attention layers of (N, d) tokens x, plain numpy; returns (N, d).

    Uniform weights (they cancel in the softmax). ``V`` (d, d) is the value matrix.
    """
    for _ in range(layers):
        s = beta * (x @ x.T)  # (N, N) scores beta <x_i, x_j>
        e = np.exp(s - s.max(axis=1, keepdims=True))  # softmax numerators, overflow-free
        a = (e @ x) @ V.T / e.sum(axis=1, keepdims=True)  # (N, d) attention averages of V x_j
        v = a - np.sum(a * x, axis=1, keepdims=True) * x  # P_x^perp a
        x = x + h * v
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x


def best_of(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """(least wall seconds of ``repeats`` calls, the last call's result)."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vlasov_tf import Params, Schedule, solve_particles
    from vlasov_tf.geometry.measures import uniform_sphere

    params = Params.identity(D, args.beta)
    V = params.heads[0].V
    schedule = Schedule.constant(params, args.T)
    print(
        f"# {args.layers} layers (fewer above {args.pairs_budget:.3g} N^2 x layers) of one zonal head on "
        f"S^2, beta = {args.beta:g}, T = {args.T:g}; best of {args.repeats}"
    )
    header = (
        f"{'N':>6} {'layers':>7} {'numpy loop s':>13} {'vlasov_tf s':>12} {'ratio':>6} {'max |diff|':>10}"
    )
    print(header)
    print("-" * len(header))
    failed = []
    for n in args.sizes:
        layers = int(max(1, min(args.layers, args.pairs_budget // (n * n))))
        x0 = uniform_sphere(n, D, np.random.default_rng(args.seed))
        h = args.T / layers
        t_np = t_pkg = np.inf
        for _ in range(args.repeats):  # alternate, so that both see the same load
            t, ref = best_of(lambda x0=x0, h=h, layers=layers: numpy_layers(x0, args.beta, V, h, layers), 1)
            t_np = min(t_np, t)
            t, sol = best_of(lambda x0=x0, layers=layers: solve_particles(schedule, x0, steps=layers), 1)
            t_pkg = min(t_pkg, t)
        diff = float(np.abs(sol.final - ref).max())
        print(f"{n:>6} {layers:>7} {t_np:>13.3f} {t_pkg:>12.3f} {t_pkg / t_np:>6.2f} {diff:>10.1e}")
        if not diff <= AGREE_TOL:
            failed.append(f"N = {n}: the two ways differ by {diff:.1e} > {AGREE_TOL:g}")
        if n == TARGET_N and layers == TARGET_LAYERS:
            verdict = "met" if t_pkg <= t_np else "NOT met"
            print(f"# target (N = {TARGET_N}, {TARGET_LAYERS} layers: vlasov_tf <= numpy loop): {verdict}")
    for line in failed:
        print(f"# FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
