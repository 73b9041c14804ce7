"""Data of the learned map: initial measures from a stated family, drawn by seed, and their labels.

A :class:`MeasureFamily` is the law of the initial measures: a mixture of ``k`` von Mises-Fisher
bumps on S^{d-1}, ``k`` uniform in ``bumps = (k_min, k_max)``, centres uniform on the sphere,
concentrations log-uniform in ``kappa = (kappa_min, kappa_max)``, proportions Dirichlet with
parameter ``alpha`` (all equal). Measure ``i`` of a split (:data:`SPLITS`) is drawn from
``default_rng([seed, split, i])`` and its ``n`` tokens from ``default_rng([seed, split, i, n])``:
the seed, the family and the counts (stored in the run file) regenerate every set, and the
splits never share a measure.

Labels are the tokens moved by the target model's flow up to T with the project's own particle
solver (:func:`~vlasov_tf.solvers.particles.solve_particles`): ``"flow"`` the DOP853 reference
at rtol 1e-10 (the exact solution map, to that tolerance), ``"layers"`` the target's own deep
Transformer of a given depth (for an attention target: a map the network can represent exactly).
Every token of a measure moves with the measure (the map is a push-forward by an in-context
map), so a label is the (n, d) array of the tokens' images, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlasov_tf.geometry.initial import VmfMixture
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.models.base import MeanField
from vlasov_tf.solvers.particles import solve_particles

__all__ = ["LABELS", "LABEL_RTOL", "SPLITS", "MeasureFamily", "label_tokens", "split_tokens"]

#: The three sets, and the number that seeds each.
SPLITS = {"train": 0, "validation": 1, "test": 2}
#: How labels are made: the target's flow to LABEL_RTOL, or its own Transformer.
LABELS = ("flow", "layers")
#: rtol (atol: 1e-2 of it) of the DOP853 labels.
LABEL_RTOL = 1e-10


@dataclass(frozen=True)
class MeasureFamily:
    """Random vMF mixtures on S^{d-1} (module docstring)."""

    d: int
    bumps: tuple[int, int] = (1, 3)
    kappa: tuple[float, float] = (2.0, 20.0)
    alpha: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.bumps
        if not (1 <= lo <= hi):
            raise ValueError(f"bumps must be 1 <= min <= max; got {self.bumps}")
        klo, khi = self.kappa
        if not (0 < klo <= khi and np.isfinite(khi)):
            raise ValueError(f"kappa must be 0 < min <= max, finite; got {self.kappa}")
        if not (np.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be finite and > 0; got {self.alpha}")

    def measure(self, seed: int, split: str, i: int) -> VmfMixture:
        """Measure ``i`` of ``split``: the same mixture for the same arguments."""
        rng = np.random.default_rng([seed, SPLITS[split], i])
        k = int(rng.integers(self.bumps[0], self.bumps[1] + 1))
        means = uniform_sphere(k, self.d, rng)
        kappas = np.exp(rng.uniform(np.log(self.kappa[0]), np.log(self.kappa[1]), k))
        props = rng.dirichlet(np.full(k, self.alpha))
        return VmfMixture(d=self.d, means=means, kappas=kappas, proportions=props)

    def tokens(self, seed: int, split: str, i: int, n: int) -> np.ndarray:
        """(n, d) tokens of measure ``i`` of ``split``, each of weight 1/n."""
        rng = np.random.default_rng([seed, SPLITS[split], i, n])
        return self.measure(seed, split, i).sample(n, rng)


def label_tokens(
    target: MeanField, x: np.ndarray, T: float, labels: str = "flow", layers: int | None = None
) -> np.ndarray:
    """(n, d) images at time T of the (n, d) tokens ``x`` (weights 1/n) under ``target``'s flow."""
    if labels == "flow":
        sol = solve_particles(target, x, T=T, method="adaptive", rtol=LABEL_RTOL, atol=1e-2 * LABEL_RTOL)
    elif labels == "layers":
        sol = solve_particles(target, x, T=T, method="layers", steps=layers)
    else:
        raise ValueError(f"unknown labels {labels!r}; choose one of {LABELS}")
    return sol.final


def split_tokens(
    family: MeasureFamily,
    target: MeanField,
    T: float,
    *,
    seed: int,
    split: str,
    count: int,
    n: int,
    labels: str = "flow",
    layers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of a split: two (count, n, d) arrays."""
    xs = np.stack([family.tokens(seed, split, i, n) for i in range(count)])
    ys = np.stack([label_tokens(target, x, T, labels, layers) for x in xs])
    return xs, ys
