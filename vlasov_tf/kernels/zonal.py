"""Zonal kernels ``phi: [-1, 1] -> R`` and their harmonic expansions on S^1 and S^2.

The interaction models sum ``phi(<x, y>)`` over tokens on the sphere
(:func:`~vlasov_tf.kernels.choice.zonal_kernel_sums`). Here are the kernels, with the
expansions the fast sums use::

    S^1 (d = 2):  phi(cos s) = sum_{k in Z} c_|k| e^{iks}        mult_k = 1 (k = 0), 2 (k > 0)
    S^2 (d = 3):  phi(t)     = sum_{l >= 0} c_l P_l(t)            mult_l = 1

(``mult``: :meth:`Circle.multiplicity <vlasov_tf.kernels.circle.Circle.multiplicity>`,
:meth:`Sphere.multiplicity <vlasov_tf.kernels.sphere.Sphere.multiplicity>`). The row ``c_l`` is
exactly the ``factors`` row those classes' ``synthesis`` takes: ``Sphere.synthesis`` multiplies by
``4 pi / (2l + 1)`` and the analysis conjugates ``Y_lm``, so that by the addition theorem
``sum_m 4 pi / (2l + 1) Y_lm(u) conj(Y_lm(y)) = P_l(<u, y>)``; ``Circle.synthesis`` takes
``factors[|k|]`` for ``e^{ik(a - t)}``. On S^1 the ``c_k`` are half the Chebyshev coefficients
of ``phi`` (``cos(ks) = T_k(cos s)``), ``c_0`` the first.

**Truncation.** :meth:`ZonalKernel.coefficients` keeps degrees ``l <= L`` for the least ``L`` with
``tail_L = sum_{l > L} mult_l |c_l| <= tol sup|phi|`` (``|P_l| <= 1``, ``|e^{iks}| = 1``: the
truncated series is within ``tail_L`` of ``phi`` everywhere on [-1, 1]; coefficients of either
sign). Named kernels have exact coefficients and a *proven* tail:

- :class:`Constant` ``c``: ``c_0 = c``, tail 0 (Kuramoto, Lohe);
- :class:`Exponential` ``exp(beta t) = e^|beta| sum_l (+-1)^l g_l(|beta|) P_l`` with the radial
  factors ``g_l >= 0`` of :mod:`~vlasov_tf.kernels.spectral` (``sum mult_l g_l = 1``; ``ive`` on
  S^1). The tail is summed term by term up to a degree ``top > |beta|``, and beyond ``top`` bounded
  by a geometric series: ``I_{nu+1}(r) / I_nu(r) <= r / (2 nu + 2)`` (compare the power series term
  by term), so ``g_{l+1} / g_l <= q = r / (2 top + 1)`` on S^2 (``r / (2 top + 2)`` on S^1) for
  ``l >= top`` and ``sum_{l > top} g_l <= g_top q / (1 - q)``;
- :class:`ExpDifference` ``a e^{alpha (t - 1)} - r e^{rho (t - 1)}``: the two series, coefficient
  by coefficient; the tail summed term by term, the two remainders added;
- :class:`Polynomial`: finite, exact (``poly2leg``; ``poly2cheb`` on S^1), tail 0.

:class:`~vlasov_tf.kernels.zonal_function.FunctionKernel` (any callable) has *measured*
coefficients and tail (quadrature; that module says how).

**Width** (``ZonalKernel.width``): ``min(pi, sqrt(sup|phi| / sup|phi'|))`` on [-1, 1], radians. For
``exp(beta t)`` it is ``beta^{-1/2}``, the standard deviation of ``exp(beta (cos s - 1)) ~
exp(-beta s^2 / 2)``; in general ``phi(cos s)`` moves by at most ``sup|phi| s^2 / (2 width^2)`` from
its value at ``s = 0`` over an angle ``s`` (``1 - cos s <= s^2 / 2``): the angle the kernel
resolves. A constant (no slope) has width ``pi``, the whole sphere.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import chebyshev, legendre
from numpy.polynomial import polynomial as poly

from .circle import Circle
from .sphere import Sphere

__all__ = [
    "KERNEL_NAMES",
    "MAX_ZONAL_DEGREE",
    "SUP_LIMIT",
    "Constant",
    "ExpDifference",
    "Exponential",
    "Polynomial",
    "ZonalExpansion",
    "ZonalKernel",
    "kernel_from_spec",
    "multiplicity",
]

#: Largest degree of a zonal expansion: a kernel that needs more (a kink) is summed densely.
MAX_ZONAL_DEGREE = 2000
#: Largest ``sup |phi|`` the zonal sums take (exp(beta) overflows near beta = 709; this leaves
#: room for the weights): beyond it use :func:`vlasov_tf.kernels.kernel_sums`, which scales.
SUP_LIMIT = 1e300
_GEOMETRIES: dict[int, type[Circle] | type[Sphere]] = {2: Circle, 3: Sphere}
# Terms of the exp series below this (relative to sup = 1) end the term-by-term sum.
_NEGLIGIBLE = 1e-32


def multiplicity(d: int, degree: int) -> np.ndarray:
    """(degree + 1,): how often degree ``l`` enters the series on S^{d-1} (1 on S^2; 1, 2, 2, ... on S^1)."""
    return _GEOMETRIES[d].multiplicity(degree)


@dataclass(frozen=True, eq=False)
class ZonalExpansion:
    """A kernel's truncated expansion on S^{d-1} (module docstring).

    ``factors`` (L + 1,) read-only: the ``c_l``, as ``Circle.synthesis`` / ``Sphere.synthesis`` take
    them; ``tail``: bound of ``sum_{l > L} mult_l |c_l|`` (``proven``, or measured for callables);
    ``sup``: ``sup |phi|`` on [-1, 1]; ``tol``: the relative tolerance asked. ``within_cap`` False:
    the series does not reach ``tol`` by :data:`MAX_ZONAL_DEGREE` (the factors stop there and
    ``tail > tol sup``): the sums must be dense.
    """

    d: int
    factors: np.ndarray
    tail: float
    sup: float
    tol: float
    proven: bool
    within_cap: bool

    @property
    def degree(self) -> int:
        """L, the largest degree kept."""
        return len(self.factors) - 1

    def abs_sum(self) -> float:
        """``sum_{l <= L} mult_l |c_l|``: bounds the truncated series on [-1, 1]."""
        return float((np.abs(self.factors) * multiplicity(self.d, self.degree)).sum())

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """The truncated series at ``t`` in [-1, 1] (Legendre on S^2, Chebyshev ``T_k(cos s)`` on S^1)."""
        t = np.asarray(t, dtype=float)
        if self.d == 3:
            return legendre.legval(t, self.factors)
        return chebyshev.chebval(t, self.factors * multiplicity(2, self.degree))


def _truncate(
    d: int, coefs: np.ndarray, remainder: float, sup: float, tol: float, proven: bool
) -> ZonalExpansion:
    """The expansion at the least ``L`` with ``sum_{L < l <= top} mult_l |c_l| + remainder <= tol sup``
    (``coefs``: ``c_0..c_top``), capped at :data:`MAX_ZONAL_DEGREE` (then ``within_cap`` is False)."""
    terms = np.abs(coefs) * multiplicity(d, len(coefs) - 1)
    tails = np.r_[np.cumsum(terms[::-1])[::-1][1:], 0.0] + remainder  # small terms summed first
    ok = tails <= tol * sup
    degree = int(np.argmax(ok)) if ok.any() else len(tails)
    within = degree <= MAX_ZONAL_DEGREE
    degree = min(degree, MAX_ZONAL_DEGREE, len(coefs) - 1)
    factors = np.array(coefs[: degree + 1], dtype=float)
    factors.flags.writeable = False
    return ZonalExpansion(d, factors, float(tails[degree]), float(sup), tol, proven, within)


class ZonalKernel(ABC):
    """A kernel ``phi: [-1, 1] -> R`` of ``<x, y>`` for tokens on the sphere (frozen, hashable).

    Subclasses give ``phi`` (vectorised), its antiderivative ``W`` (``W' = phi``, ``W(1) = 0``: the
    interaction energy ``E = 1/2 sum_ij w_i w_j W(<x_i, x_j>)``), its extremes, ``sup |phi'|`` and
    the expansions on S^1 and S^2.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """The kernel's name (a :data:`KERNEL_NAMES` key for the named kernels)."""

    @abstractmethod
    def __call__(self, t: np.ndarray) -> np.ndarray:
        """``phi(t)`` elementwise, ``t`` in [-1, 1]."""

    def evaluate(self, t: np.ndarray, out: np.ndarray) -> None:
        """``out[...] = phi(t)`` for the dense sums' tiles; ``t`` may be overwritten, ``out`` is not ``t``.

        The named kernels work in place (no temporary arrays), with ``__call__``'s arithmetic.
        """
        out[...] = self(t)

    @abstractmethod
    def antiderivative(self, t: np.ndarray) -> np.ndarray:
        """``W(t) = -int_t^1 phi``: ``W' = phi``, ``W(1) = 0``."""

    @abstractmethod
    def minimum(self) -> float:
        """``min phi`` on [-1, 1]."""

    @abstractmethod
    def maximum(self) -> float:
        """``max phi`` on [-1, 1]."""

    @abstractmethod
    def slope(self) -> float:
        """``sup |phi'|`` on [-1, 1]."""

    @property
    def exp_scale(self) -> float | None:
        """``beta`` when ``phi(t) == exp(beta t)`` exactly, else None."""
        return None

    def sup(self) -> float:
        """``sup |phi|`` on [-1, 1]."""
        return max(abs(self.minimum()), abs(self.maximum()))

    @property
    def width(self) -> float:
        """``min(pi, sqrt(sup|phi| / sup|phi'|))``, radians (module docstring): ``beta^{-1/2}`` for exp."""
        sup, slope = self.sup(), self.slope()
        if not slope > 0 or not math.isfinite(sup):
            return math.pi
        return min(math.pi, math.sqrt(sup / slope))

    def coefficients(self, d: int, tol: float = 1e-10) -> ZonalExpansion:
        """The expansion on S^{d-1} (d = 2, 3) truncated at ``tail <= tol sup|phi|`` (cached)."""
        if d not in _GEOMETRIES:
            raise ValueError(f"zonal expansions are on S^1 and S^2 (d = 2, 3), got d = {d}")
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        sup = self.sup()
        if not sup <= SUP_LIMIT:
            raise ValueError(
                f"{self.name} kernel: sup |phi| = {sup:.3g} exceeds {SUP_LIMIT:.0e}; for exp(beta t) use "
                "vlasov_tf.kernels.kernel_sums with z = beta x, which scales the sums"
            )
        return _cached_expansion(self, d, float(tol))

    def expand(self, d: int, tol: float) -> ZonalExpansion:
        """:meth:`coefficients` uncached (arguments checked there)."""
        coefs, remainder = self.series(d)
        return _truncate(d, coefs, remainder, self.sup(), tol, proven=True)

    def series(self, d: int) -> tuple[np.ndarray, float]:
        """Exact coefficients ``c_0..c_top`` and a bound of ``sum_{l > top} mult_l |c_l|``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form series")


@lru_cache(maxsize=128)
def _cached_expansion(kernel: ZonalKernel, d: int, tol: float) -> ZonalExpansion:
    return kernel.expand(d, tol)


def _number(kernel: str, key: str, value: object) -> float:
    """``value`` as a finite float, else a one-line ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{kernel} kernel: {key} must be a finite number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{kernel} kernel: {key} must be a finite number, got {value!r}")
    return float(value)


