"""Brownian kicks of tokens: the noisy layers of a Transformer, seeded and independent of the ranks.

A noisy model (:attr:`~vlasov_tf.models.base.MeanField.noise` = sigma > 0) moves token i by
``dx = X[mu](t, x) dt + sqrt(2 sigma) dW`` (Brownian motion on the sphere, whose generator is
``sigma Laplace``). The discrete version is the Transformer's residual layer with a kick, then
the layer normalisation (:func:`noisy_layer`):

    x <- pi(x + h X[mu](t, x) + sqrt(2 sigma h) P_x xi),   xi ~ N(0, I_d),

a projected Euler-Maruyama step of weak order 1: the normalisation's second-order term
``-sigma h (d - 1) x`` in expectation is exactly the Ito drift of Brownian motion on S^{d-1}
(``dX = sqrt(2 sigma) P_X dW - sigma (d - 1) X dt``). In R^d the kick is added unprojected.

The normals ``xi`` of step k for token i come from a stream keyed by ``(seed, k, i // BLOCK)``
(:func:`brownian_increments`): a rank draws only the blocks that hold its tokens, every rank
count draws the same numbers for the same token, and a run resumed at step k draws what the
whole run would have.

Coupled depths. Runs of L layers and of a finer reference (``M`` layers, L dividing M, equal
steps) are compared token by token in a convergence study; with independent kicks their
distance would be the noise's, not the scheme's error. Given the fine grid (``substeps = M /
L``), step k takes the sum of the fine steps' normals ``k m .. k m + m - 1`` over ``sqrt(m)``:
the same Brownian path sampled coarser, as in multilevel Monte Carlo.

Design notes: docs/numerics.md §8 (noise).
"""

from __future__ import annotations

import numpy as np

from vlasov_tf.geometry.measures import normalize
from vlasov_tf.models.base import tangent

__all__ = ["BLOCK", "brownian_increments", "noisy_layer"]

#: Tokens per random stream: a fixed size, so the numbers do not depend on the number of ranks.
BLOCK = 4096
# Keeps these streams apart from every other use of a case's seed (a SeedSequence entropy word).
_DOMAIN = 0x6E6F697365  # "noise"


def brownian_increments(
    seed: int | tuple[int, ...], step: int, lo: int, hi: int, d: int, substeps: int = 1
) -> np.ndarray:
    """(hi - lo, d) standard normals for the tokens ``lo <= i < hi`` at step ``step`` of a run.

    Token i's numbers at fine step j are row ``i % BLOCK`` of the block ``i // BLOCK``, drawn by
    ``numpy.random.default_rng([_DOMAIN, *seed, j, block])`` (``seed`` an int or a tuple of
    ints); step k sums the fine steps ``j = k substeps .. k substeps + substeps - 1`` over
    ``sqrt(substeps)`` (module docstring).
    """
    if hi <= lo:
        return np.empty((0, d))
    first, last = lo // BLOCK, (hi - 1) // BLOCK
    key = [_DOMAIN, *((seed,) if isinstance(seed, int | np.integer) else seed)]
    total = np.zeros(((last - first + 1) * BLOCK, d))
    for j in range(step * substeps, (step + 1) * substeps):
        total += np.concatenate([
            np.random.default_rng([*key, j, b]).standard_normal((BLOCK, d))
            for b in range(first, last + 1)
        ])  # fmt: skip
    if substeps > 1:
        total /= np.sqrt(substeps)
    return total[lo - first * BLOCK : hi - first * BLOCK]


def noisy_layer(
    x: np.ndarray, v: np.ndarray, h: float, sigma: float, xi: np.ndarray, sphere: bool
) -> np.ndarray:
    """One noisy layer (module docstring) from tokens ``x`` (N, d) with velocities ``v`` (N, d),
    step ``h``, noise ``sigma`` and standard normals ``xi`` (N, d)."""
    kick = np.sqrt(2.0 * sigma * h) * (tangent(x, xi) if sphere else xi)
    y = x + h * v + kick
    return normalize(y) if sphere else y
