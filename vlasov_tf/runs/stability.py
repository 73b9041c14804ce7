"""Stability of the solution map mu_0 -> mu_T in W1: the Lipschitz constants of the attention field
(a Gronwall bound, exponential in beta) against the ratio measured on pairs of nearby measures.

Design notes: docs/numerics.md §5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlasov_tf.analysis.wasserstein import wasserstein
from vlasov_tf.models.attention import Schedule
from vlasov_tf.solvers.particles import solve_particles

__all__ = ["LipschitzEstimate", "field_lipschitz", "format_lipschitz", "lipschitz_estimate"]


def field_lipschitz(params) -> tuple[float, float]:
    """(Lip_x, Lip_mu) of the attention field of one block on the unit sphere (chordal metric).

    C = Lip_x + Lip_mu gives W1(mu_t, nu_t) <= exp(C t) W1(mu_0, nu_0) for that block.

    Dobrushin's coupling argument (norms are spectral; the bound is crude, exponential in beta)::

        Follow both flows from an optimal coupling; then
        |x' - y'| <= Lip_x |x - y| + Lip_mu W1(mu, nu), so C = Lip_x + Lip_mu with, on the
        unit sphere (|y| = 1), k(y) = exp(<B x, y>) in [e^-|B|, e^|B|]:

        - Lip_x: grad_x A = Cov_pi(y) B with |Cov| <= 1, and grad_x (P_x u) = P_x grad u
          - <x, u> I - x u^T, so Lip_x <= sum_h |W_h V_h| (|B_h| + 2) + |W| (3 |U| + 2 |b|)
          (SA); for USA |A| <= e^|B| and |grad A| <= |B| e^|B|;
        - Lip_mu: A[mu] - A[nu] = int (y - A[nu]) k d(mu - nu) / Z_mu, a Lipschitz function
          of y with constant e^|B| (1 + 2 |B|) over Z_mu >= e^-|B| (SA): e^{2|B|} (1 + 2 |B|);
          USA: e^|B| (1 + |B|).
    """
    lip_x = lip_mu = np.float64(0.0)
    for h in params.heads:
        wv, b = np.linalg.norm(h.output, 2), np.linalg.norm(h.B, 2)
        if params.attention == "SA":
            lip_x += wv * (b + 2)
            lip_mu += wv * np.exp(2 * b) * (1 + 2 * b)
        else:
            lip_x += wv * np.exp(b) * (b + 2)
            lip_mu += wv * np.exp(b) * (1 + b)
    if params.perceptron is not None:
        p = params.perceptron
        lip_x += np.linalg.norm(p.W, 2) * (3 * np.linalg.norm(p.U, 2) + 2 * np.linalg.norm(p.b))
    return float(lip_x), float(lip_mu)


@dataclass(frozen=True)
class LipschitzEstimate:
    """Ratios W1(mu_T, nu_T) / W1(mu_0, nu_0) over perturbed pairs, and the Gronwall bound.

    ``log10_bound`` is log10 of (pi / 2) exp(sum_k C_k tau_k): the pi / 2 converts the
    chordal bound to geodesic W1 on the sphere (attention: :func:`field_lipschitz`; None for
    other models).
    """

    ratios: np.ndarray
    n_tokens: int
    eps: float
    log10_bound: float | None


def lipschitz_estimate(case, n_tokens: int = 200, pairs: int = 8, eps: float = 1e-2) -> LipschitzEstimate:
    """Estimate the W1-Lipschitz constant of mu_0 -> mu_T with the particle reference flow.

    mu_0: ``n_tokens`` tokens of the case's initial measure; nu_0: every token moved by
    ``eps`` along its own random tangent direction (a different draw per pair). Both
    evolve by the continuous-time flow (DOP853); the ratio of W1 at T to W1 at 0 (same
    geometry and method as the cross-validation) is one sample of the constant.
    """
    x0, w = case.initial_tokens(n_tokens)
    sphere = case.geometry != "euclidean"
    rng = np.random.default_rng([case.particles.seed, n_tokens, 7])
    ratios = []
    ref = solve_particles(case.model, x0, w, T=case.T, method="adaptive", sphere=sphere).final
    for _ in range(pairs):
        xi = rng.standard_normal(x0.shape)
        if sphere:
            xi -= np.sum(xi * x0, axis=1, keepdims=True) * x0
        xi /= np.linalg.norm(xi, axis=1, keepdims=True)
        y0 = x0 + eps * xi
        if sphere:
            y0 /= np.linalg.norm(y0, axis=1, keepdims=True)
        yT = solve_particles(case.model, y0, w, T=case.T, method="adaptive", sphere=sphere).final
        d0 = wasserstein(x0, w, y0, w, geometry=case.geometry)[0]
        dT = wasserstein(ref, w, yT, w, geometry=case.geometry)[0]
        ratios.append(dT / d0)
    bound = None
    if isinstance(case.model, Schedule):
        c_t = sum(sum(field_lipschitz(p)) * tau for tau, p in case.model.blocks)
        bound = float(np.log10(np.pi / 2) + c_t / np.log(10))
    return LipschitzEstimate(np.array(ratios), n_tokens, eps, bound)


def format_lipschitz(est: LipschitzEstimate) -> str:
    r = est.ratios
    return (
        f"Lipschitz constant of mu_0 -> mu_T in W1 ({len(r)} pairs, N = {est.n_tokens}, "
        f"eps = {est.eps:g}): max ratio {r.max():.3g}, mean {r.mean():.3g}"
        + ("" if est.log10_bound is None else f"; Gronwall bound 10^{est.log10_bound:.1f}")
    )
