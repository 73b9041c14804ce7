"""Members per second of an ensemble sweep (vlasov_tf.runs.ensembles) against a plain batched numpy loop.

The benchmark of the sweep: N = 64 tokens on S^{d-1}, d = 8 and 16, 100 betas (log-spaced,
0.5 ... 100) x 32 members, random Gaussian Q, K, V (one head), RK4 with fixed steps to T. Rows:

- plain numpy loop: one beta at a time, its 32 members batched, einsum products and a fresh
  softmax (what a first implementation writes) -- the baseline;
- vlasov_tf: ``ensemble_flow`` on batches of betas (``sweeps.BATCH_SCORES`` scores a batch:
  1024 members here), matmul products and an in-place softmax.

Both integrate the same equations from the same tokens and parameters: the final tokens are
compared (max difference). Prints members/s and the ratio, one run each (a few minutes on 2 cores).

    python scripts/bench_sweep.py [--steps 50] [--dims 8 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.runs.ensembles import ensemble_flow, member_stream, random_qkv
from vlasov_tf.runs.sweeps import BATCH_SCORES


def plain_loop(x0: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, beta: float, T: float,
               steps: int) -> np.ndarray:  # fmt: skip
    """One beta's members (M, N, d), RK4 on the sphere, straightforward numpy."""

    def f(x: np.ndarray) -> np.ndarray:
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        qx, kx, vx = (np.einsum("mab,mnb->mna", a, x) for a in (q, k, v))
        s = beta * np.einsum("mia,mja->mij", qx, kx)
        p = np.exp(s - s.max(axis=2, keepdims=True))
        p = p / p.sum(axis=2, keepdims=True)
        a = np.einsum("mij,mja->mia", p, vx)
        return a - np.sum(a * x, axis=2, keepdims=True) * x

    x, h = x0.copy(), T / steps
    for _ in range(steps):
        k1 = f(x)
        k2 = f(x + 0.5 * h * k1)
        k3 = f(x + 0.5 * h * k2)
        k4 = f(x + h * k3)
        x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50, help="RK4 steps over [0, T]")
    ap.add_argument("--T", type=float, default=5.0)
    ap.add_argument("--dims", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--betas", type=int, default=100)
    ap.add_argument("--members", type=int, default=32)
    a = ap.parse_args()
    n = 64
    betas = np.geomspace(0.5, 100.0, a.betas)
    print(f"N = {n}, {a.betas} betas x {a.members} members, Gaussian Q, K, V, "
          f"RK4 {a.steps} steps to T = {a.T:g}")  # fmt: skip
    print(f"{'d':>3} {'numpy loop s':>13} {'vlasov_tf s':>12} {'members/s':>10} {'ratio':>6} {'max diff':>9}")
    for d in a.dims:
        rng = np.random.default_rng(d)
        x0 = np.stack([uniform_sphere(n, d, rng) for _ in range(a.members)])
        qkv = [random_qkv("gaussian", d, member_stream(0, m, 0)) for m in range(a.members)]
        q, k, v = (np.array([p[i] for p in qkv]) for i in range(3))

        tic = time.perf_counter()
        plain = np.stack([plain_loop(x0, q, k, v, beta, a.T, a.steps) for beta in betas])
        t_plain = time.perf_counter() - tic

        per_batch = max(1, BATCH_SCORES // (a.members * n * n))
        ours = np.empty_like(plain)
        tic = time.perf_counter()
        for first in range(0, len(betas), per_batch):
            b = betas[first : first + per_batch]
            params = tuple(np.tile(x, (len(b), 1, 1)) for x in (q, k, v))
            out = ours[first : first + len(b)].reshape(len(b) * a.members, n, d)

            def keep(i: int, x: np.ndarray, out: np.ndarray = out) -> None:
                if i == 1:
                    out[...] = x

            ensemble_flow(np.tile(x0, (len(b), 1, 1)), lambda _p, params=params: params,
                          np.repeat(b, a.members), np.array([0.0, a.T]), a.steps, callback=keep)  # fmt: skip
        t_ours = time.perf_counter() - tic
        count = len(betas) * a.members
        diff = np.abs(ours - plain).max()
        rate, ratio = count / t_ours, t_ours / t_plain
        print(f"{d:>3} {t_plain:>13.2f} {t_ours:>12.2f} {rate:>10.1f} {ratio:>6.2f} {diff:>9.1e}")


if __name__ == "__main__":
    main()
