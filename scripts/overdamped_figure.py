"""The overdamped limit of second-order tokens, drawn: with friction gamma and time rescaled,
``y(tau) = x(gamma tau)``, the positions follow the first-order flow ``y' = F(y)`` as gamma grows.

HMF on the circle (the constant kernel, K = 3), 16 tokens at rest at random angles: left, the angles
of the second-order tokens ("verlet", 16 gamma^2 steps) at ``t = gamma tau`` for gamma = 2, 8 against
the first-order flow (DOP853) up to tau = 2; right, the largest angle error at tau = 2 against gamma, with the
slope -2 expected from rest (docs/guide/kinetic_particles.md). Writes docs/guide/overdamped.png
(about 10 s)::

    python scripts/overdamped_figure.py [--out docs/guide/overdamped.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.plots.canvas import new_figure, save_figure
from vlasov_tf.solvers.kinetic_particles import solve_kinetic_particles
from vlasov_tf.solvers.particles import solve_particles


def angles(x: np.ndarray) -> np.ndarray:
    return np.unwrap(np.arctan2(x[..., 1], x[..., 0]), axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/guide/overdamped.png"))
    args = ap.parse_args()
    hmf = Interaction(2, Constant(3.0))
    theta = np.sort(np.random.default_rng(3).uniform(0, 2 * np.pi, 16))
    x0 = np.c_[np.cos(theta), np.sin(theta)]
    tau = np.linspace(0, 2, 81)
    first = angles(solve_particles(hmf, x0, T=2.0, method="adaptive", t_eval=tau).positions)
    fig = new_figure((11, 4.2))
    ax_t, ax_e = fig.subplots(1, 2)
    ax_t.plot(tau, first, "k-", lw=1.5)
    gammas = np.array([2.0, 4.0, 8.0, 16.0])
    errors = []
    for gamma in gammas:
        sol = solve_kinetic_particles(hmf, x0, 0 * x0, T=2 * gamma, method="verlet", steps=int(16 * gamma**2),
                                      friction=gamma, t_eval=gamma * tau)  # fmt: skip
        second = angles(sol.positions)
        errors.append(float(np.abs(second[-1] - first[-1]).max()))
        if gamma in (2.0, 8.0):
            ax_t.plot(tau, second, "--" if gamma == 2 else ":", lw=1.2, color="C0" if gamma == 2 else "C3")
    ax_t.plot([], [], "k-", label="first-order flow y' = F(y)")
    ax_t.plot([], [], "--", color="C0", label="second order, gamma = 2, at t = gamma tau")
    ax_t.plot([], [], ":", color="C3", label="second order, gamma = 8")
    ax_t.set_xlabel("tau = t / gamma")
    ax_t.set_ylabel("token angle")
    ax_t.set_title("HMF (K = 3), 16 tokens from rest", fontsize=10)
    ax_t.legend(fontsize=8)
    ax_t.grid(alpha=0.3)
    ax_e.loglog(gammas, errors, "o-", label="max angle error at tau = 2")
    ax_e.loglog(gammas, errors[-1] * (gammas / gammas[-1]) ** -2.0, "k:", label="slope -2")
    ax_e.set_xlabel("friction gamma")
    ax_e.set_title("overdamped limit: error against gamma", fontsize=10)
    ax_e.legend(fontsize=8)
    ax_e.grid(alpha=0.3, which="both")
    print("gamma", gammas.tolist(), "error", [f"{e:.2e}" for e in errors])
    print(save_figure(fig, args.out))


if __name__ == "__main__":
    main()
