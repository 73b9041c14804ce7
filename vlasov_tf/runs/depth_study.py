"""The depth study: deep Transformers tend to the continuous-time flow of their tokens, at order 1.

A deep Transformer (one residual attention layer per step ``h = T / L``, then layer
normalisation) tends to the continuous-time flow of its tokens as the depth ``L`` grows, with
error O(h). :func:`depth_convergence` computes it on a circle case (``vlasov-tf particles``),
:func:`format_report` prints it, and :func:`vlasov_tf.plots.plot_depth_convergence` draws it.

Design notes: docs/numerics.md §1 and §7.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vlasov_tf.analysis.wasserstein import geodesic_distance, wasserstein_circle
from vlasov_tf.memory import BYTES_PER_TOKEN_DIM, check_memory
from vlasov_tf.models.attention import Schedule, interaction_energy, zonal_beta
from vlasov_tf.runs.cases import Case
from vlasov_tf.runs.studies import fitted_order, format_order, observed_orders
from vlasov_tf.solvers.particles import MAX_STEPS, solve_particles

__all__ = [
    "DEFAULT_LAYERS",
    "N_TIMES",
    "DepthConvergence",
    "check_depth_study",
    "depth_convergence",
    "depth_study_beta",
    "format_report",
]

DEFAULT_LAYERS = (10, 20, 40, 80, 160, 320, 640)
#: Output times of the reference trajectory (for the figure and the energy check).
N_TIMES = 51

# Relative slack on the monotonicity of the energy along the reference: above
# its integration error (rtol 1e-10), far below the physical increments.
_ENERGY_RTOL = 1e-9



@dataclass(frozen=True)
class DepthConvergence:
    """Results of :func:`depth_convergence`.

    Case: ``case`` (its name), ``n_tokens`` tokens, inverse temperature ``beta``, final time ``T``.

    Attributes
    ----------
    times : (n_times,) output times of the reference, ``linspace(0, T, n_times)``.
    reference : (n_times, N, 2) reference trajectory (DOP853, rtol ``ref_rtol``).
    weights : (N,) token weights (uniform).
    ref_error : bound on the max token error of the reference at T: its
        distance to a run with 100x looser tolerances (whose error dominates).
    ref_energy : (n_times,) interaction energy along the reference.
    layers : (n_L,) depths L, increasing; ``h = T / L``.
    w1 : (n_L,) W1 on the circle at T between the L-layer output and the reference.
    max_error : (n_L,) max over tokens of the arc length between the L-layer
        output and the reference at T (the tokens are labelled).
    energy : (n_L,) interaction energy of the L-layer output.
    seconds : wall time of each part (``reference``, ``reference_check``, ``layers``).
    """

    case: str
    n_tokens: int
    beta: float
    T: float
    seed: int
    ref_rtol: float
    times: np.ndarray
    reference: np.ndarray
    weights: np.ndarray
    ref_error: float
    ref_energy: np.ndarray
    layers: np.ndarray
    w1: np.ndarray
    max_error: np.ndarray
    energy: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def h(self) -> np.ndarray:
        """(n_L,) layer step sizes ``T / L``."""
        return self.T / self.layers

    @property
    def w1_orders(self) -> np.ndarray:
        return observed_orders(self.h, self.w1)

    @property
    def max_error_orders(self) -> np.ndarray:
        return observed_orders(self.h, self.max_error)

    @property
    def energy_increments(self) -> np.ndarray:
        """(n_times - 1,) ``E(t_{k+1}) - E(t_k)`` along the reference."""
        return np.diff(self.ref_energy)

    @property
    def energy_nondecreasing(self) -> bool:
        """Whether the reference energy never decreases (beyond round-off)."""
        return bool((self.energy_increments >= -_ENERGY_RTOL * np.abs(self.ref_energy[1:])).all())


def check_depth_study(n_tokens: int, layers: Sequence[int], n_times: int = N_TIMES) -> None:
    """Raise ``ValueError`` with a readable message if the study's parameters are unusable."""
    if int(n_tokens) != n_tokens or n_tokens < 2:
        raise ValueError(f"the number of tokens N must be an integer >= 2; got {n_tokens}")
    if len(layers) == 0 or any(int(L) != L or L < 1 for L in layers):
        raise ValueError(f"the depths L must be positive integers; got {list(layers)}")
    if int(n_times) != n_times or n_times < 2:
        raise ValueError(f"the reference needs at least 2 output times; got {n_times}")
    if any(L > MAX_STEPS for L in layers):
        raise ValueError(f"the depths L must be at most MAX_STEPS = {MAX_STEPS:.0e}; got {max(layers)}")
    # Circle tokens (d = 2): the working memory of a run and every output of the reference.
    check_memory(n_tokens * 2 * (BYTES_PER_TOKEN_DIM + 8 * n_times), f"the number of tokens N = {n_tokens}")


def depth_study_beta(case: Case) -> float:
    """The beta of a case the depth study can take: on the circle, one block with Q = K = V = I
    (:func:`~vlasov_tf.models.attention.zonal_beta`); else ``ValueError`` naming what is not."""
    if case.model.noise > 0:
        raise ValueError(
            f"case {case.name}: the depth study compares the Transformer with the continuous-time ODE; "
            f"a noisy model (noise = {case.model.noise:g}) has none: `vlasov-tf study` cross-validates it"
        )
    if not isinstance(case.model, Schedule):
        raise ValueError(
            f"case {case.name}: the depth study runs attention (model.type 'attention'), not the "
            f"{case.model.label}; `vlasov-tf study` cross-validates any model"
        )
    if case.geometry != "circle":
        raise ValueError(f"case {case.name}: the depth study is on the circle, not the {case.geometry}")
    if case.mask != "none" or case.particles.norm != "post":
        raise ValueError(
            f"case {case.name}: the depth study runs unmasked attention with the layer norm after the "
            f"update (model.mask 'none', particles.norm 'post'); got {case.mask!r}, {case.particles.norm!r}"
        )
    beta = zonal_beta(case.schedule.blocks[0][1]) if len(case.schedule.blocks) == 1 else None
    if beta is None:
        raise ValueError(
            f"case {case.name}: the depth study needs one block with Q = K = V = I and no perceptron "
            "(the interaction energy it checks is that model's)"
        )
    return beta