@lru_cache(maxsize=256)
def _exp_series(d: int, b: float) -> tuple[np.ndarray, float]:
    """Coefficients of ``exp(b t - |b|)`` (sup 1 on [-1, 1]) and a bound of the rest beyond them.

    ``exp(r (t - 1)) = sum g_l(r) P_l(t)`` (``e^{iks}`` on S^1), and ``exp(-r t - r) = sum
    (-1)^l g_l(r) P_l(t)`` (``P_l(-t) = (-1)^l P_l(t)``; on S^1 ``-cos s = cos(s + pi)``). Terms up to
    ``top`` (past the peak at ``l ~ r``, down to 1e-32), then the geometric bound of the module
    docstring. Read-only.
    """
    geometry = _GEOMETRIES[d]
    r = abs(b)
    top = int(r + 12.0 * math.sqrt(r) + 60)
    while True:
        g = geometry.radial(r, top)
        if g[-1] < _NEGLIGIBLE or top >= 4 * MAX_ZONAL_DEGREE:
            break
        top *= 2
    q = r / (2 * top + 1) if d == 3 else r / (2 * top + 2)
    remainder = float(multiplicity(d, top)[-1] * g[-1] * q / (1 - q)) if q < 1 else math.inf
    if b < 0:
        g = g * np.where(np.arange(top + 1) % 2 == 0, 1.0, -1.0)
    g.flags.writeable = False
    return g, remainder


