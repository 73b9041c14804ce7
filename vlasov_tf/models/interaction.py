"""Interaction-kernel models: Kuramoto and Lohe, aggregation, attraction-repulsion, on S^1 and S^2.

For zonal kernels ``phi`` and ``psi`` on [-1, 1] (:mod:`vlasov_tf.kernels.zonal`)::

    X[mu](t, x) = P_x ( int phi(<x, y>) y dmu(y) / Z(x) ) + Omega x + v(t, x),   P_x = I - x x^T,
    Z(x) = 1 (unnormalised)   or   Z(x) = int psi(<x, y>) dmu(y) (normalised; psi > 0),

with ``Omega`` a skew-symmetric (d, d) matrix (a rigid rotation: the Lohe model's natural
frequency; on the circle the angular velocity ``omega``) and ``v`` an optional prescribed drift.
Softmax attention with Q = K = V = I is ``phi = psi = exp(beta t)``, normalised; its unnormalised
form is ``phi = exp(beta t)``. Kuramoto (S^1) and Lohe (S^2) with identical oscillators are
``phi = K`` constant: ``X = K P_x m``, ``m = int y dmu``.

**Gradient structure.** With ``W' = phi`` (``W(t) = -int_t^1 phi``) the unnormalised field is
``X = grad_S int W(<x, y>) dmu(y)`` plus the drift, so along the flow the energy
``E = 1/2 int int W(<x, y>) dmu dmu`` grows as ``dE/dt = int |P_x int phi y dmu|^2 dmu >= 0``
(a rotation leaves E unchanged: it is rotation-invariant). :meth:`Interaction.energy` returns it.

**Linear theory of the uniform state** (:meth:`Interaction.growth_rate`; docs/equations.md §6). A
perturbation ``a cos(k s)`` of the uniform density on S^1 grows at
``lambda_k = k (1 / 2 pi) int_0^{2 pi} phi(cos s) sin s sin(k s) ds / Z0``, and ``a P_l`` on S^2 at
``lambda_l = l (l + 1) / (2 (2l + 1)) (phi_{l-1} - phi_{l+1}) / Z0``, ``phi_n = int_{-1}^1 phi P_n dt``
(Funk-Hecke), with ``Z0`` the normaliser of the uniform measure (1 unnormalised; ``(1/2 pi)
int psi(cos s) ds`` on S^1, ``1/2 int psi dt`` on S^2). For ``phi = psi = exp(beta t)`` these are
attention's rates (``k^2 I_k / (beta I_0)``, ``l (l + 1) i_l / (beta i_0)``).

**Sums.** Exponential kernels (``exp(beta t)``, beta > 0, and the normaliser equal to the kernel or
absent) are attention with Q = K = V = I (SA or USA: its scaled head sums, no overflow at beta =
1000, the same bits; its energy and growth rates); other kernels through
:meth:`Sums.zonal <vlasov_tf.models.sums.Sums.zonal>`
(spectral on S^1 and S^2 where cheaper, dense otherwise; every entry within ``tol sup|phi|`` of
the dense sum per unit mass, so a normalised field's relative error is at most ``tol max psi /
min psi``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.special import eval_legendre, roots_legendre

from vlasov_tf.kernels.zonal import ZonalKernel
from vlasov_tf.kernels.zonal_function import FunctionKernel
from vlasov_tf.models.attention import Params
from vlasov_tf.models.base import MeanField, Prescribed, VelocityField, tangent
from vlasov_tf.models.sums import Sums

__all__ = ["Interaction", "circle_rotation"]

# Quadrature nodes of the growth rates' integrals (Gauss-Legendre on S^2, trapezoid on S^1: both
# exact for the polynomial and trigonometric degrees kernels reach before their tails vanish).
_NODES = 1024


@dataclass(frozen=True, eq=False)
class Interaction(MeanField):
    """An interaction-kernel model (module docstring) on S^{d-1}.

    Attributes
    ----------
    d : ambient dimension (2: the circle, 3: S^2; tokens any d >= 2).
    kernel : ``phi``, a :class:`~vlasov_tf.kernels.zonal.ZonalKernel` (``Constant``, ``Exponential``,
        ``Polynomial``, ``ExpDifference``, or ``FunctionKernel`` of any callable on [-1, 1]).
    normaliser : ``psi`` (positive on [-1, 1]) for the normalised model, None for ``Z = 1``.
    omega : (d, d) skew-symmetric ``Omega`` of the drift ``Omega x``, or None.
    drift : a prescribed drift ``v(t, x)`` (tangent vectors), or None.
    """

    d: int
    kernel: ZonalKernel
    normaliser: ZonalKernel | None = None
    omega: np.ndarray | None = None
    drift: VelocityField | None = None
    #: For exp(beta t) (beta > 0) with psi = phi or Z = 1: attention with Q = K = V = I, SA or USA.
    _attention: Params | None = field(init=False, repr=False, default=None)
    _drift: Prescribed | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if isinstance(self.d, bool) or not isinstance(self.d, int | np.integer) or self.d < 2:
            raise ValueError(f"the dimension d must be an integer >= 2; got {self.d!r}")
        object.__setattr__(self, "d", int(self.d))
        if not isinstance(self.kernel, ZonalKernel):
            raise ValueError(f"kernel must be a ZonalKernel; got {type(self.kernel).__name__}")
        beta = self.kernel.exp_scale
        if beta is not None and beta > 0 and self.normaliser in (None, self.kernel):
            params = Params.identity(self.d, beta, "USA" if self.normaliser is None else "SA")
            object.__setattr__(self, "_attention", params)
        elif self.normaliser is not None:
            if not isinstance(self.normaliser, ZonalKernel):
                raise ValueError(f"normaliser must be a ZonalKernel; got {type(self.normaliser).__name__}")
            low = self.normaliser.minimum()
            if not low > 0:
                raise ValueError(
                    f"the normaliser {self.normaliser.name} must be positive on [-1, 1] (Z(x) divides the "
                    f"field); its minimum is {low:.3g}"
                )
        if self.omega is not None:
            om = np.asarray(self.omega, dtype=float)
            if om.shape != (self.d, self.d) or not np.isfinite(om).all():
                raise ValueError(f"omega must be a finite ({self.d}, {self.d}) matrix; got shape {om.shape}")
            if np.abs(om + om.T).max() > 1e-12 * max(1.0, np.abs(om).max()):
                raise ValueError("omega must be skew-symmetric (Omega^T = -Omega: a rotation's generator)")
            om.flags.writeable = False
            object.__setattr__(self, "omega", om)
        if self.drift is not None:
            object.__setattr__(self, "_drift", Prescribed(self.drift, self.d))

    @property
    def normalised(self) -> bool:
        return self.normaliser is not None

    def evaluate(self, t, points, weights, queries, sphere, sums: Sums) -> np.ndarray:
        if self._attention is not None:  # attention's scaled sums: the same bits as Q = K = V = I
            out = self._attention.evaluate(t, points, weights, queries, sphere, sums)
        else:
            d = self.d
            s = sums.zonal(self.kernel, queries, points, weights, points)
            out = s[:, :d]
            if self.normaliser == self.kernel:
                out = out / s[:, d:]
            elif self.normaliser is not None:
                out = out / sums.zonal(self.normaliser, queries, points, weights, None)
            if sphere:
                out = tangent(queries, out)
        # Omega x is tangent wherever x is (Omega is skew); a prescribed drift is projected.
        if self.omega is not None:
            out = out + np.dot(queries, self.omega.T)
        if self._drift is not None:
            v = self._drift.evaluate(t, points, weights, queries, sphere, sums)
            out = out + (tangent(queries, v) if sphere else v)
        return out

    @property
    def label(self) -> str:
        """E.g. ``"exp_difference kernel, normalised, rotation"``."""
        parts = [f"{self.kernel.name} kernel"]
        if self.normaliser is not None:
            by = "" if self.normaliser == self.kernel else f" by {self.normaliser.name}"
            parts.append(f"normalised{by}")
        if self.omega is not None and np.any(self.omega):
            parts.append("rotation")
        if self.drift is not None:
            parts.append("drift")
        return ", ".join(parts)

    @property
    def width(self) -> float:
        """The kernel's :attr:`~vlasov_tf.kernels.zonal.ZonalKernel.width` (``beta^{-1/2}`` for exp)."""
        return self.kernel.width

    @cached_property
    def _potential(self) -> ZonalKernel:
        """``W`` (``W' = phi``, ``W(1) = 0``) as a kernel, for the energy's fast sums."""
        return FunctionKernel(self.kernel.antiderivative, label=f"W of {self.kernel.name}")

    def energy(self, points: np.ndarray, weights: np.ndarray) -> float | None:
        """``E = 1/2 sum_ij w_i w_j W(<x_i, x_j>)`` (module docstring), non-decreasing along the
        unnormalised flow with a rotation drift; for ``phi = exp(beta t)`` (and the normalised model
        with ``psi = phi``, softmax attention) attention's
        :func:`~vlasov_tf.models.attention.interaction_energy`, which is E plus the constant
        ``e^beta (sum w)^2 / (2 beta)``. None where the flow has no such energy (another normaliser,
        a prescribed drift)."""
        if self.drift is not None:
            return None
        if self._attention is not None:
            return self._attention.energy(points, weights)
        if self.normalised:
            return None
        pts = np.asarray(points, dtype=float)
        w = np.asarray(weights, dtype=float)
        sums = Sums.by_method("auto")
        return 0.5 * float(w @ sums.zonal(self._potential, pts, pts, w, None)[:, 0])

    def growth_rate(self, mode: int) -> float | None:
        """Growth rate of the uniform state's mode ``mode`` (module docstring); None with a drift (the
        mode then also rotates) or off S^1 and S^2."""
        if self.drift is not None or (self.omega is not None and np.any(self.omega)) or self.d > 3:
            return None
        if self._attention is not None:  # the Bessel formulae, finite at any beta
            return self._attention.growth_rate(mode)
        k = int(mode)
        if self.d == 2:
            s = 2 * np.pi * np.arange(_NODES) / _NODES
            rate = k * float(np.mean(self.kernel(np.cos(s)) * np.sin(s) * np.sin(k * s)))
            z0 = 1.0 if self.normaliser is None else float(np.mean(self.normaliser(np.cos(s))))
            return rate / z0
        t, q = roots_legendre(_NODES)
        phi = self.kernel(t)

        def moment(n: int) -> float:
            return 0.0 if n < 0 else float(q @ (phi * eval_legendre(n, t)))

        rate = k * (k + 1) / (2 * (2 * k + 1)) * (moment(k - 1) - moment(k + 1))
        z0 = 1.0 if self.normaliser is None else 0.5 * float(q @ self.normaliser(t))
        return rate / z0


def circle_rotation(omega: float) -> np.ndarray:
    """The (2, 2) skew-symmetric matrix of the angular velocity ``omega`` on the circle."""
    if not math.isfinite(omega):
        raise ValueError(f"the angular velocity must be finite; got {omega!r}")
    return np.array([[0.0, -omega], [omega, 0.0]])
