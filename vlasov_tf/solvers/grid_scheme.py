"""The finite-volume grid's scheme options: reconstructions, limiters, the field's measure and
method, the error control's tolerances, checked once (:class:`GridScheme`).

The scheme itself is :mod:`vlasov_tf.solvers.finite_volumes`; the numerics behind each choice are
in docs/numerics.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlasov_tf.kernels import METHODS
from vlasov_tf.solvers.step_control import StepOptions

__all__ = [
    "ATOL",
    "COMPACT_POWER",
    "DIFFUSIONS",
    "FIELD_ACCURACIES",
    "FIELD_ACCURACY",
    "FIELD_MEASURE",
    "FIELD_MEASURES",
    "FIELD_METHODS",
    "LIMITERS",
    "RECONSTRUCTION",
    "RECONSTRUCTIONS",
    "RECONSTRUCTION_LIMITERS",
    "RTOL",
    "UPWINDING",
    "GridScheme",
    "check_field_accuracy",
    "check_field_measure",
    "check_scheme",
]

#: Reconstructions of the cell averages at the faces: MUSCL (second order), k-exact quadratic
#: (third), and the quadratic with half the upwind dissipation (third; for strong deformation,
#: docs/numerics.md §2.10).
RECONSTRUCTIONS = ("linear", "quadratic", "quadratic-lowdiss")
#: The default: third order wins per unit of work on transport and attention cases (README).
RECONSTRUCTION = "quadratic"
#: Limiters, and those each reconstruction takes (the first is its default).
LIMITERS = ("barth-jespersen", "positivity", "none")
RECONSTRUCTION_LIMITERS = {
    "linear": ("barth-jespersen", "none"),
    "quadratic": ("positivity", "none"),
    "quadratic-lowdiss": ("positivity", "none"),
}
#: ``"quadratic-lowdiss"``: the upwind part of its flux, ``F = u (r_up + r_down) / 2 + UPWINDING
#: u (r_up - r_down) / 2`` (1: full upwinding), and its least-squares rows' distance weights
#: ``1 / d^COMPACT_POWER`` (:class:`~vlasov_tf.solvers.reconstruction.QuadraticReconstruction`).
#: The landed quadratic's face jumps dissipate 2.4 times the l2 norm the unlimited linear scheme
#: does on resolved data, which filaments near the grid scale cannot afford (numerics §2.10).
UPWINDING = 0.5
COMPACT_POWER = 3
#: Default error control (module docstring): relative to the change a step makes, and to the mass.
RTOL = 1e-3
ATOL = 1e-8
#: How the grid steps a noisy model's ``sigma Laplace``: in the transport's fluxes, its step bounded
#: by ``~ h^2 / sigma`` (the default), or Strang-split TR-BDF2
#: (:mod:`~vlasov_tf.solvers.implicit_diffusion`), the step bounded by the transport alone.
DIFFUSIONS = ("explicit", "implicit")
#: How the grid evaluates a model's nonlocal sums (:data:`vlasov_tf.kernels.METHODS`).
FIELD_METHODS = METHODS
#: The measure whose field moves the grid (module docstring), and the default (second order).
FIELD_MEASURES = ("cells", "quadrature")
FIELD_MEASURE = "cells"
#: The accuracy the grid asks of its field's kernel sums, and the default: ``"rows"``, every flux
#: point's sums within ``tol`` of their own normaliser; ``"flux"``, one error budget ``tol q L <=
#: tol sum w b`` over the flux points weighted by ``w b`` (b the upwind density's bound, q their
#: length-weighted mean), spent on the points the fast expansion serves most cheaply, the others
#: within ``tol``: the fluxes' error bound is at most twice the strict one's (docs/numerics.md §2.11).
FIELD_ACCURACIES = ("rows", "flux")
FIELD_ACCURACY = "rows"


def check_field_measure(field_measure: str, reconstruction: str) -> None:
    """ValueError naming a field measure that is not one of :data:`FIELD_MEASURES`, or that the
    reconstruction cannot give ("quadrature" reads the quadratic polynomials)."""
    if field_measure not in FIELD_MEASURES:
        raise ValueError(f"unknown field measure {field_measure!r}; choose one of {FIELD_MEASURES}")
    if field_measure == "quadrature" and reconstruction == "linear":
        raise ValueError("field_measure 'quadrature' needs a quadratic reconstruction, not 'linear'")


def check_field_accuracy(field_accuracy: str) -> None:
    """ValueError naming a field accuracy that is not one of :data:`FIELD_ACCURACIES`."""
    if field_accuracy not in FIELD_ACCURACIES:
        raise ValueError(f"unknown field accuracy {field_accuracy!r}; choose one of {FIELD_ACCURACIES}")


def check_scheme(reconstruction: str | None, limiter: str | None) -> tuple[str, str]:
    """(reconstruction, limiter), defaults filled in; ValueError naming a bad choice.

    ``reconstruction=None``: :data:`RECONSTRUCTION`, unless ``limiter`` is one that only the
    other reconstruction takes ("barth-jespersen" names the linear scheme, as before the
    third-order default); a limiter both take ("none") then needs the reconstruction named.
    ``limiter=None``: the reconstruction's first limiter.
    """
    if limiter is not None and limiter not in LIMITERS:
        raise ValueError(f"unknown limiter {limiter!r}; choose one of {LIMITERS}")
    if reconstruction is None:
        # "quadratic-lowdiss" is only ever named: a limiter alone picks linear or quadratic.
        owners = [r for r in ("linear", "quadratic") if limiter in RECONSTRUCTION_LIMITERS[r]]
        if len(owners) > 1:
            # "none" meant the unlimited linear scheme before the quadratic default: ask.
            raise ValueError(
                f"limiter {limiter!r} applies to either reconstruction: name one "
                f"(reconstruction = 'quadratic', the default, or 'linear', the second-order scheme)"
            )
        reconstruction = RECONSTRUCTION if limiter is None else owners[0]
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"unknown reconstruction {reconstruction!r}; choose one of {RECONSTRUCTIONS}")
    allowed = RECONSTRUCTION_LIMITERS[reconstruction]
    if limiter is None:
        return reconstruction, allowed[0]
    if limiter not in allowed:
        raise ValueError(f"the {reconstruction} reconstruction takes the limiters {allowed}, not {limiter!r}")
    return reconstruction, limiter


@dataclass(frozen=True)
class GridScheme:
    """The grid scheme's options, checked once (the messages name the option and its range).

    ``reconstruction`` and ``limiter`` as for :func:`check_scheme` (None: the defaults, filled in
    here); ``cfl`` in (0, 1] and ``max_dt`` (> 0, or None) bound the step; ``rtol`` in (0, 1)
    (None: fixed steps) and ``atol`` in (0, 1) are the error control's tolerances
    (:mod:`~vlasov_tf.solvers.step_control`); ``field_method`` one of :data:`FIELD_METHODS`;
    ``field_measure`` one of :data:`FIELD_MEASURES` ("quadrature": a quadratic reconstruction);
    ``field_accuracy`` one of :data:`FIELD_ACCURACIES`.
    ``diffusion`` one of :data:`DIFFUSIONS` (only a noisy model reads it).
    """

    reconstruction: str | None = None
    limiter: str | None = None
    cfl: float = 0.5
    max_dt: float | None = None
    rtol: float | None = RTOL
    atol: float = ATOL
    field_method: str = "auto"
    field_measure: str = FIELD_MEASURE
    field_accuracy: str = FIELD_ACCURACY
    diffusion: str = "explicit"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.cfl) and 0 < self.cfl <= 1):
            raise ValueError(f"the CFL number must lie in (0, 1]; got {self.cfl}")
        if self.max_dt is not None and not (np.isfinite(self.max_dt) and self.max_dt > 0):
            raise ValueError(f"max_dt must be finite and > 0; got {self.max_dt}")
        if self.rtol is not None and not (np.isfinite(self.rtol) and 0 < self.rtol < 1):
            raise ValueError(f"rtol must lie in (0, 1); got {self.rtol}")
        if not (np.isfinite(self.atol) and 0 < self.atol < 1):
            raise ValueError(f"atol must lie in (0, 1); got {self.atol}")
        if self.field_method not in FIELD_METHODS:
            raise ValueError(f"unknown field method {self.field_method!r}; choose one of {FIELD_METHODS}")
        reconstruction, limiter = check_scheme(self.reconstruction, self.limiter)
        object.__setattr__(self, "reconstruction", reconstruction)  # frozen: the defaults filled in
        object.__setattr__(self, "limiter", limiter)
        check_field_measure(self.field_measure, reconstruction)
        check_field_accuracy(self.field_accuracy)
        if self.diffusion not in DIFFUSIONS:
            raise ValueError(f"unknown diffusion {self.diffusion!r}; choose one of {DIFFUSIONS}")

    @property
    def step_options(self) -> StepOptions:
        """What the step controller takes of the scheme."""
        return StepOptions(self.cfl, self.max_dt, self.rtol, self.atol)

    @classmethod
    def of(
        cls,
        scheme: GridScheme | None,
        cfl: float = 0.5,
        max_dt: float | None = None,
        rtol: float | None = RTOL,
        atol: float = ATOL,
        reconstruction: str | None = None,
        limiter: str | None = None,
        field_method: str = "auto",
        field_measure: str = FIELD_MEASURE,
        field_accuracy: str = FIELD_ACCURACY,
        diffusion: str = "explicit",
    ) -> GridScheme:
        """``scheme``, or one of a solver's keyword arguments; both at once is a ``ValueError``
        (a keyword other than its default would be ignored)."""
        if scheme is None:
            options = (rtol, atol, field_method, field_measure, field_accuracy, diffusion)
            return cls(reconstruction, limiter, cfl, max_dt, *options)
        keywords = (cfl, max_dt, rtol, atol, reconstruction, limiter, field_method, field_measure)
        defaults = (0.5, None, RTOL, ATOL, None, None, "auto", FIELD_MEASURE)
        if keywords != defaults or field_accuracy != FIELD_ACCURACY or diffusion != "explicit":
            raise ValueError("pass the scheme's options either as scheme= or as keywords, not both")
        return scheme