def _exp_or_inf(x: float) -> float:
    """``e^x``, inf where it overflows."""
    return math.exp(x) if x < 709.0 else math.inf


def _exp_sup(b: float) -> float:
    """``e^|b|``, inf where it overflows."""
    return _exp_or_inf(abs(b))


def _int_exp(b: float, t: np.ndarray) -> np.ndarray:
    """``int_1^t e^{b (s - 1)} ds = expm1(b (t - 1)) / b`` (``t - 1`` at b = 0), without cancellation."""
    return np.expm1(b * (t - 1.0)) / b if b != 0 else t - 1.0


@dataclass(frozen=True)
class Constant(ZonalKernel):
    """``phi = c``: every token feels the mean of the measure (Kuramoto, Lohe)."""

    c: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", _number("constant", "c", self.c))

    @property
    def name(self) -> str:
        return "constant"

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return np.full(np.shape(t), self.c)

    def evaluate(self, t: np.ndarray, out: np.ndarray) -> None:
        out.fill(self.c)

    def antiderivative(self, t: np.ndarray) -> np.ndarray:
        return self.c * (np.asarray(t, dtype=float) - 1.0)

    def minimum(self) -> float:
        return self.c

    def maximum(self) -> float:
        return self.c

    def slope(self) -> float:
        return 0.0

    def series(self, d: int) -> tuple[np.ndarray, float]:
        return np.array([self.c]), 0.0


