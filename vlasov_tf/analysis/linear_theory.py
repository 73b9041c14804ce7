"""Linear theory of the uniform state: the predicted growth of a perturbed mode, and its projections.

A small perturbation of the uniform density by one mode (``a cos(k (t - phase))`` on the circle,
``a P_l(<x, axis>)`` on S^2) grows at the model's rate
(:meth:`~vlasov_tf.models.base.MeanField.growth_rate`): for Q = K = V = I attention
``k^2 I_k(beta) / (beta I_0(beta))`` (SA) or ``k^2 I_k(beta) / beta`` (USA) on the circle,
``l (l + 1) i_l(beta) / (beta i_0(beta))`` (SA) or ``l (l + 1) i_l(beta) / beta`` (USA) on S^2;
for interaction kernels the Fourier / Funk-Hecke formulae of :mod:`vlasov_tf.models.interaction`
(docs/equations.md). The figures compare the measured mode amplitudes with these predictions.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from vlasov_tf.geometry.initial import UniformPerturbed
from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.solvers.finite_volumes import solve_grid

__all__ = ["grid_growth_rate", "mode_amplitude", "predicted_growth"]


def predicted_growth(case, times: np.ndarray) -> np.ndarray | None:
    """``exp(int_0^t lambda)``: the linear theory's amplitude of the perturbed mode, relative to t = 0.

    ``lambda`` is the model's :meth:`~vlasov_tf.models.base.MeanField.growth_rate` on each piece
    between its switch times (piecewise constant). None when the initial measure is not
    ``uniform_perturbed`` or the model has no growth rate (attention: a block not Q = K = V = I).
    """
    initial = case.initial
    if not isinstance(initial, UniformPerturbed):
        return None
    t = np.asarray(times, dtype=float)
    exponent = np.zeros_like(t)
    switches = case.model.switch_times(case.T)
    for start, end in pairwise(switches):
        lam = case.model.piece(0.5 * (start + end)).growth_rate(initial.mode)
        if lam is None:
            return None
        exponent += lam * np.clip(t - start, 0.0, end - start)
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


def grid_growth_rate(
    mesh: MeshGeometry, model, mode: np.ndarray, T: float, *, amplitude: float = 1e-5, **grid
) -> float:
    """The grid's growth rate of a small perturbation ``1 + amplitude * mode`` (mode: (C,) cell
    values) of the uniform state, fitted to ``log |sum_c (rho_pert - rho) mode_c A_c|`` at 6 times
    in [0, T]: relative to the unperturbed discrete evolution, which takes out the mesh's own
    O(h^2) drift and leaves the linear response. ``grid``: keywords of
    :func:`~vlasov_tf.solvers.finite_volumes.solve_grid` (steps, field measure, ...).
    """
    times = np.linspace(0, T, 6)
    uniform = np.full(mesh.n_cells, 1.0 / mesh.areas.sum())
    base = solve_grid(mesh, uniform, model, T, t_eval=times, **grid).densities
    pert = solve_grid(mesh, uniform * (1 + amplitude * mode), model, T, t_eval=times, **grid).densities
    return float(np.polyfit(times, np.log(np.abs((pert - base) @ (mode * mesh.areas))), 1)[0])
