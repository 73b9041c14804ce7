"""Zonal kernels given by any Python callable: measured coefficients.

:class:`FunctionKernel` wraps a vectorised ``f`` on [-1, 1] as a
:class:`~vlasov_tf.kernels.zonal.ZonalKernel`. Its expansion (S^2: ``sum c_l P_l``; S^1:
``sum c_|k| e^{iks}``, :mod:`~vlasov_tf.kernels.zonal`) is computed by Gauss-Legendre quadrature
(S^2) or the FFT of ``f(cos s)`` on ``2N`` equally spaced angles (S^1), the number of points ``N``
doubled from 64 while not converged. With ``N`` points the degrees up to ``3N / 4`` are kept
(aliasing comes from degrees ``>= 5N / 4``), and ``L`` is accepted when

- ``L <= N / 2`` and ``A = sum_{L < l <= 3N/4} mult_l |c_l| <= tol sup / 2``,
- the retained coefficients moved by at most ``tol sup / 2`` (in ``sum mult |.|``) since ``N / 2``,
- ``tail = A + B <= tol sup`` with ``B = max |f - series_L|`` on a check grid of 12289 points of
  [-1, 1] (8192 Chebyshev points and 4097 equally spaced).

The tail is *measured*, not proven. ``sup``, ``minimum`` and ``maximum`` are sampled on the check
grid, ``sup |f'|`` by differences on its equally spaced part. Not converged at ``N = 4096`` (``L``
would exceed :data:`~vlasov_tf.kernels.zonal.MAX_ZONAL_DEGREE`; e.g. the kink of ``|t|``, whose
Legendre coefficients decay like ``l^{-3/2}``): the expansion says so (``within_cap`` False, the
factors stop at the cap with the tail they leave) and the sums are dense. A tol near round-off is
out of reach the same way: measured, 1e-13 relative is reached on S^1 but not on S^2 (the
quadrature's noise, ~1e-15 a coefficient, summed over the degrees beyond ``L``), 1e-12 on both.

scipy's Gauss-Legendre weights put a noise of ~1e-12 on high-degree coefficients: the nodes get one
Newton step and the weights are recomputed there (noise ~1e-15).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import chebyshev
from scipy import fft
from scipy.special import roots_legendre

from .zonal import MAX_ZONAL_DEGREE, ZonalExpansion, ZonalKernel, multiplicity

__all__ = ["FunctionKernel"]

# Quadrature points from _FIRST_N, doubled up to _LAST_N (L <= _LAST_N / 2 reaches MAX_ZONAL_DEGREE);
# the check grid.
_FIRST_N = 64
_LAST_N = 4096
_CHECK_CHEBYSHEV = 8192
_CHECK_UNIFORM = 4097


@dataclass(frozen=True)
class FunctionKernel(ZonalKernel):
    """Any vectorised callable ``f`` on [-1, 1] (finite values), named ``label``; measured coefficients.

    Hashed by the callable's identity (coefficients are cached per kernel). ``antiderivative``
    integrates the S^1 (Chebyshev) series asked at 1e-12: within twice its tail of the exact ``W``.
    """

    f: Callable[[np.ndarray], np.ndarray]
    label: str = "function"

    @property
    def name(self) -> str:
        return self.label

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return np.broadcast_to(np.asarray(self.f(t), dtype=float), t.shape)

    def antiderivative(self, t: np.ndarray) -> np.ndarray:
        series = self.coefficients(2, 1e-12)
        cheb = chebyshev.chebint(series.factors * multiplicity(2, series.degree), lbnd=1.0)
        return chebyshev.chebval(np.asarray(t, dtype=float), cheb)

    def minimum(self) -> float:
        return float(_samples(self)[1].min())

    def maximum(self) -> float:
        return float(_samples(self)[1].max())

    def slope(self) -> float:
        t, f = _samples(self)
        tu, fu = t[_CHECK_CHEBYSHEV:], f[_CHECK_CHEBYSHEV:]  # the equally spaced part
        return float(np.abs(np.diff(fu) / np.diff(tu)).max())

    def expand(self, d: int, tol: float) -> ZonalExpansion:
        return _measured_expansion(self, d, tol)


@lru_cache(maxsize=32)
def _samples(kernel: FunctionKernel) -> tuple[np.ndarray, np.ndarray]:
    """The check grid (Chebyshev points, then equally spaced) and ``f`` there (ValueError: not finite)."""
    j = np.arange(_CHECK_CHEBYSHEV)
    t = np.r_[np.cos(np.pi * (j + 0.5) / _CHECK_CHEBYSHEV), np.linspace(-1.0, 1.0, _CHECK_UNIFORM)]
    f = _finite(kernel, t)
    t.flags.writeable = f.flags.writeable = False
    return t, f


def _finite(kernel: FunctionKernel, t: np.ndarray) -> np.ndarray:
    """``f(t)``; ValueError where not finite (numpy's own floating-point errors left to this check)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        f = np.array(kernel(t), dtype=float)
    if not np.isfinite(f).all():
        bad = float(t[np.flatnonzero(~np.isfinite(f))[0]])
        raise ValueError(f"{kernel.name} kernel: f({bad:.17g}) is not finite; f must be finite on [-1, 1]")
    return f


def _legendre_and_derivative(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P_n(x)`` and ``P_n'(x)`` (|x| < 1) by Bonnet's recurrence."""
    p_prev, p = np.ones_like(x), x.copy()
    for ell in range(1, n):
        p_prev, p = p, ((2 * ell + 1) * x * p - ell * p_prev) / (ell + 1)
    return p, n * (x * p - p_prev) / (x * x - 1.0)


@lru_cache(maxsize=8)
def _gauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The positive half of the ``n``-point Gauss-Legendre rule (n even): nodes and weights.

    scipy's nodes after one Newton step and the weights ``2 / ((1 - x^2) P_n'(x)^2)`` there: its own
    weights put a noise of ~1e-12 on the coefficients (1e-15 after the step).
    """
    x = roots_legendre(n)[0][n // 2 :]
    p, dp = _legendre_and_derivative(n, x)
    x = x - p / dp
    _, dp = _legendre_and_derivative(n, x)
    return x, 2.0 / ((1.0 - x * x) * dp * dp)


def _quadrature(kernel: FunctionKernel, d: int, n: int) -> np.ndarray:
    """``c_0..c_{3n/4}`` from ``n`` Gauss-Legendre points (S^2) or ``2n`` equally spaced angles (S^1)."""
    top = 3 * n // 4
    if d == 2:
        s = np.arange(2 * n) * (np.pi / n)
        return fft.rfft(_finite(kernel, np.cos(s))).real[: top + 1] / (2 * n)
    x, w = _gauss(n)
    f = _finite(kernel, np.r_[x, -x])
    # P_l(-x) = (-1)^l P_l(x): the even part of f for even l, the odd part for odd l.
    parts = (w * (f[: n // 2] + f[n // 2 :]), w * (f[: n // 2] - f[n // 2 :]))
    out = np.empty(top + 1)
    p_prev, p = np.ones_like(x), x.copy()
    out[0], out[1] = 0.5 * parts[0].sum(), 1.5 * (parts[1] @ x)
    for ell in range(1, top):  # Bonnet: (l + 1) P_{l+1} = (2l + 1) x P_l - l P_{l-1}
        p_prev, p = p, ((2 * ell + 1) * x * p - ell * p_prev) / (ell + 1)
        out[ell + 1] = (ell + 1.5) * (parts[(ell + 1) % 2] @ p)
    return out


def _measured_expansion(kernel: FunctionKernel, d: int, tol: float) -> ZonalExpansion:
    """FunctionKernel's expansion: quadrature doubled until it converges (module docstring)."""
    t, f = _samples(kernel)
    sup = float(np.abs(f).max())
    target = tol * sup
    prev: np.ndarray | None = None
    n = _FIRST_N
    while True:
        coefs = _quadrature(kernel, d, n)
        terms = np.abs(coefs) * multiplicity(d, len(coefs) - 1)
        tails = np.r_[np.cumsum(terms[::-1])[::-1][1:], 0.0]
        ok = np.flatnonzero(tails[: n // 2 + 1] <= 0.5 * target)
        if ok.size and prev is not None:
            degree = int(ok[0])
            top = min(degree, len(prev) - 1)
            drift = float((np.abs(coefs[: top + 1] - prev[: top + 1]) * multiplicity(d, top)).sum())
            if drift <= 0.5 * target:
                trial = _measured(d, coefs, degree, tails, sup, tol, t, f, within=True)
                if trial.tail <= target:
                    return trial
        if n >= _LAST_N:
            break
        prev, n = coefs, 2 * n
    return _measured(d, coefs, min(MAX_ZONAL_DEGREE, len(coefs) - 1), tails, sup, tol, t, f, within=False)


def _measured(d, coefs, degree, tails, sup, tol, t, f, *, within: bool) -> ZonalExpansion:
    """The expansion at ``degree`` with tail ``A + B`` (module docstring)."""
    factors = np.array(coefs[: degree + 1])
    factors.flags.writeable = False
    trial = ZonalExpansion(d, factors, 0.0, sup, tol, False, within)
    check = float(np.abs(f - trial(t)).max())
    return ZonalExpansion(d, factors, float(tails[degree]) + check, sup, tol, False, within)
