"""Linear theory of the uniform state: growth rates of its modes and their projections.

Q = K = V = I attention, a small perturbation of the uniform density by one mode:
``a cos(k (t - phase))`` on the circle grows at ``k^2 I_k(beta) / (beta I_0(beta))`` (SA) or
``k^2 I_k(beta) / beta`` (USA), ``a P_l(<x, axis>)`` on S^2 at
``l (l + 1) i_l(beta) / (beta i_0(beta))`` (SA) or ``l (l + 1) i_l(beta) / beta`` (USA)
(Fourier / Funk-Hecke coefficients of the kernel; docs/equations.md). The figures compare the
measured mode amplitudes with these predictions.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from vlasov_tf.geometry.initial import UniformPerturbed
from vlasov_tf.model import zonal_beta

__all__ = ["linear_growth_rate", "mode_amplitude", "predicted_growth"]


def linear_growth_rate(d: int, mode: int, beta: float, attention: str = "SA") -> float:
    """Growth rate of the mode ``mode`` of a small perturbation of the uniform state (README).

    Circle (d = 2), ``a cos(k t)``: ``k^2 I_k(beta) / (beta I_0(beta))`` (SA), ``k^2 I_k(beta) / beta``
    (USA); S^2 (d = 3), ``a Y_l``: ``l (l + 1) i_l(beta) / (beta i_0(beta))`` (SA),
    ``l (l + 1) i_l(beta) / beta`` (USA), with ``I_k`` the modified Bessel and ``i_l`` the modified
    spherical Bessel functions (exponentially scaled here: the scale factors cancel in SA).
    """
    if attention not in ("SA", "USA"):
        raise ValueError(f"attention must be 'SA' or 'USA', got {attention!r}")
    if d == 2:
        rate = mode * mode * special.ive(mode, beta) / beta
        return float(rate / special.ive(0, beta) if attention == "SA" else rate * np.exp(beta))
    if d == 3:
        rate = mode * (mode + 1) * special.spherical_in(mode, beta) / beta
        return float(rate / special.spherical_in(0, beta) if attention == "SA" else rate)
    raise ValueError(f"linear growth rates are for the circle (d = 2) and S^2 (d = 3), not d = {d}")


def predicted_growth(case, times: np.ndarray) -> np.ndarray | None:
    """``exp(int_0^t lambda)``: the linear theory's amplitude of the perturbed mode, relative to t = 0.

    ``lambda`` is :func:`linear_growth_rate` of each schedule block (piecewise constant). None
    when the initial measure is not ``uniform_perturbed`` or a block is not Q = K = V = I.
    """
    initial = case.initial
    if not isinstance(initial, UniformPerturbed):
        return None
    t = np.asarray(times, dtype=float)
    exponent = np.zeros_like(t)
    start = 0.0
    for tau, params in case.schedule.blocks:
        beta = zonal_beta(params)
        if beta is None:
            return None
        lam = linear_growth_rate(case.d, initial.mode, beta, params.attention)
        exponent += lam * np.clip(t - start, 0.0, tau)
        start += tau
    return np.exp(exponent)


def mode_amplitude(
    initial: UniformPerturbed, points: np.ndarray, masses: np.ndarray, areas: np.ndarray | None = None
) -> np.ndarray:
    """Projections ``sum_i m_i f(x_i)`` of measures on the mode f of ``initial``
    (:meth:`~vlasov_tf.geometry.initial.UniformPerturbed.harmonic`).

    ``masses`` (n,) or (n_t, n). For a grid, ``points`` are the cell centres and ``areas`` the
    cell areas: f is then first made of zero mean on the grid (``f - sum f A / sum A``), so that
    the uniform part of the density, which the perturbation rides on, projects to exactly 0.
    """
    f = initial.harmonic(np.asarray(points, dtype=float))
    if areas is not None:
        f = f - (f @ areas) / areas.sum()
    return np.asarray(masses, dtype=float) @ f
