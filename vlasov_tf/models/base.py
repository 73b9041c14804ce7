"""The model interface: a velocity field of measures, as every solver, the runner and the diagnostics take it.

A mean-field model is the velocity field ``X[mu](t, x)`` of the continuity equation

    d/dt mu + div( X[mu](t, .) mu ) = 0

on the sphere S^{d-1} (tangent vectors; or on R^d). :class:`MeanField` is what the solvers
call: the grid (:func:`~vlasov_tf.solvers.finite_volumes.solve_grid`) at its flux points under
the cell measure, the tokens (:func:`~vlasov_tf.solvers.particles.solve_particles`) at
themselves. It states

- :meth:`MeanField.evaluate`: the velocity at query points of a weighted measure at time t, with
  the nonlocal sums computed as the solver's :class:`~vlasov_tf.models.sums.Sums` says (under MPI
  the measure is this rank's block; the sums see all of it);
- :meth:`MeanField.switch_times` and :meth:`MeanField.piece`: where the field jumps (no step
  straddles a switch) and the field in force between two of them;
- what diagnostics may ask of it, each optional (None: not defined for this model):
  :meth:`~MeanField.energy`, :meth:`~MeanField.growth_rate` of the uniform state's modes, the
  kernel :attr:`~MeanField.width` that sets the clusters' linking distance.

Implementations: attention (:class:`~vlasov_tf.models.attention.Schedule` and its blocks,
:class:`~vlasov_tf.models.attention.Params`), interaction kernels
(:class:`~vlasov_tf.models.interaction.Interaction`), a prescribed field
(:class:`Prescribed`) and any user object with ``d`` and ``velocity(t, points, weights,
queries)`` (:func:`as_model` wraps it: :class:`UserModel`). No solver looks at which it has.

Design notes: docs/design.md §2 (models are plug-ins).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vlasov_tf.geometry.measures import SPHERE_ATOL, check_points, check_weights
from vlasov_tf.kernels import blas_single_thread
from vlasov_tf.models.sums import DENSE, Sums

__all__ = [
    "MeanField",
    "Model",
    "Noisy",
    "Prescribed",
    "UserModel",
    "VelocityField",
    "as_model",
    "deterministic",
    "laplacian_eigenvalue",
    "run_times",
    "tangent",
    "with_noise",
]

#: A prescribed velocity: ``v(t, x)`` for (n, d) points, returning (n, d) tangent vectors.
VelocityField = Callable[[float, np.ndarray], np.ndarray]


@runtime_checkable
class Model(Protocol):
    """What a user's model needs: the dimension and the velocity of a measure.

    ``velocity(t, points (N, d), weights (N,), queries (M, d)) -> (M, d)``: ``X[mu](t, x)`` at the
    queries for ``mu = sum_j w_j delta_{points_j}`` (the whole measure, its points of positive
    weight; the weights sum to the measure's mass), tangent to the sphere at each query (the
    solvers project what is returned). Optionally, as :class:`MeanField` has them: ``T`` (the final
    time the model fixes), ``switch_times(T)`` (where it jumps), ``energy(points, weights)``,
    ``growth_rate(mode)``, ``width`` and ``label`` (for the diagnostics and figures).
    """

    d: int

    def velocity(
        self, t: float, points: np.ndarray, weights: np.ndarray, queries: np.ndarray
    ) -> np.ndarray: ...


class MeanField(ABC):
    """A mean-field model as the solvers take it (module docstring).

    Subclasses set ``d`` (the ambient dimension: 2 for the circle, 3 for S^2, any for tokens) and
    implement :meth:`evaluate`; the rest has defaults for a field that is smooth in time.
    """

    #: The ambient dimension: 2 for the circle, 3 for S^2 (and any for tokens).
    d: int
    #: sigma of the generator ``sigma Laplace`` added to the flow (McKean-Vlasov:
    #: ``d/dt mu + div(X[mu] mu) = sigma Laplace mu``, tokens ``dx = X dt + sqrt(2 sigma) dW``);
    #: 0 for the deterministic flow. Set by :func:`with_noise`; the solvers read it once.
    noise: float = 0.0

    @property
    def T(self) -> float | None:
        """The final time the model fixes (a schedule's), or None: runs choose T."""
        return None

    @abstractmethod
    def evaluate(
        self,
        t: float,
        points: np.ndarray,
        weights: np.ndarray,
        queries: np.ndarray,
        sphere: bool,
        sums: Sums,
    ) -> np.ndarray:
        """(M, d) velocity ``X[mu](t, x)`` at the (M, d) ``queries`` of ``mu = sum_j w_j delta_{y_j}``.

        The solvers' inner loop: nothing is checked. ``points`` (N, d), ``weights`` (N,) >= 0
        (under MPI this rank's block: ``sums.split`` is set, :meth:`Sums.whole
        <vlasov_tf.models.sums.Sums.whole>` gathers it); ``sphere``: tangent vectors of S^{d-1}
        (queries may lie off it by a Runge-Kutta stage: project with the formula ``I - x x^T``),
        else the model in R^d. ``sums``: how the nonlocal sums are computed.
        """

    def switch_times(self, T: float) -> np.ndarray:
        """(n + 1,) times ``0 = t_0 < ... < t_n = T`` between which the field is continuous in time:
        no step straddles one."""
        return np.array([0.0, float(T)])

    def piece(self, t: float) -> MeanField:
        """The model in force on the piece between two switch times that holds ``t``.

        Solvers ask once per piece, at its midpoint, so that a stage at the piece's end (a
        switch) still evaluates the piece's field.
        """
        return self

    def velocity(
        self,
        points: np.ndarray,
        weights: np.ndarray | None = None,
        queries: np.ndarray | None = None,
        *,
        t: float = 0.0,
        sphere: bool = True,
        atol: float = SPHERE_ATOL,
    ) -> np.ndarray:
        """:meth:`evaluate` with checked inputs and dense sums: (M, d) at ``queries`` (default: the
        points); ``weights`` None means 1/N each."""
        pts = check_points(points, dim=self.d, sphere=sphere, atol=atol)
        w = check_weights(weights, len(pts))
        qry = pts
        if queries is not None:
            qry = check_points(queries, name="queries", dim=self.d, sphere=sphere, atol=atol)
        return self.piece(t).evaluate(t, pts, w, qry, sphere, DENSE)

    # What diagnostics and figures may ask; None where the model does not define it.

    @property
    def label(self) -> str:
        """A few words naming the model, for titles."""
        return type(self).__name__

    def energy(self, points: np.ndarray, weights: np.ndarray) -> float | None:
        """An interaction energy of the measure that the flow does not decrease, or None."""
        return None

    def growth_rate(self, mode: int) -> float | None:
        """Growth rate of the mode ``mode`` (circle: ``cos(k t)``; S^2: ``P_l``) of a small
        perturbation of the uniform measure, or None."""
        return None

    @property
    def width(self) -> float | None:
        """The kernel's length scale in radians (clusters link at a multiple of it), or None."""
        return None


class Prescribed(MeanField):
    """A velocity prescribed as a function ``v(t, x)`` of time and position, not of the measure."""

    def __init__(self, v: VelocityField, d: int) -> None:
        if not callable(v):
            raise ValueError(f"a prescribed velocity must be a callable v(t, x); got {type(v).__name__}")
        self.v, self.d = v, int(d)

    def evaluate(self, t, points, weights, queries, sphere, sums) -> np.ndarray:
        x = np.asarray(self.v(t, queries), dtype=float)
        if x.shape != queries.shape or not np.isfinite(x).all():
            raise ValueError(
                f"the prescribed velocity must return finite values of shape {queries.shape}; "
                f"got shape {x.shape}"
            )
        return x


class UserModel(MeanField):
    """A user's :class:`Model` as the solvers take it: its velocity of the whole measure (gathered
    from every rank under MPI; dense sums are the user's own), projected on the tangent space."""

    def __init__(self, user: Model) -> None:
        d = getattr(user, "d", None)
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 2:
            raise ValueError(
                f"the model {type(user).__name__} must have an integer dimension d >= 2; got {d!r}"
            )
        self.user, self.d = user, int(d)
        self.name = type(user).__name__

    # What the user's object knows besides its velocity, forwarded (the defaults where it has none).

    @property
    def label(self) -> str:
        return str(getattr(self.user, "label", self.name))

    def energy(self, points: np.ndarray, weights: np.ndarray) -> float | None:
        energy = getattr(self.user, "energy", None)
        return None if energy is None else energy(points, weights)

    def growth_rate(self, mode: int) -> float | None:
        rate = getattr(self.user, "growth_rate", None)
        return None if rate is None else rate(mode)

    @property
    def width(self) -> float | None:
        return getattr(self.user, "width", None)

    @property
    def noise(self) -> float:  # type: ignore[override]  # a read-only view of the user's attribute
        sigma = float(getattr(self.user, "noise", 0.0))
        if not (np.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"{self.name}.noise must be finite and >= 0 (sigma Laplace); got {sigma}")
        return sigma

    @property
    def T(self) -> float | None:
        T = getattr(self.user, "T", None)
        return None if T is None else float(T)

    def switch_times(self, T: float) -> np.ndarray:
        switches = getattr(self.user, "switch_times", None)
        return super().switch_times(T) if switches is None else np.asarray(switches(T), dtype=float)

    def evaluate(self, t, points, weights, queries, sphere, sums) -> np.ndarray:
        pts, w = sums.whole(points, weights)
        # BLAS on one thread, as for every field here: the result then does not depend on the thread
        # count (and an MPI run, one thread a rank, equals a serial one).
        with blas_single_thread():
            x = np.asarray(self.user.velocity(t, pts, w, queries), dtype=float)
        if x.shape != queries.shape or not np.isfinite(x).all():
            raise ValueError(
                f"{self.name}.velocity must return finite values of shape {queries.shape} (one tangent "
                f"vector per query); got shape {x.shape}"
                + ("" if x.shape != queries.shape else " with non-finite entries")
            )
        return tangent(queries, x) if sphere else x


def as_model(model: Any, d: int | None = None) -> MeanField:
    """``model`` as the solvers take it: a :class:`MeanField` as it is, a user's :class:`Model` in a
    :class:`UserModel`, a callable ``v(t, x)`` (with ``d``) as :class:`Prescribed`; else ValueError."""
    if isinstance(model, MeanField):
        return model
    if isinstance(model, Model):
        return UserModel(model)
    if callable(model) and d is not None:
        return Prescribed(model, d)
    raise ValueError(
        f"a model must be a MeanField (attention Schedule, Interaction, ...), an object with d and "
        f"velocity(t, points, weights, queries), or a prescribed velocity v(t, x); got {type(model).__name__}"
    )


class Noisy(MeanField):
    """``model`` with Brownian noise: the generator ``noise * Laplace`` added to its flow.

    The field, its switch times and what diagnostics ask are the model's; the growth rate of a
    mode of the uniform state loses ``noise * lambda`` (:func:`laplacian_eigenvalue`), since the
    linearised equation is ``d/dt rho' = L rho' + sigma Laplace rho'`` and the modes are the
    Laplacian's eigenfunctions. The energy is the model's: with noise it is no longer monotone.
    """

    def __init__(self, model: MeanField, noise: float) -> None:
        if not (np.isfinite(noise) and noise > 0):
            raise ValueError(f"the noise sigma must be finite and > 0; got {noise}")
        self.model, self.d, self.noise = model, model.d, float(noise)

    @property
    def T(self) -> float | None:
        return self.model.T

    def evaluate(self, t, points, weights, queries, sphere, sums) -> np.ndarray:
        return self.model.evaluate(t, points, weights, queries, sphere, sums)

    def switch_times(self, T: float) -> np.ndarray:
        return self.model.switch_times(T)

    def piece(self, t: float) -> MeanField:
        # The piece in force, noisy too (its growth rates are the noisy ones); solvers read the
        # noise once, from the whole model.
        piece = self.model.piece(t)
        return self if piece is self.model else Noisy(piece, self.noise)

    @property
    def label(self) -> str:
        return f"{self.model.label}, noise {self.noise:g}"

    def energy(self, points: np.ndarray, weights: np.ndarray) -> float | None:
        return self.model.energy(points, weights)

    def growth_rate(self, mode: int) -> float | None:
        rate = self.model.growth_rate(mode)
        return None if rate is None else rate - self.noise * laplacian_eigenvalue(self.d, mode)

    @property
    def width(self) -> float | None:
        return self.model.width


def with_noise(model: MeanField, noise: float) -> MeanField:
    """``model`` with the generator ``noise * Laplace`` (:class:`Noisy`); ``model`` itself for 0,
    so a noiseless run is the model's bit for bit (a noisy model's noise is replaced, 0 removes it).
    ValueError for a negative or non-finite sigma."""
    if noise == 0:
        return deterministic(model)
    return Noisy(deterministic(model), noise)


def deterministic(model: MeanField) -> MeanField:
    """The model without its noise (``model`` itself when it has none)."""
    return model.model if isinstance(model, Noisy) else model


def laplacian_eigenvalue(d: int, mode: int) -> float:
    """``lambda`` with ``-Laplace Y = lambda Y`` for the mode's eigenfunctions on S^{d-1}:
    ``k^2`` on the circle (``cos(k theta)``), ``l (l + d - 2)`` on S^{d-1} (degree-l harmonics)."""
    return float(mode * mode if d == 2 else mode * (mode + d - 2))


def run_times(model: MeanField, T: float | None) -> tuple[float, np.ndarray]:
    """``(T, switch times)`` of a run of ``model`` to ``T``: the model's own T when None (a
    schedule's); ValueError when neither fixes a final time > 0, or they differ (beyond 1e-12)."""
    fixed = model.T
    if T is None:
        if fixed is None:
            raise ValueError(f"the model ({model.label}) needs a final time T > 0: it fixes none")
        T = fixed
    elif fixed is not None and not np.isclose(T, fixed, rtol=1e-12, atol=0.0):
        raise ValueError(f"T = {T} differs from the model's final time {fixed} ({model.label})")
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"the final time T must be finite and > 0; got {T}")
    switches = np.asarray(model.switch_times(T), dtype=float)
    good = switches.ndim == 1 and len(switches) >= 2 and np.isfinite(switches).all()
    if not (good and switches[0] == 0.0 and (np.diff(switches) > 0).all()
            and np.isclose(switches[-1], T, rtol=1e-12, atol=0.0)):  # fmt: skip
        raise ValueError(
            f"the model's switch_times({T}) must increase strictly from 0 to T; got {switches.tolist()} "
            f"({model.label})"
        )
    return T, switches


def tangent(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``P_x v = v - <v, x> x`` row by row, (n, d): the tangent part at unit ``x`` (off the sphere the
    formula, for which the sphere is invariant)."""
    return v - np.einsum("ij,ij->i", v, x)[:, None] * x
