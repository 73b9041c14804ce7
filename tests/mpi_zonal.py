"""Zonal sums split across ranks for tests/test_zonal.py: ``mpiexec -n P python tests/mpi_zonal.py``.

Every rank draws the same keys and queries, keeps a block of the keys (P >= 3: rank 1's is empty,
the last rank's has zero weights) and its own share of the queries, and computes the split sums
(spectral, dense, auto) through RingSums; the serial sums of the whole measure at its queries are
the reference ("auto": by the method the serial choice makes for all the queries, as the split
choice is made from the global sizes). Rank 0 prints one JSON line: the largest error per case relative to
``sup|phi| T_c`` over all ranks.
"""

import json

import numpy as np
from mpi4py import MPI

from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.kernels import (
    ExpDifference,
    FunctionKernel,
    Polynomial,
    choose_zonal_method,
    zonal_kernel_sums,
)
from vlasov_tf.parallel import RingSums


def main() -> None:
    comm = MPI.COMM_WORLD
    p, rank = comm.size, comm.rank
    split = RingSums(comm)
    out = {}
    for d in (2, 3):
        rng = np.random.default_rng(5)
        y = uniform_sphere(2000, d, rng)
        w = rng.random(2000)
        v = rng.standard_normal((2000, 2))
        x = uniform_sphere(900, d, rng)
        blocks = np.array_split(np.arange(2000), p)
        if p >= 3:
            blocks[0], blocks[1] = np.r_[blocks[0], blocks[1]], blocks[1][:0]
        if p >= 3:
            w[blocks[-1]] = 0.0
        mine, queries = blocks[rank], np.array_split(x, p)[rank]
        totals = np.abs(w[:, None] * np.c_[v, np.ones(2000)]).sum(axis=0)
        kinked = FunctionKernel(np.abs, "abs")  # "auto" sums it densely
        for kernel in (ExpDifference(1.0, 12.0, 0.7, 3.0), Polynomial((0.5, -1.0, 0.0, 2.0)), kinked):
            for method in ("spectral", "dense", "auto") if kernel is not kinked else ("dense", "auto"):
                block = (y[mine], w[mine], v[mine])
                got = zonal_kernel_sums(kernel, queries, *block, method=method, split=split)
                serial = choose_zonal_method(kernel, x, y, w, 2) if method == "auto" else method
                want = zonal_kernel_sums(kernel, queries, y, w, v, method=serial)
                err = float((np.abs(got - want) / (kernel.sup() * totals)).max(initial=0.0))
                out[f"{kernel.name} d={d} {method}"] = comm.allreduce(err, op=MPI.MAX)
                if method == "auto":
                    out[f"{kernel.name} d={d} auto picks"] = serial
    if rank == 0:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
