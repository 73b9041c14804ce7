"""What the kernel sums need from a measure split across MPI ranks (supplied by :mod:`vlasov_tf.parallel`).

The kernels package never imports mpi4py: a solver running under MPI passes an
object with these three collective operations (every rank calls each of them the
same number of times, in the same order).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Distributed"]


class Distributed(Protocol):
    """This rank's view of a measure split across ranks: ``(y, weights, values)`` is its block."""

    def allreduce(self, a: np.ndarray) -> np.ndarray:
        """Elementwise sum of the float array ``a`` over the ranks (every rank gets it)."""

    def allgather(self, a: np.ndarray) -> np.ndarray:
        """``(P, *a.shape)``: every rank's ``a`` (small arrays: sizes and ranges)."""

    def dense(
        self, z: np.ndarray, y: np.ndarray, weights: np.ndarray, values: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dense scaled sums of this rank's queries ``z`` (possibly none) over every rank's block."""
