"""Sums of exponential kernels: the numerical engine behind the attention field.

Everything nonlocal in the project reduces to, for queries ``z_i`` (``B x_i`` for a
head with score matrix ``B``) and weighted keys ``(y_j, w_j)`` with values ``v_j``::

    S_i = sum_j w_j exp(<z_i, y_j>) [v_j, 1] = exp(shift_i) sums_i

(scaled so that nothing overflows at beta = 1000). :func:`kernel_sums` computes them
by the method :mod:`~vlasov_tf.kernels.choice` picks, every row within ``tol`` of the
dense sum. The modules:

- :mod:`~vlasov_tf.kernels.choice`: method names, cost estimates, the choice, :func:`kernel_sums`;
- :mod:`~vlasov_tf.kernels.dense`: the exact O(n m) sums (fused numba kernel, numpy tiles);
- :mod:`~vlasov_tf.kernels.taylor`: truncated Taylor features (any d, small beta);
- :mod:`~vlasov_tf.kernels.spectral`: harmonic expansions on S^1 and S^2, zonal and general
  heads, with their error bound and dense fix-up, on the transforms of
  :mod:`~vlasov_tf.kernels.sphere` (ducc0) and :mod:`~vlasov_tf.kernels.circle` (finufft;
  FFT on uniform circle grids);
- :mod:`~vlasov_tf.kernels.distributed`: what the sums need from a measure split across MPI ranks;
- :mod:`~vlasov_tf.kernels.threads`: the thread count (``VLASOV_TF_NUM_THREADS``) and pool.

Design notes: docs/kernel_sums.md; docs/design.md §3.
"""

from .choice import METHODS, SMALL_PAIRS, choose_method, few_pairs, kernel_sums, method_costs
from .dense import dense_cost, exp_kernel_sums
from .distributed import Distributed
from .threads import blas_single_thread, num_threads

__all__ = [
    "METHODS",
    "SMALL_PAIRS",
    "Distributed",
    "blas_single_thread",
    "choose_method",
    "dense_cost",
    "exp_kernel_sums",
    "few_pairs",
    "kernel_sums",
    "method_costs",
    "num_threads",
]
