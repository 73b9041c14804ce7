"""Print the numbers docs/guide/kinetic_particles.md quotes: observed orders, energy and momentum
errors, the overdamped limit's rates, the HMF growth and damping rates against the dispersion
relation, and the heat bath's magnetisation (about a minute on 2 cores).

    python scripts/kinetic_particles_checks.py

The problems are those of tests/test_kinetic_particles.py (whose helpers this imports), which
asserts the same numbers with ceilings.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_kinetic_particles import (
    HMF,
    hmf_magnetisation,
    hmf_quiet_start,
    hmf_root,
    sphere_state,
)

from vlasov_tf.models.attention import Params
from vlasov_tf.models.base import with_noise
from vlasov_tf.solvers.kinetic_particles import solve_kinetic_particles
from vlasov_tf.solvers.particles import solve_particles


def orders() -> None:
    model = Params.identity(3, 1.0, "USA")
    x, v, w = sphere_state(8, 3, 0)
    w = w / w.sum()
    for friction, alignment in ((0.0, 0.0), (0.5, 0.3)):
        kw = {"T": 2.0, "friction": friction, "alignment": alignment}
        ref = solve_kinetic_particles(model, x, v, w, method="rk4", steps=640, **kw).final
        for method, steps in (("layers", [100, 200, 400]), ("verlet", [50, 100, 200]), ("rk4", [20, 40, 80])):
            errs = []
            for n in steps:
                xs, vs = solve_kinetic_particles(model, x, v, w, method=method, steps=n, **kw).final
                errs.append(max(np.abs(xs - ref[0]).max(), np.abs(vs - ref[1]).max()))
            observed = np.log2(np.array(errs[:-1]) / errs[1:])
            print(
                f"order  gamma={friction} K={alignment} {method:6s} steps {steps}: errors "
                f"{' '.join(f'{e:.2e}' for e in errs)}, observed {' '.join(f'{o:.2f}' for o in observed)}"
            )


def conservation() -> None:
    model = Params.identity(3, 1.0, "USA")
    x, v, w = sphere_state(10, 3, 3)
    w = w / w.sum()
    for method, steps in (("layers", [200, 400]), ("verlet", [100, 200]), ("rk4", [40, 80])):
        for n in steps:
            sol = solve_kinetic_particles(
                model, x, v, w, T=2.0, method=method, steps=n, t_eval=np.linspace(0, 2, 21)
            )
            print(
                f"energy {method:6s} {n:4d} steps: E range {np.ptp(sol.energy):.2e}, "
                f"max |L - L0| {np.abs(sol.momentum - sol.momentum[0]).max():.1e} (|L| = 0.25)"
            )


def overdamped() -> None:
    model = Params.identity(3, 2.0, "SA")
    x, v, _ = sphere_state(8, 3, 1)
    first = solve_particles(model, x, T=1.0, method="adaptive").final
    for name, v0 in (("at rest", 0 * v), ("moving", v)):
        errs = []
        for gamma in (4.0, 8.0, 16.0):
            sol = solve_kinetic_particles(
                model, x, v0, T=gamma, method="verlet", steps=int(8 * gamma**2), friction=gamma
            )
            errs.append(np.abs(sol.final[0] - first).max())
        print(
            f"overdamped {name}: gamma 4, 8, 16 errors {' '.join(f'{e:.2e}' for e in errs)}, "
            f"ratios {' '.join(f'{r:.2f}' for r in np.array(errs[:-1]) / errs[1:])}"
        )


def dispersion() -> None:
    for temperature, amplitude, n_v in ((0.25, 1e-4, 256), (0.75, 1e-2, 1024)):
        x, v = hmf_quiet_start(8, n_v, temperature, amplitude)
        times = np.linspace(0, 9, 91)
        sol = solve_kinetic_particles(HMF, x, v, T=9.0, method="verlet", steps=180, t_eval=times)
        m = np.linalg.norm(sol.positions.mean(axis=1), axis=1)
        rate = np.polyfit(times[times >= 3], np.log(m[times >= 3]), 1)[0]
        root = hmf_root(temperature, 0.3j if temperature < 0.5 else -0.3j)
        print(
            f"HMF T={temperature}: {8 * n_v} tokens rate {rate:.5f}, dispersion relation {root.imag:.5f} "
            f"(Re {root.real:.0e}), relative {rate / root.imag - 1:.1e}"
        )


def bath() -> None:
    rng = np.random.default_rng(0)
    for temperature in (0.25, 0.4, 0.75):
        theta, omega = 0.5 * rng.normal(size=2000), np.sqrt(temperature) * rng.normal(size=2000)
        x = np.c_[np.cos(theta), np.sin(theta)]
        v = omega[:, None] * np.c_[-np.sin(theta), np.cos(theta)]
        times = np.linspace(0, 60, 121)
        sol = solve_kinetic_particles(
            with_noise(HMF, temperature), x, v, T=60.0, method="verlet", steps=600, friction=1.0, t_eval=times
        )
        late = times >= 20
        m = np.linalg.norm(sol.positions.mean(axis=1), axis=1)[late]
        print(
            f"bath T={temperature}: <|m|> {m.mean():.4f} (Gibbs {hmf_magnetisation(temperature):.4f}), "
            f"2 E_kin {2 * sol.kinetic[late].mean():.4f}"
        )


if __name__ == "__main__":
    orders()
    conservation()
    overdamped()
    dispersion()
    bath()
