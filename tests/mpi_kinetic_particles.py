"""Kinetic token runs for tests/test_kinetic_particles.py.

``mpiexec -n P python tests/mpi_kinetic_particles.py OUT [serial]``.

With ``serial`` the same problems run without a communicator. Rank 0 saves every result to the
npz file OUT. Problems: the three integrators with friction and alignment on S^2 (a general
attention head and a perceptron: dense ring sums), and the HMF model on the circle (a constant
kernel: spectral sums summed over the ranks), alone and in a heat bath (the kicks keyed to the
global token indices).
"""

import sys

import numpy as np

from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.tangent_bundle import maxwellian_velocities
from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.attention import Head, Params, Perceptron
from vlasov_tf.models.base import with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.solvers.kinetic_particles import solve_kinetic_particles


def main() -> None:
    out, serial = sys.argv[1], sys.argv[2:] == ["serial"]
    comm = None
    if not serial:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    rng = np.random.default_rng(7)
    d = 3
    general = Params(
        heads=(Head(B=rng.normal(size=(d, d)), V=rng.normal(size=(d, d))),),
        perceptron=Perceptron(W=rng.normal(size=(d, 4)), U=rng.normal(size=(4, d)), b=rng.normal(size=4)),
    )
    x = uniform_sphere(37, d, rng)
    v = maxwellian_velocities(x, 0.5, rng)
    w = rng.random(37)
    results = {}
    for method in ("layers", "verlet", "rk4"):
        sol = solve_kinetic_particles(
            general, x, v, w, T=0.5, method=method, steps=20, friction=0.3, alignment=0.4,
            t_eval=[0.0, 0.25, 0.5], comm=comm, field_method="dense",
        )  # fmt: skip
        results[f"{method}_x"], results[f"{method}_v"] = sol.positions, sol.velocities
        results[f"{method}_momentum"], results[f"{method}_kinetic"] = sol.momentum, sol.kinetic
    theta = 2 * np.pi * rng.random(300)
    xc = np.c_[np.cos(theta), np.sin(theta)]
    vc = rng.normal(size=300)[:, None] * np.c_[-np.sin(theta), np.cos(theta)]
    hmf = solve_kinetic_particles(
        Interaction(2, Constant(1.0)), xc, vc, T=1.0, method="verlet", steps=10, comm=comm,
        field_method="spectral",
    )  # fmt: skip
    results["hmf_x"], results["hmf_v"], results["hmf_energy"] = hmf.positions, hmf.velocities, hmf.energy
    for method in ("layers", "verlet"):
        bath = solve_kinetic_particles(
            with_noise(Interaction(2, Constant(1.0)), 0.3), xc, vc, T=1.0, method=method, steps=10,
            friction=0.7, comm=comm, noise_seed=(3, 1),
        )  # fmt: skip
        results[f"bath_{method}_x"], results[f"bath_{method}_v"] = bath.positions, bath.velocities
    if comm is None or comm.rank == 0:
        np.savez(out, **results)


if __name__ == "__main__":
    main()
