"""Kinetic grid runs for tests/test_kinetic_mpi.py: ``mpiexec -n P python tests/mpi_kinetic.py OUT [serial]``.

With ``serial`` it runs the same problems without a communicator. Rank 0 saves every result to
the npz file OUT. Problems: the nonlinear HMF (K = 1) from a tilted two-beam state; with friction
and velocity noise; attention at B = 0 (SA) with a step long enough that the stream's halo spans
more than one block at 3 ranks.
"""

import sys

import numpy as np

from vlasov_tf.analysis.kinetic_theory import VelocityLaw
from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.attention import Head, Params
from vlasov_tf.models.base import with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.solvers.kinetic_grid import PhaseGrid, solve_kinetic_grid


def initial(g: PhaseGrid) -> np.ndarray:
    law = VelocityLaw((1.0, 0.4), (0.3, -0.5), (0.1, 0.05))
    rho = (1 + 0.3 * np.cos(g.theta - 0.7)) / (2 * np.pi)
    return rho[:, None] * law.cell_averages(g.v_faces)[None, :]


def main() -> None:
    out, serial = sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "serial"
    comm = None
    if not serial:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    g = PhaseGrid(30, 64, 3.0)
    hmf = Interaction(d=2, kernel=Constant(1.0))
    sa = Params(heads=(Head(B=np.zeros((2, 2)), V=np.eye(2)),))
    runs = {
        "hmf": solve_kinetic_grid(hmf, initial(g), g, 2.0, dt=0.1, t_eval=[0, 1, 2], comm=comm),
        "noisy": solve_kinetic_grid(
            with_noise(hmf, 0.2), initial(g), g, 1.0, dt=0.1, friction=0.5, comm=comm
        ),
        "wide_halo": solve_kinetic_grid(sa, initial(g), g, 1.5, dt=1.5, comm=comm),  # halo 13 > 10
    }
    if comm is None or comm.rank == 0:
        arrays = {f"{k}_f": s.f for k, s in runs.items()}
        np.savez(out, **arrays, **{f"{k}_outflow": s.outflow for k, s in runs.items()})


if __name__ == "__main__":
    main()