@dataclass(frozen=True)
class Exponential(ZonalKernel):
    """``phi(t) = exp(beta t)`` (attention's kernel), any real ``beta`` (negative: repulsive).

    The zonal sums treat it as any kernel, absolute in ``e^|beta|`` (up to ``SUP_LIMIT``); the
    attention field uses :func:`~vlasov_tf.kernels.kernel_sums` with ``z = beta x`` instead, whose
    shifts keep every row relative to its own normaliser at any beta.
    """

    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _number("exp", "beta", self.beta))

    @property
    def name(self) -> str:
        return "exp"

    @property
    def exp_scale(self) -> float | None:
        return self.beta

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return np.exp(self.beta * np.asarray(t, dtype=float))

    def evaluate(self, t: np.ndarray, out: np.ndarray) -> None:
        np.multiply(t, self.beta, out=out)
        np.exp(out, out=out)

    def antiderivative(self, t: np.ndarray) -> np.ndarray:
        # e^beta int_1^t e^{beta (s - 1)} ds, with the e^beta outside (overflows only where phi does).
        return math.exp(self.beta) * _int_exp(self.beta, np.asarray(t, dtype=float))

    def minimum(self) -> float:
        return math.exp(-abs(self.beta))

    def maximum(self) -> float:
        return _exp_sup(self.beta)

    def slope(self) -> float:
        return abs(self.beta) * _exp_sup(self.beta)

    def series(self, d: int) -> tuple[np.ndarray, float]:
        g, remainder = _exp_series(d, self.beta)
        scale = _exp_sup(self.beta)
        return scale * g, scale * remainder


