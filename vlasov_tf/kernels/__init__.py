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
  heads, with their error bound and fix-up (:mod:`~vlasov_tf.kernels.pruned`: the rows the
  expansion cannot serve, summed over the key blocks that can matter), on the transforms of
  :mod:`~vlasov_tf.kernels.sphere` (ducc0) and :mod:`~vlasov_tf.kernels.circle` (finufft;
  FFT on uniform circle grids);
- :mod:`~vlasov_tf.kernels.zonal`: zonal kernels ``phi(<x, y>)`` of the interaction models and their
  expansions on S^1 and S^2 (:mod:`~vlasov_tf.kernels.zonal_function`: any callable);
  :mod:`~vlasov_tf.kernels.zonal_sums`: their dense and spectral sums
  (:func:`zonal_kernel_sums`, chosen in :mod:`~vlasov_tf.kernels.choice`);
- :mod:`~vlasov_tf.kernels.row_tolerance`: per-row tolerances (``kernel_sums(..., row_tol=)``), row
  budgets (``RowBudget``: weights and one error budget, the rows' tolerances allotted from the
  expansion's bounds) and the bound the rows served beyond ``tol`` are clipped to;
- :mod:`~vlasov_tf.kernels.distributed`: what the sums need from a measure split across MPI ranks;
- :mod:`~vlasov_tf.kernels.threads`: the thread count (``VLASOV_TF_NUM_THREADS``) and pool.

Design notes: docs/kernel_sums.md; docs/design.md §3.
"""

from .choice import (
    METHODS,
    SMALL_PAIRS,
    ZONAL_METHODS,
    choose_method,
    choose_zonal_method,
    few_pairs,
    kernel_sums,
    method_costs,
    zonal_kernel_sums,
    zonal_method_costs,
)
from .dense import dense_cost, exp_kernel_sums
from .distributed import Distributed
from .threads import blas_single_thread, num_threads
from .zonal import (
    MAX_ZONAL_DEGREE,
    Constant,
    ExpDifference,
    Exponential,
    Polynomial,
    ZonalExpansion,
    ZonalKernel,
    kernel_from_spec,
)
from .zonal_function import FunctionKernel

__all__ = [
    "MAX_ZONAL_DEGREE",
    "METHODS",
    "SMALL_PAIRS",
    "ZONAL_METHODS",
    "Constant",
    "Distributed",
    "ExpDifference",
    "Exponential",
    "FunctionKernel",
    "Polynomial",
    "ZonalExpansion",
    "ZonalKernel",
    "blas_single_thread",
    "choose_method",
    "choose_zonal_method",
    "dense_cost",
    "exp_kernel_sums",
    "few_pairs",
    "kernel_from_spec",
    "kernel_sums",
    "method_costs",
    "num_threads",
    "zonal_kernel_sums",
    "zonal_method_costs",
]