def depth_convergence(
    case: Case,
    n_tokens: int = 2000,
    layers: Sequence[int] = DEFAULT_LAYERS,
    *,
    ref_rtol: float = 1e-10,
    n_times: int = N_TIMES,
    seed: int = 0,
    progress: bool = False,
) -> DepthConvergence:
    """Errors at time T of L-layer Transformers against the continuous flow of a circle case.

    Tokens: ``n_tokens`` random draws of the case's initial measure (``default_rng(seed)``), uniform
    weights; the case's ``[particles]`` ladders, seed and sampling are not used. Model: the case's
    schedule, one block with a zonal kernel (:func:`depth_study_beta`), on [0, T]. Reference:
    DOP853 at relative tolerance ``ref_rtol``, stored at ``n_times`` equally spaced times; its
    error is bounded by a second run at 100x that tolerance. Each depth L in ``layers`` is the
    Transformer step (explicit Euler plus normalisation) with h = T / L.
    """
    check_depth_study(n_tokens, layers, n_times)
    beta, T, schedule = depth_study_beta(case), case.T, case.schedule
    layers_arr = np.unique(np.asarray(layers, dtype=int))
    x0 = case.initial.sample(int(n_tokens), np.random.default_rng(seed))
    weights = np.full(len(x0), 1.0 / len(x0))
    times = np.linspace(0.0, T, n_times)
    seconds: dict[str, float] = {}

    tic = time.perf_counter()
    ref = solve_particles(schedule, x0, weights, method="adaptive", t_eval=times, progress=progress,
                          rtol=ref_rtol, atol=1e-2 * ref_rtol)  # fmt: skip
    seconds["reference"] = time.perf_counter() - tic

    tic = time.perf_counter()
    coarse = solve_particles(schedule, x0, weights, method="adaptive", progress=progress,
                             rtol=1e2 * ref_rtol, atol=ref_rtol)  # fmt: skip
    ref_error = float(geodesic_distance(coarse.final, ref.final).max())
    seconds["reference_check"] = time.perf_counter() - tic

    tic = time.perf_counter()
    w1, max_error, energy = [], [], []
    for L in layers_arr:
        out = solve_particles(schedule, x0, weights, method="layers", steps=int(L), progress=progress).final
        w1.append(wasserstein_circle(out, weights, ref.final, weights))
        max_error.append(float(geodesic_distance(out, ref.final).max()))
        energy.append(interaction_energy(out, weights, beta))
    seconds["layers"] = time.perf_counter() - tic

    ref_energy = np.array([interaction_energy(x, weights, beta) for x in ref.positions])
    return DepthConvergence(
        case=case.name,
        n_tokens=int(n_tokens),
        beta=float(beta),
        T=float(T),
        seed=int(seed),
        ref_rtol=float(ref_rtol),
        times=times,
        reference=ref.positions,
        weights=weights,
        ref_error=ref_error,
        ref_energy=ref_energy,
        layers=layers_arr,
        w1=np.array(w1),
        max_error=np.array(max_error),
        energy=np.array(energy),
        seconds=seconds,
    )


def format_report(res: DepthConvergence) -> str:
    """The table and summary lines printed by ``vlasov-tf particles``."""
    lines = [
        f"depth convergence on the circle, case {res.case}: N = {res.n_tokens} tokens (seed {res.seed}), "
        f"beta = {res.beta:g}, T = {res.T:g}",
        f"reference: DOP853 at rtol {res.ref_rtol:.0e}, {len(res.times)} output times; "
        f"its max token error at T is below {res.ref_error:.1e} (distance to rtol {100 * res.ref_rtol:.0e})",
        "",
        f"{'L':>5} {'h':>9} {'W1(T)':>11} {'order':>6} {'max token err':>14} {'order':>6} {'E(T)':>14}",
    ]
    for k, L in enumerate(res.layers):
        lines.append(
            f"{L:>5d} {res.h[k]:>9.6f} {res.w1[k]:>11.4e} {format_order(res.w1_orders[k]):>6} "
            f"{res.max_error[k]:>14.4e} {format_order(res.max_error_orders[k]):>6} {res.energy[k]:>14.10f}"
        )
    lines.append(f"{'ref':>5} {'':>9} {'':>11} {'':>6} {'':>14} {'':>6} {res.ref_energy[-1]:>14.10f}")
    lines += [
        "",
        f"fitted order (least squares of log error vs log h, expected 1): "
        f"W1 {fitted_order(res.h, res.w1):.3f}, max token error {fitted_order(res.h, res.max_error):.3f}",
    ]
    inc = res.energy_increments
    verdict = "non-decreasing" if res.energy_nondecreasing else "NOT non-decreasing"
    lines.append(
        f"energy along the reference: E(0) = {res.ref_energy[0]:.10f} -> E(T) = {res.ref_energy[-1]:.10f}, "
        f"{verdict} at the {len(res.times)} output times (smallest increment {inc.min():.3e})"
    )
    smallest = float(res.max_error.min())
    lines.append(
        f"reference error / smallest layer error = {res.ref_error / smallest:.1e}"
        + (" (reference converged)" if res.ref_error < 1e-2 * smallest else " (REFERENCE NOT CONVERGED)")
    )
    return "\n".join(lines)