def _two_exp_points(big_a: float, p: float, big_r: float, q: float) -> list[float]:
    """[-1, 1] and the critical point in [-1, 1] of ``A e^{p (t - 1)} - R e^{q (t - 1)}`` if any.

    The derivative vanishes where ``A p e^{(p - q)(t - 1)} = R q``: one point at most.
    """
    points = [-1.0, 1.0]
    ap, rq = big_a * p, big_r * q
    if p != q and ap != 0 and rq / ap > 0:
        t = 1.0 + math.log(rq / ap) / (p - q)
        if -1.0 < t < 1.0:
            points.append(t)
    return points


@dataclass(frozen=True)
class ExpDifference(ZonalKernel):
    """``phi(t) = a exp(alpha (t - 1)) - r exp(rho (t - 1))``: attraction minus repulsion.

    Typically ``a, r > 0`` with ``alpha > rho``: attraction on a short range, repulsion on a longer
    one (or the reverse). Any finite reals, not ``phi = 0``.
    """

    a: float
    alpha: float
    r: float
    rho: float

    def __post_init__(self) -> None:
        for key in ("a", "alpha", "r", "rho"):
            object.__setattr__(self, key, _number("exp_difference", key, getattr(self, key)))
        if (self.a == self.r and self.alpha == self.rho) or (self.a == 0 and self.r == 0):
            raise ValueError(
                "exp_difference kernel: a, alpha, r, rho give phi = 0; set a != r or alpha != rho"
            )

    @property
    def name(self) -> str:
        return "exp_difference"

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return self.a * np.exp(self.alpha * (t - 1.0)) - self.r * np.exp(self.rho * (t - 1.0))

    def evaluate(self, t: np.ndarray, out: np.ndarray) -> None:
        np.subtract(t, 1.0, out=t)
        np.multiply(t, self.rho, out=out)
        np.exp(out, out=out)
        out *= -self.r
        t *= self.alpha
        np.exp(t, out=t)
        t *= self.a
        out += t

    def antiderivative(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return self.a * _int_exp(self.alpha, t) - self.r * _int_exp(self.rho, t)

    def _extremes(self) -> np.ndarray:
        points = _two_exp_points(self.a, self.alpha, self.r, self.rho)
        return self(np.array(points))

    def minimum(self) -> float:
        return float(self._extremes().min())

    def maximum(self) -> float:
        return float(self._extremes().max())

    def slope(self) -> float:
        # phi' = (a alpha) e^{alpha (t - 1)} - (r rho) e^{rho (t - 1)}: the same form.
        aa, rr = self.a * self.alpha, self.r * self.rho
        t = np.array(_two_exp_points(aa, self.alpha, rr, self.rho))
        return float(np.abs(aa * np.exp(self.alpha * (t - 1.0)) - rr * np.exp(self.rho * (t - 1.0))).max())

    def series(self, d: int) -> tuple[np.ndarray, float]:
        # exp(b (t - 1)) = e^{|b| - b} exp(b t - |b|): the factor is 1 for b >= 0.
        (ga, rem_a), (gr, rem_r) = _exp_series(d, self.alpha), _exp_series(d, self.rho)
        sa, sr = (
            self.a * _exp_or_inf(abs(self.alpha) - self.alpha),
            self.r * _exp_or_inf(abs(self.rho) - self.rho),
        )
        top = max(len(ga), len(gr))
        coefs = np.zeros(top)
        coefs[: len(ga)] += sa * ga
        coefs[: len(gr)] -= sr * gr
        return coefs, abs(sa) * rem_a + abs(sr) * rem_r


def _real_points(p: np.ndarray) -> np.ndarray:
    """-1, 1 and the real roots in [-1, 1] of the polynomial with power-basis coefficients ``p``."""
    roots = poly.polyroots(p) if len(p) > 1 and np.any(p[1:] != 0) else np.zeros(0)
    real = roots[np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots))].real
    return np.r_[-1.0, 1.0, np.clip(real, -1.0, 1.0)]


