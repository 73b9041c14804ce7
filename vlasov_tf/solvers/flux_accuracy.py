"""The grid's ``field_accuracy = "flux"``: the tolerance each flux point asks of the field's sums.

A flux ``F_fq = w_fq u_fq r_fq`` needs its velocity only as accurately as the upwind value ``r_fq``
makes it matter. :func:`flux_tolerances` asks ``tau_fq = tol max(1, q / b_f)`` of the kernel sums at
each flux point (:func:`~vlasov_tf.kernels.kernel_sums`' ``row_tol``), ``inf`` (the field's bound
only) where that reaches 1/2, with

- ``b_f = max(b_own, b_nbr)``, ``b_c = max(|rho_c|, max |p_c(x)|)`` over the cell's own (limited)
  reconstruction at its flux points: ``|r_fq| <= b_f`` whichever way ``u`` points, the
  low-dissipation blend included;
- ``q = 2^floor(log2(M / L))``, ``M`` the field measure's mass, ``L`` the mesh's total face length
  (a power of 2, so that the round-off of ``M``'s sum over MPI ranks cannot move a decision).

Then ``sum_fq w_fq |du_fq| |r_fq| <= 2 C U tol (sum_fq w_fq b_f + M)`` (``C = sqrt(d) + 1``, ``U``
the field's bound): the strict contract's bound plus ``2 C U tol M`` (docs/numerics.md §2.11).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["flux_tolerances", "mass_per_length"]

#: Tolerances from here up are ``inf``: the row is asked for the field's bound only.
UNBOUNDED = 0.5


def mass_per_length(mass: float, face_length: float) -> float:
    """``q = 2^floor(log2(M / L))`` (0 for no mass)."""
    return float(2.0 ** np.floor(np.log2(mass / face_length))) if mass > 0 else 0.0


def flux_tolerances(
    face_cells: np.ndarray,
    rho: np.ndarray,
    sides: tuple[np.ndarray, np.ndarray],
    q: float,
    tol: float,
    exchange: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """(F Q,) tolerances at the flux points (module docstring), face-major as the grid's queries.

    ``face_cells`` (F, 2) owner and neighbour; ``rho`` (C,) cell averages; ``sides`` the limited
    reconstruction's values at the flux points, (owner side (F, Q), neighbour side (F, Q));
    ``exchange`` refreshes halo entries of a (C,) array from their owners (MPI), so that every rank
    asks what the serial run asks.
    """
    own, nbr = face_cells[:, 0], face_cells[:, 1]
    r_own, r_nbr = sides
    bound = np.abs(rho)
    np.maximum.at(bound, own, np.abs(r_own).max(axis=1))
    np.maximum.at(bound, nbr, np.abs(r_nbr).max(axis=1))
    if exchange is not None:
        exchange(bound)
    b = np.maximum(bound[own], bound[nbr])
    with np.errstate(divide="ignore", invalid="ignore"):
        row_tol = tol * np.maximum(1.0, q / b)
    row_tol[~(row_tol < UNBOUNDED)] = np.inf  # b <= 2 tol q, or 0 / 0
    return np.repeat(row_tol, r_own.shape[1])
