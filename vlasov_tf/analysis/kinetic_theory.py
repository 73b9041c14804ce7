"""Kinetic theory of the Hamiltonian mean-field (HMF) model: what the kinetic grid is tested against.

The force (docs/equations.md, "The kinetic equation on the circle"). Tokens ``x = (cos theta, sin
theta)`` with the attention field of ``B = 0``: every score is ``exp(0) = 1``, so ``A[mu](x) = V int y
dmu / int dmu`` (SA) and the velocity is ``P_x A``. Its component along the unit tangent ``e =
(-sin theta, cos theta)`` is, with ``V = K I``,

    F(theta) = <A, e> = K int (-sin theta cos theta' + cos theta sin theta') dmu / mu(S^1)
             = K int sin(theta' - theta) rho(theta') dtheta'            (rho of mass 1)
             = -dU/dtheta,   U(theta) = -K int cos(theta - theta') rho(theta') dtheta',

the HMF force and potential with coupling K (Antoni and Ruffo, Phys. Rev. E 52, 2361 (1995)). SA
normalises by the mass, so K is the value scale whatever the mass; USA and the constant interaction
kernel ``K`` (``type = "interaction"``, Kuramoto) do not: their coupling is ``K m`` for a marginal of
mass m. The Hamiltonian of the kinetic flow is ``H = int v^2/2 f - (K / 2) |M|^2`` with the
magnetisation ``M = int e^{i theta} rho`` (the model's :meth:`~vlasov_tf.models.base.MeanField.energy`
is ``(K / 2) |M|^2`` for the interaction kernel).

Linear stability of a homogeneous state ``f = g(v) / (2 pi)``, ``int g = 1``. Only the modes ``e^{+- i
theta}`` of a perturbation feel a force: ``int sin(theta' - theta) e^{i theta'} dtheta' = i pi e^{i
theta}``, so ``delta f = h(v) e^{i (theta - omega t)}`` gives ``(v - omega) h = -(K / 2) g'(v) int h``
and the dispersion relation (Landau's contour for ``Im omega <= 0``)

    D(omega) = 1 + (K / 2) int g'(v) / (v - omega) dv = 0.

For a Maxwellian of temperature T (``g' = -v g / T``) with ``zeta = omega / sqrt(2 T)`` and the plasma
dispersion function ``Z(zeta) = i sqrt(pi) w(zeta)`` (``w`` = scipy's ``wofz``, entire: the analytic
continuation below the real axis is the same formula),

    D = 1 - (K / (2 T)) (1 + zeta Z(zeta)),

so the homogeneous Maxwellian is unstable for ``T < T_c = K / 2`` (the HMF critical temperature,
energy per token ``U_c = 3/4`` at ``K = 1``); its least damped or fastest growing mode is purely
imaginary. A sum of Maxwellians (:class:`VelocityLaw`) adds its components' terms.

Thermal equilibria (with friction gamma and velocity noise sigma: ``T = sigma / gamma``): ``f =
exp(-(v^2/2 - K |M| cos(theta - phi)) / T) / Z``, self-consistent when ``|M| = I_1(K |M| / T) /
I_0(K |M| / T)`` (:func:`magnetisation`): 0 above ``T_c``, positive below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import i0e, i1e, wofz

__all__ = [
    "VelocityLaw",
    "critical_temperature",
    "dispersion",
    "dispersion_roots",
    "least_stable_root",
    "magnetisation",
    "thermal_equilibrium",
]


@dataclass(frozen=True)
class VelocityLaw:
    """A velocity density of mass 1: ``sum_s w_s N(v; u_s, T_s)`` (weights normalised)."""

    weights: tuple[float, ...] = (1.0,)
    means: tuple[float, ...] = (0.0,)
    temperatures: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        n = len(self.weights)
        if not (n >= 1 and len(self.means) == n and len(self.temperatures) == n):
            raise ValueError("a velocity law needs as many weights, means and temperatures, at least one")
        w, t = np.asarray(self.weights, float), np.asarray(self.temperatures, float)
        if not ((w > 0).all() and (t > 0).all() and np.isfinite(self.means).all()):
            raise ValueError("a velocity law needs weights > 0, temperatures > 0 and finite means")

    @classmethod
    def maxwellian(cls, T: float, u: float = 0.0) -> VelocityLaw:
        return cls((1.0,), (float(u),), (float(T),))

    def _parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = np.asarray(self.weights, float)
        return w / w.sum(), np.asarray(self.means, float), np.asarray(self.temperatures, float)

    def density(self, v: np.ndarray) -> np.ndarray:
        w, u, t = self._parts()
        v = np.asarray(v, float)[..., None]
        return (w * np.exp(-((v - u) ** 2) / (2 * t)) / np.sqrt(2 * np.pi * t)).sum(axis=-1)

    def cell_averages(self, faces: np.ndarray) -> np.ndarray:
        """(n,) exact averages over the cells between ``faces`` (n + 1,) (erf differences)."""
        from scipy.special import erf

        w, u, t = self._parts()
        cdf = (w * 0.5 * (1 + erf((np.asarray(faces)[:, None] - u) / np.sqrt(2 * t)))).sum(axis=1)
        return np.diff(cdf) / np.diff(faces)

    @property
    def kinetic_energy(self) -> float:
        """``int v^2 / 2 g``."""
        w, u, t = self._parts()
        return float((w * (u**2 + t)).sum() / 2)


def critical_temperature(K: float) -> float:
    """``T_c = K / 2``: the homogeneous Maxwellian is stable above it (module docstring)."""
    return 0.5 * K


def _zeta_term(omega: np.ndarray, law: VelocityLaw) -> tuple[np.ndarray, np.ndarray]:
    """``(int g'/(v - omega), its omega-derivative)`` by the plasma dispersion function."""
    w, u, t = _law_parts(law)
    om = np.asarray(omega, complex)[..., None]
    s = np.sqrt(2 * t)
    zeta = (om - u) / s
    # Far below the axis w grows like exp(-zeta^2) and overflows: those lattice points of the root
    # search come out inf or nan, never a local minimum of |D|.
    with np.errstate(over="ignore", invalid="ignore"):
        Z = 1j * np.sqrt(np.pi) * wofz(zeta)
        r = 1 + zeta * Z
    # int N'(v)/(v - omega) = -(1 + zeta Z) / T; dZ/dzeta = -2 (1 + zeta Z).
    with np.errstate(over="ignore", invalid="ignore"):
        val = (-w * r / t).sum(axis=-1)
        dr = Z - 2 * zeta * r
        dval = (-w * dr / (t * s)).sum(axis=-1)
    return val, dval


def _law_parts(law: VelocityLaw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = np.asarray(law.weights, float)
    return w / w.sum(), np.asarray(law.means, float), np.asarray(law.temperatures, float)


def dispersion(omega: complex | np.ndarray, K: float, law: VelocityLaw) -> np.ndarray:
    """``D(omega) = 1 + (K/2) int g'(v) / (v - omega) dv`` (analytically continued below the axis)."""
    return 1 + 0.5 * K * _zeta_term(np.asarray(omega), law)[0]


def dispersion_roots(
    K: float, law: VelocityLaw, *, re_max: float = 6.0, im_min: float = -4.0, n: int = 241
) -> np.ndarray:
    """Roots of :func:`dispersion` in ``|Re omega| <= re_max``, ``im_min <= Im omega <= re_max``,
    sorted by decreasing ``Im omega``: local minima of ``|D|`` on an n x n lattice polished by Newton
    (ValueError when none is found)."""
    x = np.linspace(-re_max, re_max, n)
    y = np.linspace(im_min, re_max, n)
    z = x[None, :] + 1j * y[:, None]
    a = np.abs(dispersion(z, K, law))
    inner = a[1:-1, 1:-1]
    lows = np.ones_like(inner, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                lows &= inner <= a[1 + di : a.shape[0] - 1 + di, 1 + dj : a.shape[1] - 1 + dj]
    roots: list[complex] = []
    for om in z[1:-1, 1:-1][lows]:
        for _ in range(60):
            val, dval = _zeta_term(np.asarray(om), law)
            if not abs(complex(dval)) > 0:
                break  # a lattice point at a critical point of D: no Newton step from there
            step = (1 + 0.5 * K * val) / (0.5 * K * dval)
            om = om - complex(step)
            if abs(step) < 1e-14 * max(1.0, abs(om)):
                break
        if abs(complex(dispersion(om, K, law))) < 1e-10 and all(abs(om - r) > 1e-8 for r in roots):
            roots.append(complex(om))
    if not roots:
        raise ValueError(f"no root of the dispersion relation found for K = {K}, {law}")
    return np.array(sorted(roots, key=lambda r: (-r.imag, r.real)))


def least_stable_root(K: float, law: VelocityLaw) -> complex:
    """The root of largest ``Im omega`` (the growth rate when > 0, else the Landau damping rate),
    with ``Re omega >= 0`` of a symmetric pair."""
    roots = dispersion_roots(K, law)
    top = roots[0]
    return complex(abs(top.real), top.imag)


def magnetisation(K: float, T: float) -> float:
    """The self-consistent ``|M|`` of the HMF thermal state: the root ``> 0`` of ``M = I_1(K M / T) /
    I_0(K M / T)`` below ``T_c = K / 2``, else 0."""
    if T >= critical_temperature(K):
        return 0.0
    b = K / T
    return float(brentq(lambda m: m - i1e(b * m) / i0e(b * m), 1e-12, 1.0, xtol=1e-15, rtol=1e-15))


def thermal_equilibrium(
    theta: np.ndarray, v: np.ndarray, K: float, T: float, *, phase: float = 0.0
) -> np.ndarray:
    """``f(theta, v) = exp(-(v^2/2 - K M cos(theta - phase)) / T) / Z`` of mass 1 on S^1 x R,
    broadcasting ``theta`` and ``v`` (M from :func:`magnetisation`)."""
    m = magnetisation(K, T)
    b = K * m / T
    # Z = 2 pi I_0(b) sqrt(2 pi T); i0e keeps exp(b) out of the ratio.
    return (
        np.exp(b * (np.cos(np.asarray(theta) - phase) - 1) - np.asarray(v) ** 2 / (2 * T))
        / (2 * np.pi * i0e(b) * np.sqrt(2 * np.pi * T))
    )
