"""Initial measures mu_0: one small class per family behind one interface.

Every family is an :class:`InitialMeasure` on S^{d-1} (``sphere``) or on R^d:

- :class:`Uniform`: density ``1 / |S^{d-1}|``;
- :class:`VmfMixture`: ``sum_j p_j C_d(kappa_j) exp(kappa_j <m_j, x>)``;
- :class:`UniformPerturbed`: ``(1 + a f(x)) / |S^{d-1}|``, ``f = cos(k (t - phase))`` on the
  circle, ``f = P_l(<x, axis>)`` (a zonal harmonic) on S^2: the unstable modes of the uniform
  state (:mod:`vlasov_tf.analysis.linear_theory`);
- :class:`Gaussian`: ``N(mean, covariance)`` on R^d;
- :class:`PointsFile`: weighted points read from a file, an empirical measure with no density.

The interface: :meth:`~InitialMeasure.sample` (i.i.d. exact samples, for the particle solver),
:meth:`~InitialMeasure.density`, :meth:`~InitialMeasure.cell_averages` (the grid's initial
condition, by the cells' quadrature rule) and :meth:`~InitialMeasure.quantiles` (deterministic
points on the circle). Densities are with respect to arc length (d = 2), surface area (d = 3),
the surface measure of S^{d-1} in general, and Lebesgue measure on R^d. The constructors check
structure only; case files (:mod:`vlasov_tf.runs.cases`) check values with messages that name
their keys.

Design notes: docs/equations.md; docs/numerics.md §2.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.polynomial import legendre
from scipy import special

from vlasov_tf.geometry.measures import angles_to_circle, uniform_sphere, von_mises_fisher_mixture
from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.geometry.quadrature import cell_quadrature
from vlasov_tf.memory import BYTES_PER_QUANTILE, BYTES_PER_SAMPLE_DIM, check_memory

__all__ = [
    "Gaussian",
    "InitialMeasure",
    "PointsFile",
    "Uniform",
    "UniformPerturbed",
    "VmfMixture",
    "legendre_range",
    "sphere_measure",
]


def sphere_measure(d: int) -> float:
    """``|S^{d-1}| = 2 pi^{d/2} / Gamma(d/2)``: 2 pi for d = 2, 4 pi for d = 3."""
    return 2.0 * math.pi ** (d / 2) / math.gamma(d / 2)


def legendre_range(degree: int) -> tuple[float, float]:
    """(min, max) of the Legendre polynomial P_l, l = ``degree``, on [-1, 1] (max = 1, at s = 1)."""
    crit = legendre.Legendre.basis(degree).deriv().roots() if degree >= 2 else np.array([])
    s = np.concatenate([[-1.0, 1.0], crit.real[np.abs(crit.imag) < 1e-9]])
    vals = special.eval_legendre(degree, np.clip(s, -1.0, 1.0))
    return float(vals.min()), float(vals.max())


def _readonly(a: np.ndarray | None) -> np.ndarray:
    arr = np.array(a, dtype=float)
    arr.setflags(write=False)
    return arr


def _check_count(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"the number of {what} must be an integer >= 1; got {n!r}")
    return int(n)


@dataclass(frozen=True, eq=False)
class InitialMeasure:
    """A probability measure on S^{d-1} (``sphere``) or on R^d: the initial condition mu_0.

    Subclasses set ``family`` (the case files' name) and implement :meth:`sample` and, where the
    measure has a density, :meth:`density`; the grid's :meth:`cell_averages` and the circle's
    :meth:`quantiles` follow from the density.
    """

    family: ClassVar[str]
    #: Whether the measure has a density (weighted points do not).
    has_density: ClassVar[bool] = True

    d: int
    sphere: bool = True

    def __post_init__(self) -> None:
        if self.d < 2:
            raise ValueError(f"initial measure needs d >= 2; got {self.d}")

    def density(self, x: np.ndarray) -> np.ndarray:
        """(n, d) points -> (n,) density values (the reference measure: the module docstring)."""
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, d) independent exact samples (on the sphere unless the measure is on R^d)."""
        raise NotImplementedError

    def _count(self, n: int, method: str = "sample", what: str = "samples", per_item: float = 0.0) -> int:
        """``n`` checked as a count, and its memory (``per_item`` bytes each; default a sample's)
        against the machine's before anything is drawn (:func:`~vlasov_tf.memory.check_memory`)."""
        n = _check_count(n, what)
        need = (per_item or BYTES_PER_SAMPLE_DIM * self.d) * n
        check_memory(need, f"{type(self).__name__}.{method}: {n} {what} in d = {self.d}")
        return n

    def _checked(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"density needs points of shape (n, {self.d}); got {x.shape}")
        return x

    def cell_averages(self, mesh: MeshGeometry, method: str = "quadrature") -> np.ndarray:
        """(C,) cell averages of the density on ``mesh``: >= 0, ``sum(rho * mesh.areas) == 1`` to round-off.

        ``method``:

        - ``"quadrature"`` (default): the mean of the density over each cell by the positive
          quadrature rule of :func:`~vlasov_tf.geometry.quadrature.cell_quadrature` on the true
          cell (Gauss-Legendre with 6 nodes in the angle on S^1, degree 11; Radon's 7-point rule
          on the spherical triangle, degree 5). Error O(h^12) and O(h^6) per cell for smooth
          densities;
        - ``"centre"``: the density at the cell centres. The centres are the cells' centroids
          (projected), so the linear term of the Taylor expansion cancels and the error is
          O(h^2) per cell: the order of the finite-volume scheme itself.

        Either way the values are then divided by their total mass ``sum(rho * areas)``, which
        differs from 1 by the quadrature error, so that the mass is exactly 1 (to round-off).
        Raises ``ValueError`` for measures without a density on a sphere (no grid) and for a
        mesh of another dimension.
        """
        if not (self.has_density and self.sphere):
            raise ValueError(
                f"the {self.family!r} initial measure cannot be put on a grid (no density on a sphere): "
                "it is for particle runs only"
            )
        if mesh.d != self.d:
            raise ValueError(
                f"the initial measure is on S^{self.d - 1}, the mesh is a {mesh.kind} (d = {mesh.d})"
            )
        if method == "centre":
            rho = self.density(mesh.centres)
        elif method == "quadrature":
            points, weights = cell_quadrature(mesh)
            f = self.density(points.reshape(-1, mesh.d)).reshape(weights.shape)
            rho = (f * weights).sum(axis=1) / weights.sum(axis=1)
        else:
            raise ValueError(f"cell average method must be 'quadrature' or 'centre'; got {method!r}")
        return rho / float(rho @ mesh.areas)

    def quantiles(self, n: int) -> np.ndarray:
        """(n, 2) deterministic points on the circle at the quantiles ``F(t_i) = (i + 1/2) / n``.

        ``F(t) = int_0^t rho`` is the distribution function of the angle from t = 0. The
        empirical measure of these points is within ``2 pi / n`` of mu_0 in W1 (each of n arcs of
        mass 1/n holds its point; random samples are ~n^{-1/2} away), and its Fourier
        coefficients are those of mu_0 up to O(k^2 / n^2) (a midpoint rule): particles can then
        follow a perturbation much smaller than the Monte Carlo noise. F is integrated by 8-point
        Gauss-Legendre on 4096 arcs and inverted by safeguarded Newton steps, to round-off.
        """
        if self.d != 2 or not self.sphere or not self.has_density:
            raise ValueError(
                f"quantile points need a density on the circle; not a {self.family!r} measure in d = {self.d}"
            )
        n = self._count(n, "quantiles", "quantile points", BYTES_PER_QUANTILE)
        x8, w8 = np.polynomial.legendre.leggauss(8)
        x8, w8 = 0.5 * (x8 + 1.0), 0.5 * w8

        def rho(t: np.ndarray) -> np.ndarray:
            return self.density(angles_to_circle(t.ravel())).reshape(t.shape)

        def partial(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # int_a^b rho, for short arcs
            return (rho(a[:, None] + (b - a)[:, None] * x8) @ w8) * (b - a)

        edges = np.linspace(0.0, 2 * np.pi, 4097)
        cum = np.concatenate([[0.0], np.cumsum(partial(edges[:-1], edges[1:]))])
        total = cum[-1]
        q = (np.arange(n) + 0.5) / n * total
        j = np.clip(np.searchsorted(cum, q, side="right") - 1, 0, len(edges) - 2)
        a, b = edges[j], edges[j + 1]
        gap = cum[j + 1] - cum[j]
        frac = np.divide(q - cum[j], gap, out=np.full(n, 0.5), where=gap > 0)
        t = a + np.clip(frac, 0.0, 1.0) * (b - a)
        tiny = np.finfo(float).tiny
        for _ in range(8):
            t = np.clip(t - (cum[j] + partial(a, t) - q) / np.maximum(rho(t), tiny), a, b)
        return angles_to_circle(t)


def _on_sphere(measure: InitialMeasure) -> None:
    if not measure.sphere:
        raise ValueError(f"family {measure.family!r} is a measure on S^{{d-1}}: it needs sphere=True")


@dataclass(frozen=True, eq=False)
class Uniform(InitialMeasure):
    """The uniform law on S^{d-1}: density ``1 / |S^{d-1}|``."""

    family: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        _on_sphere(self)

    def density(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(self._checked(x)), 1.0 / sphere_measure(self.d))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return uniform_sphere(self._count(n), self.d, rng)


@dataclass(frozen=True, eq=False, kw_only=True)
class VmfMixture(InitialMeasure):
    """``sum_j p_j C_d(kappa_j) exp(kappa_j <m_j, x>)``: ``means`` (k, d) unit vectors, ``kappas``
    (k,) > 0, ``proportions`` (k,) summing to 1. Sampled by scipy's ``vonmises_fisher`` (Wood's
    algorithm) per component after a multinomial draw of the counts."""

    family: ClassVar[str] = "vmf_mixture"
    means: np.ndarray
    kappas: np.ndarray
    proportions: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        _on_sphere(self)
        for name in ("means", "kappas", "proportions"):
            object.__setattr__(self, name, _readonly(getattr(self, name)))

    def density(self, x: np.ndarray) -> np.ndarray:
        # log of kappa^nu / ((2 pi)^{d/2} I_nu(kappa)) + kappa, nu = d/2 - 1: ``ive`` is
        # I_nu(kappa) exp(-kappa), so nothing overflows for large kappa.
        nu, kappas = self.d / 2 - 1, self.kappas
        log_c = nu * np.log(kappas) - (self.d / 2) * np.log(2 * np.pi) - np.log(special.ive(nu, kappas))
        return np.exp(log_c + kappas * (np.dot(self._checked(x), self.means.T) - 1.0)) @ self.proportions

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = self._count(n)
        return von_mises_fisher_mixture(n, self.means, self.kappas, self.proportions, rng)


@dataclass(frozen=True, eq=False, kw_only=True)
class UniformPerturbed(InitialMeasure):
    """``(1 + amplitude f(x)) / |S^{d-1}|`` with ``f = cos(mode (t - phase))``, ``x = (cos t, sin t)``
    on the circle (d = 2), and ``f = P_mode(<x, axis>)`` (a zonal spherical harmonic of degree
    ``mode``) on S^2; ``amplitude`` keeps the density > 0. Sampled by rejection from the uniform
    law (acceptance ``(1 + a f) / max(1 + a f)``)."""

    family: ClassVar[str] = "uniform_perturbed"
    amplitude: float
    mode: int
    phase: float = 0.0
    axis: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _on_sphere(self)
        if self.d not in (2, 3):
            raise ValueError(f"family 'uniform_perturbed' is defined for d = 2 and 3; got d = {self.d}")
        if self.d == 3:
            if self.axis is None:
                raise ValueError("initial family 'uniform_perturbed' needs axis on S^2")
            object.__setattr__(self, "axis", _readonly(self.axis))

    def harmonic(self, x: np.ndarray) -> np.ndarray:
        """(n,) f(x) at (n, d) points: cos(k (t - phase)) on S^1, P_l(<x, axis>) on S^2."""
        if self.d == 2:
            t = np.arctan2(x[:, 1], x[:, 0])
            return np.cos(self.mode * (t - self.phase))
        assert self.axis is not None  # required on S^2 (__post_init__)
        return special.eval_legendre(self.mode, np.clip(np.dot(x, self.axis), -1.0, 1.0))

    def density(self, x: np.ndarray) -> np.ndarray:
        return (1.0 + self.amplitude * self.harmonic(self._checked(x))) / sphere_measure(self.d)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = self._count(n)
        lo, hi = (-1.0, 1.0) if self.d == 2 else legendre_range(self.mode)
        bound = 1.0 + max(self.amplitude * lo, self.amplitude * hi)
        out: list[np.ndarray] = []
        need = n
        while need > 0:
            # Expected acceptance is 1 / bound: draw enough for one pass most of the time.
            x = uniform_sphere(int(need * bound * 1.1) + 16, self.d, rng)
            keep = rng.random(len(x)) * bound < 1.0 + self.amplitude * self.harmonic(x)
            out.append(x[keep][:need])
            need -= len(out[-1])
        return np.concatenate(out)


@dataclass(frozen=True, eq=False, kw_only=True)
class Gaussian(InitialMeasure):
    """``N(mean, covariance)`` on R^d (``sphere`` is False): ``mean`` (d,), ``covariance`` (d, d)
    symmetric positive definite."""

    family: ClassVar[str] = "gaussian"
    sphere: bool = False
    mean: np.ndarray
    covariance: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sphere:
            raise ValueError("family 'gaussian' is a measure on R^d: it needs sphere=False")
        object.__setattr__(self, "mean", _readonly(self.mean))
        object.__setattr__(self, "covariance", _readonly(self.covariance))

    def density(self, x: np.ndarray) -> np.ndarray:
        chol = np.linalg.cholesky(self.covariance)
        z = np.linalg.solve(chol, (self._checked(x) - self.mean).T)
        log_det = 2.0 * np.log(np.diag(chol)).sum()
        return np.exp(-0.5 * (z * z).sum(axis=0) - 0.5 * (log_det + self.d * np.log(2 * np.pi)))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = self._count(n)
        return self.mean + rng.standard_normal((n, self.d)) @ np.linalg.cholesky(self.covariance).T


@dataclass(frozen=True, eq=False, kw_only=True)
class PointsFile(InitialMeasure):
    """The weighted points ``points`` (n, d), ``weights`` (n,) summing to 1, read from ``path``: an
    empirical measure, with no density (particle runs only). Sampled by drawing atoms with
    replacement, with probabilities their weights."""

    family: ClassVar[str] = "file"
    has_density: ClassVar[bool] = False
    points: np.ndarray
    weights: np.ndarray
    path: str = "<memory>"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "points", _readonly(self.points))
        object.__setattr__(self, "weights", _readonly(self.weights))

    def density(self, x: np.ndarray) -> np.ndarray:
        raise ValueError(
            f"the 'file' initial measure ({self.path}) is a set of weighted points: it has no density"
        )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = self._count(n)
        return self.points[rng.choice(len(self.points), size=n, p=self.weights)].copy()
