"""Spectral sums with the pruned fix-up, the keys split across ranks, for tests/test_pruned.py:
``mpiexec -n P python tests/mpi_pruned.py``.

Every rank draws the same clustered keys and spread queries, keeps a block of the keys and its own
share of the queries, and computes ``kernel_sums(method="spectral", split=RingSums)``; the reference
is the serial spectral sums of the whole measure at the same queries and the dense sums. Rank 0
prints one JSON line: the largest row error (relative to the row's normaliser) against each, and the
share of rows the fix-up summed.
"""

import json

import numpy as np
from mpi4py import MPI

from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.kernels import exp_kernel_sums, kernel_sums
from vlasov_tf.parallel import RingSums


def errors(shift, sums, ref_shift, ref_sums):
    scaled = sums * np.exp(shift - ref_shift)[:, None]
    return float((np.abs(scaled - ref_sums).max(axis=1) / ref_sums[:, -1]).max(initial=0.0))


def main() -> None:
    comm = MPI.COMM_WORLD
    p, rank = comm.size, comm.rank
    split = RingSums(comm)
    out = {}
    for beta in (30.0, 300.0):
        rng = np.random.default_rng(11)
        centres = uniform_sphere(4, 3, rng)
        y = centres[rng.integers(0, 4, 4000)] + 0.05 * rng.standard_normal((4000, 3))
        y /= np.linalg.norm(y, axis=1)[:, None]
        w = rng.random(4000) ** 3
        x = uniform_sphere(700, 3, rng)
        mine = np.array_split(np.arange(4000), p)[rank]
        rows = np.array_split(np.arange(700), p)[rank]
        z = beta * x[rows]
        got = kernel_sums(z, y[mine], w[mine], y[mine], method="spectral", split=split)
        serial = kernel_sums(z, y, w, y, method="spectral")
        dense = exp_kernel_sums(z, y, w, y)
        fixed = np.count_nonzero(
            ~np.isclose(got[0], np.linalg.norm(z, axis=1) + np.log(w.sum()), rtol=0, atol=1e-12)
        )
        out[f"beta={beta:g} serial"] = comm.allreduce(errors(*got, *serial), op=MPI.MAX)
        out[f"beta={beta:g} dense"] = comm.allreduce(errors(*got, *dense), op=MPI.MAX)
        out[f"beta={beta:g} fixed share"] = comm.allreduce(fixed, op=MPI.SUM) / 700
    if rank == 0:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
