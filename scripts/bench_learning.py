"""Training speed of vlasov_tf.learning against a plain JAX loop, and the learned map's cost against
the target solver's.

Usage::

    python scripts/bench_learning.py            # ~2 min on 2 cores
    python scripts/bench_learning.py --quick    # fewer steps and tokens

Part 1, steps per second on the shipped case's network (``cases/learn_kuramoto.toml``: L = 16,
4 blocks, H = 2, m = 8, batches of 16 measures of 64 tokens on the circle), all in this run:

- ``plain JAX``: ``jax.jit`` of ``value_and_grad`` and the optax update, the batch a fixed slice,
  no host synchronisation until the end (the floor);
- ``train()``: :func:`vlasov_tf.learning.training.train` (seeded batches drawn on the host, the loss
  read back every step for the NaN stop), no checkpoints;
- ``train() + checkpoints``: the same with a checkpoint to a run file every 25 steps (the whole
  file rewritten and fsynced).

Part 2, one application of the learned map at N tokens: the learned Schedule through
``solve_particles(method="layers", steps=L)`` (numpy, the project's sums) and through the jitted JAX
forward pass, against the target's flow by DOP853 at rtol 1e-10 (the labels) and by RK4 with 64 steps.
Times are the best of ``--repeat`` after a warm-up (compilation excluded; given separately).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from benchlib import best

from vlasov_tf.learning.cases import load_learning_case
from vlasov_tf.learning.data import label_tokens
from vlasov_tf.learning.network import forward, init_params, to_schedule
from vlasov_tf.learning.store import LearningRun
from vlasov_tf.learning.training import TrainState, make_optimizer, token_loss, train
from vlasov_tf.runs.cases import CASES_DIR
from vlasov_tf.solvers.particles import solve_particles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    steps = 20 if args.quick else 100
    case = load_learning_case(CASES_DIR / "learn_kuramoto.toml")
    arch = case.arch
    X = np.stack([case.family.tokens(0, "train", i, case.tokens) for i in range(case.batch)])
    Y = np.roll(X, 1, axis=-1)  # any labels: the cost does not depend on them
    params0 = init_params(arch, 0)
    print(f"device: {jax.devices()[0]}; network: L = {arch.layers}, {arch.blocks} blocks, H = {arch.heads}, "
          f"m = {arch.hidden}; batch {case.batch} x {case.tokens} tokens; {steps} steps")  # fmt: skip

    optimizer = make_optimizer(case.learning_rate)

    @jax.jit
    def plain_step(params, opt_state, X, Y):
        loss, grads = jax.value_and_grad(lambda q: token_loss(arch, q, X, Y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return jax.tree_util.tree_map(lambda a, u: a + u, params, updates), opt_state, loss

    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

    def plain() -> None:
        params = {k: jnp.asarray(v) for k, v in params0.items()}
        opt_state = optimizer.init(params)
        loss = None
        for _ in range(steps):
            params, opt_state, loss = plain_step(params, opt_state, Xj, Yj)
        jax.block_until_ready(loss)

    def ours(every: int, run: LearningRun | None) -> None:
        state = TrainState(0, dict(params0), [])
        train(arch, state, (X, Y), steps=steps, learning_rate=case.learning_rate, batch=case.batch,
              seed=0, checkpoint_every=every, checkpoint=None if run is None else run.checkpoint)  # fmt: skip

    t0 = time.perf_counter()
    plain_step(params0, optimizer.init(params0), Xj, Yj)
    compile_s = time.perf_counter() - t0
    rows = [("plain JAX", best(plain, args.repeat))]
    rows.append(("train()", best(lambda: ours(10**9, None), args.repeat)))
    with tempfile.TemporaryDirectory() as tmp:
        run = LearningRun.create(
            Path(tmp) / "bench.h5", case_text=case.text, case_name=case.name, overrides={}, arch=arch,
            splits={}, data={s: (X, Y) for s in ("train", "validation", "test")},
        )  # fmt: skip
        rows.append(("train() + checkpoints every 25", best(lambda: ours(25, run), args.repeat)))
        run.close()
    print(f"\ncompilation of the step: {compile_s:.1f} s\n")
    print(f"{'loop':34s} {'steps/s':>9s} {'vs plain':>9s}")
    for name, sec in rows:
        print(f"{name:34s} {steps / sec:9.1f} {rows[0][1] / sec:9.2f}")

    schedule = to_schedule(arch, params0)
    fwd = jax.jit(lambda p, x: forward(arch, p, x))
    pj = {k: jnp.asarray(v) for k, v in params0.items()}
    cols = ("learned (numpy)", "learned (JAX)", "target DOP853", "target RK4-64")
    print(f"\n{'N':>6s} " + " ".join(f"{c:>15s}" for c in cols) + "   (seconds for one map mu_0 -> mu_T)")
    for n in (1000,) if args.quick else (1000, 10000):
        x = case.family.tokens(0, "test", 0, n)
        r = args.repeat
        t_np = best(lambda x=x: solve_particles(schedule, x, method="layers", steps=arch.layers), r)
        # The JAX pass forms the (N, N) scores: 0.8 GB a head at N = 1e4, so it stops at a few thousand.
        t_jax = best(lambda x=x: jax.block_until_ready(fwd(pj, x)), r) if n <= 4000 else float("nan")
        t_ref = best(lambda x=x: label_tokens(case.target, x, case.T), 1)
        t_rk4 = best(lambda x=x: solve_particles(case.target, x, T=case.T, method="rk4", steps=64), r)
        print(f"{n:6d} " + " ".join(f"{t:15.3f}" for t in (t_np, t_jax, t_ref, t_rk4)))


if __name__ == "__main__":
    main()
