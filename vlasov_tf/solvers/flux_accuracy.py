"""The grid's ``field_accuracy = "flux"``: the error budget the flux points hand the field's sums.

A flux ``F_fq = w_fq u_fq r_fq`` needs its velocity only as accurately as the upwind value ``r_fq``
makes it matter, and the fluxes' error bound needs only the weighted sum ``sum_fq c_fq tau_fq``
(``c_fq = w_fq b_f``) of the flux points' tolerances. :func:`flux_tolerances` hands the kernel sums
(:func:`~vlasov_tf.kernels.kernel_sums`' ``row_tol``) a
:class:`~vlasov_tf.kernels.row_tolerance.RowBudget`: the weights ``c_fq`` and the budget ``E = tol q
L``; the sums serve from their expansion the flux points of least extra cost until ``E`` is spent
and fix up the others within ``tol`` (``sum_fq c_fq tau_fq <= tol (sum_fq c_fq + q L)``), with

- ``b_f = max(b_own, b_nbr)``, ``b_c = max(|rho_c|, max |p_c(x)|)`` over the cell's own (limited)
  reconstruction at its flux points: ``|r_fq| <= b_f`` whichever way ``u`` points, the
  low-dissipation blend included;
- ``q = 2^floor(log2(sum_fq c_fq / L))``, ``L`` the mesh's total face length: the flux points'
  bound ``b`` averaged over the face length, rounded down to a power of 2 (so that the round-off of
  the sum over MPI ranks moves a decision only where it lies within round-off of a power of 2).

So ``E = tol q L <= tol sum_fq c_fq``: the budget is what the strict contract (every row within
``tol``) itself allows the fluxes, and ``sum_fq w_fq |du_fq| |r_fq| <= 2 C U tol (sum_fq c_fq + q L)
<= 4 C U tol sum_fq w_fq b_f`` (``C = sqrt(d) + 1``, ``U`` the field's bound): at most twice the
strict contract's bound, on every mesh (docs/numerics.md §2.11). The budget's per-row tolerances
for the method choice's estimate are the fixed rule that fits the same budget, ``tol max(1, q /
b_f)`` (``inf`` where that reaches 1/2).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..kernels.row_tolerance import CAP, RowBudget

__all__ = ["flux_tolerances", "power_of_two_below"]


def power_of_two_below(x: float) -> float:
    """``2^floor(log2 x)`` (0 for ``x <= 0``)."""
    return float(2.0 ** np.floor(np.log2(x))) if x > 0 else 0.0


def flux_tolerances(
    face_cells: np.ndarray,
    rho: np.ndarray,
    sides: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    face_length: float,
    tol: float,
    exchange: Callable[[np.ndarray], None] | None = None,
    n_owned: int | None = None,
    allreduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> RowBudget:
    """The budget of the (F Q,) flux points (module docstring), face-major as the grid's queries.

    ``face_cells`` (F, 2) owner and neighbour; ``rho`` (C,) cell averages; ``sides`` the limited
    reconstruction's values at the flux points, (owner side (F, Q), neighbour side (F, Q));
    ``weights`` (F, Q) the flux points' quadrature weights (summing to the face lengths);
    ``face_length`` ``L`` the whole mesh's total face length;
    ``exchange`` refreshes halo entries of a (C,) array from their owners (MPI), so that every rank
    asks what the serial run asks; ``n_owned`` (MPI): the first ``n_owned`` cells are this rank's,
    and the budget's histogram and ``sum c`` count the faces whose owner cell is (a face next to a
    halo is on several ranks: counted once, on its owner cell's rank, the serial run's counts);
    ``allreduce`` sums a (1,) array over the ranks (MPI).
    """
    own, nbr = face_cells[:, 0], face_cells[:, 1]
    r_own, r_nbr = sides
    bound = np.abs(rho)
    np.maximum.at(bound, own, np.abs(r_own).max(axis=1))
    np.maximum.at(bound, nbr, np.abs(r_nbr).max(axis=1))
    if exchange is not None:
        exchange(bound)
    b = np.maximum(bound[own], bound[nbr])
    costs = (np.asarray(weights, dtype=float).reshape(len(b), -1) * b[:, None]).ravel()
    counted = None if n_owned is None else np.repeat(own < n_owned, r_own.shape[1])
    total = np.array([costs.sum() if counted is None else costs[counted].sum()])
    if allreduce is not None:
        total = allreduce(total)
    q = power_of_two_below(float(total[0]) / face_length)
    with np.errstate(divide="ignore", invalid="ignore"):
        row_tol = tol * np.maximum(1.0, q / b)
    # From CAP up a tolerance is inf (the field's bound only), as the budget counts a clipped row.
    row_tol[~(row_tol < CAP)] = np.inf  # b <= 2 tol q, or 0 / 0
    return RowBudget(costs, tol * q * face_length, np.repeat(row_tol, r_own.shape[1]), counted)