@dataclass(frozen=True)
class Polynomial(ZonalKernel):
    """``phi(t) = sum_k a_k t^k``; ``a`` a non-empty sequence of finite numbers (kept as a tuple)."""

    a: tuple[float, ...]

    def __post_init__(self) -> None:
        a = self.a
        if isinstance(a, str | bytes) or not hasattr(a, "__len__") or len(a) == 0:
            raise ValueError(f"polynomial kernel: a must be a non-empty list of numbers, got {a!r}")
        object.__setattr__(self, "a", tuple(_number("polynomial", f"a[{i}]", v) for i, v in enumerate(a)))

    @property
    def name(self) -> str:
        return "polynomial"

    def _coef(self) -> np.ndarray:
        return np.trim_zeros(np.array(self.a), "b") if any(self.a) else np.zeros(1)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return poly.polyval(np.asarray(t, dtype=float), self._coef())

    def evaluate(self, t: np.ndarray, out: np.ndarray) -> None:
        coef = self._coef()  # Horner, as polyval
        out.fill(coef[-1])
        for a in coef[-2::-1]:
            out *= t
            out += a

    def antiderivative(self, t: np.ndarray) -> np.ndarray:
        w = poly.polyint(self._coef())
        return poly.polyval(np.asarray(t, dtype=float), w) - poly.polyval(1.0, w)

    def _values_at_critical(self) -> np.ndarray:
        return self(_real_points(poly.polyder(self._coef())))

    def minimum(self) -> float:
        return float(self._values_at_critical().min())

    def maximum(self) -> float:
        return float(self._values_at_critical().max())

    def slope(self) -> float:
        der = poly.polyder(self._coef())
        return float(np.abs(poly.polyval(_real_points(poly.polyder(der)), der)).max())

    def series(self, d: int) -> tuple[np.ndarray, float]:
        coef = self._coef()
        if d == 3:
            return np.asarray(legendre.poly2leg(coef), dtype=float), 0.0
        cheb = np.asarray(chebyshev.poly2cheb(coef), dtype=float)
        return cheb / multiplicity(2, len(cheb) - 1), 0.0


#: The named kernels of :func:`kernel_from_spec` and their parameters.
KERNEL_NAMES: dict[str, tuple[str, ...]] = {
    "constant": ("c",),
    "exp": ("beta",),
    "polynomial": ("a",),
    "exp_difference": ("a", "alpha", "r", "rho"),
}
_CLASSES: dict[str, type[ZonalKernel]] = {
    "constant": Constant,
    "exp": Exponential,
    "polynomial": Polynomial,
    "exp_difference": ExpDifference,
}


def kernel_from_spec(name: str, params: Mapping[str, object]) -> ZonalKernel:
    """The named kernel ``name`` (a :data:`KERNEL_NAMES` key) with ``params`` (every parameter, no other).

    ``constant``: ``c``; ``exp``: ``beta``; ``polynomial``: ``a`` (list, ``a_k`` of ``t^k``);
    ``exp_difference``: ``a, alpha, r, rho``. Bad input raises a one-line ValueError naming the
    kernel and the parameter.
    """
    if name not in KERNEL_NAMES:
        raise ValueError(f"unknown zonal kernel {name!r}; choose one of {', '.join(KERNEL_NAMES)}")
    keys = KERNEL_NAMES[name]
    for key in params:
        if key not in keys:
            raise ValueError(f"{name} kernel: unknown parameter {key!r}; it takes {', '.join(keys)}")
    for key in keys:
        if key not in params:
            raise ValueError(f"{name} kernel: missing parameter {key!r}; it takes {', '.join(keys)}")
    return _CLASSES[name](**params)
