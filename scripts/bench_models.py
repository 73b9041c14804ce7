"""Interaction-kernel models against attention at the same degree: a particle layer and a grid step.

Usage::

    python scripts/bench_models.py            # ~3 min on 2 cores (the level-4 grid is built once)
    python scripts/bench_models.py --quick    # N = 2e4 tokens and level 3

Targets (the models issue): a smooth non-exponential kernel's particle layer on S^2 (N = 1e5) and
grid step at level 4 within 1.5x of attention's zonal ones at the same degree; a user callable
within 2x of the named kernel of the same coefficients.

Models, all "auto" sums (spectral here):

- ``attention``: softmax, Q = K = V = I, at the beta whose spectral degree (``spectral.tail_degree``)
  is the interaction kernel's (the baseline);
- ``exp_difference``: ``e^{alpha (t - 1)} - r e^{rho (t - 1)}`` unnormalised, a named kernel with
  its proven expansion; ``normalised``: the same over ``psi = exp(t)`` (a second sum);
- ``callable``: the same function as a ``FunctionKernel`` (a user's Python callable: measured
  coefficients, cached after the first call);
- ``user model``: a user's object summing the whole measure itself (Lohe: ``K P_x int y dmu``,
  O(N)), for scale.

Rows: one field evaluation at N tokens (a Transformer layer is this plus the update) and one
SSP-RK3 step of the quadratic scheme (three field evaluations at the flux points, the fluxes).
Times are the best of ``--repeat`` after an untimed warm-up; ratios are to attention in the
same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchlib import best

from vlasov_tf import Params
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.kernels import ExpDifference, Exponential, FunctionKernel
from vlasov_tf.kernels.spectral import GEOMETRIES, tail_degree
from vlasov_tf.models import as_model
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.models.sums import Sums
from vlasov_tf.solvers.finite_volumes import FiniteVolume, ssp_rk3_step

PAIR = ExpDifference(a=1.0, alpha=8.0, r=0.5, rho=2.0)


class Lohe:
    """A user's model: identical Lohe oscillators, X = K P_x int y dmu."""

    d = 3

    def velocity(self, t, points, weights, queries):
        m = weights @ points
        return m - (queries @ m)[:, None] * queries




def matched_beta(degree: int) -> float:
    """The beta whose attention sums on S^2 use ``degree`` (the nearest, on a grid of 0.25)."""
    betas = np.arange(0.25, 60.0, 0.25)
    degrees = np.array([tail_degree(GEOMETRIES[3], b) for b in betas])
    return float(betas[np.argmin(np.abs(degrees - degree))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n_tokens, level = (20_000, 3) if args.quick else (100_000, 4)

    degree = PAIR.coefficients(3, 1e-10).degree
    beta = matched_beta(degree)
    callable_pair = FunctionKernel(
        lambda t: np.exp(8.0 * (t - 1.0)) - 0.5 * np.exp(2.0 * (t - 1.0)), label="user pair"
    )
    models = {
        "attention": Params.identity(3, beta),
        "exp_difference": Interaction(3, PAIR),
        "normalised": Interaction(3, PAIR, Exponential(1.0)),
        "callable": Interaction(3, callable_pair),
        "user model": as_model(Lohe()),
    }
    print(
        f"kernel {PAIR.name} (alpha = 8, rho = 2): degree {degree} at tol 1e-10; "
        f"attention at beta = {beta:g}: degree {tail_degree(GEOMETRIES[3], beta)}; callable: degree "
        f"{callable_pair.coefficients(3, 1e-10).degree}"
    )

    rng = np.random.default_rng(0)
    x = uniform_sphere(n_tokens, 3, rng)
    x = np.concatenate([x[: n_tokens // 2], 0.9 * x[n_tokens // 2 :] + 0.1 * np.array([0.0, 0.0, 1.0])])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = np.full(n_tokens, 1.0 / n_tokens)
    sums = Sums.by_method("auto")
    def layer_of(model) -> float:
        return best(lambda: model.evaluate(0.0, x, w, x, True, sums), args.repeat)

    layer = {name: layer_of(m) for name, m in models.items()}

    t0 = time.perf_counter()
    fv = FiniteVolume(sphere_mesh(level))
    built = time.perf_counter() - t0
    c = fv.mesh.centres
    rho = np.exp(3.0 * c[:, 2]) + np.exp(5.0 * c[:, 0])
    m0 = rho * fv.mesh.areas / (rho @ fv.mesh.areas)

    def step(model) -> None:
        u0 = fv.normal_velocity(model, 0.0, m0 / fv.mesh.areas)
        ssp_rk3_step(fv, model, 0.0, m0, 1e-3, u0)

    grid = {name: best(lambda m=m: step(m), max(1, args.repeat - 1)) for name, m in models.items()}

    print(f"\none field evaluation at N = {n_tokens} tokens on S^2, and one SSP-RK3 step at level {level}")
    flux = len(fv.points.reshape(-1, 3))
    print(f"({fv.mesh.n_cells} cells, {flux} flux points; operator built in {built:.1f} s):")
    print(f"{'model':>16}{'layer s':>10}{'ratio':>8}{'grid step s':>13}{'ratio':>8}")
    for name in models:
        print(
            f"{name:>16}{layer[name]:>10.4f}{layer[name] / layer['attention']:>8.2f}"
            f"{grid[name]:>13.3f}{grid[name] / grid['attention']:>8.2f}"
        )
    print(
        f"\ncallable / named kernel: layer {layer['callable'] / layer['exp_difference']:.2f}, "
        f"grid step {grid['callable'] / grid['exp_difference']:.2f} (target <= 2)"
    )


if __name__ == "__main__":
    main()
