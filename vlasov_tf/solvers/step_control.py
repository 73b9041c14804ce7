"""The grid solvers' step controller, written against any stepper with an embedded error estimate.

A :class:`Stepper` advances a state (an array: a grid's cell masses, the causal grid's S slices
stacked) by one step and returns ``(new, embedded)``: its solution and a lower-order one from
the same stages, whose difference is the local error estimate. The :class:`Controller` drives
it from stop to stop of a :class:`~vlasov_tf.solvers.time_loop.TimeLoop`
(:meth:`Controller.run`); within a piece it (:meth:`Controller.advance`)

- starts at every stop from a step estimated from the state there (:func:`first_step`), so the
  steps after a stop depend only on that state and a resumed run is bit-exact;
- accepts a step when ``||new - embedded||_1 <= atol * ||state||_1 + rtol * ||new - state||_1``
  (``rtol`` relative to what the step changes, ``atol`` to the total mass); retries a rejected
  one at ``dt * max(0.2, 0.9 ratio^(-1/p))``, ``p = 2`` where the relative part dominates (an
  O(dt^3) error over an O(dt) change), 3 elsewhere; raises ``FloatingPointError`` below
  ``1e-12 T`` or for a non-finite error;
- grows the next step by at most 5x, not at all right after a rejection;
- rounds steps from the estimate down to powers of 2^(1/16) (:func:`quantized`): the norms are
  sums over MPI ranks whose round-off depends on the number of ranks, and through this grid of
  steps it changes none;
- caps the step by the stepper's CFL bound (the minimum over ranks) and ``max_dt``, and takes
  equal steps to the next stop, landing on it exactly (a retried step is only shortened).

``rtol=None``: fixed steps at the CFL bound and ``max_dt`` (every step accepted). Norms, minima
and halo exchanges go through a :class:`~vlasov_tf.parallel.Reductions` (serial or MPI).

:func:`ssp_rk3` is the Shu-Osher SSP-RK3 both grids step with, and its embedded Heun solution.

Design notes: docs/numerics.md §2.6 (the controller), §2.8 (resume).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vlasov_tf.parallel import Reductions
from vlasov_tf.solvers.time_loop import TimeLoop

__all__ = ["Controller", "StepOptions", "Stepper", "first_step", "quantized", "ssp_rk3"]


class Stepper(Protocol):
    """One scheme on one piece of a run (the model's parameters fixed), on array states.

    ``velocity`` is whatever the scheme evaluates at the start of a step (a grid's normal
    velocities); the controller hands it back to ``stable_dt``, ``rate`` and ``step``.
    """

    def velocity(self, t: float, state: np.ndarray) -> Any:
        """The field of ``state`` at time ``t``."""
        ...

    def stable_dt(self, velocity: Any, cfl: float) -> float:
        """The CFL step of this rank's share at CFL number ``cfl`` (inf at rest)."""
        ...

    def rate(self, state: np.ndarray, velocity: Any) -> np.ndarray:
        """``d state / dt`` at ``state`` moved by ``velocity``."""
        ...

    def step(self, state: np.ndarray, t: float, dt: float, velocity: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(new, embedded)``: one step from ``t`` (``velocity``: the field at its start) and the
        embedded lower-order solution."""
        ...


@dataclass(frozen=True)
class StepOptions:
    """What the controller needs of a scheme (checked by the scheme's own options)."""

    cfl: float
    max_dt: float | None
    rtol: float | None
    atol: float


@dataclass
class Controller:
    """Error-controlled (or fixed, ``rtol=None``) steps of any :class:`Stepper` (module docstring).

    ``tol``: two times within it are one (the loop's ``TIME_RTOL * T``; also the step floor).
    ``taken``, ``rejected``: steps accepted and rejected so far.
    """

    options: StepOptions
    reductions: Reductions
    tol: float
    taken: int = 0
    rejected: int = 0
    _counted: tuple[int, int] = field(default=(0, 0), repr=False)

    def since_output(self) -> tuple[int, int]:
        """(taken, rejected) since the previous call: the counts of an output."""
        before, self._counted = self._counted, (self.taken, self.rejected)
        return self.taken - before[0], self.rejected - before[1]

    def run(
        self,
        loop: TimeLoop,
        state: np.ndarray,
        stepper_for: Callable[[float, float], Stepper],
        emit: Callable[[float, np.ndarray], np.ndarray],
    ) -> None:
        """Step ``state`` from ``loop.t0`` to T through the loop's stops.

        ``stepper_for(t, t_next)``: the stepper of the piece from stop to stop (steps never
        straddle a stop). ``emit(t, state)`` at every output time reached returns the state to
        continue from (what a resumed run reads back: the resume is then bit-exact).
        """
        t = loop.t0
        while True:
            for _ in loop.due(t):
                state = emit(t, state)
            if loop.finished(t):
                return
            t_next = loop.next_stop(t)
            state = self.advance(stepper_for(t, t_next), state, t, t_next, loop.stepped)
            t = t_next  # where advance lands, exactly

    def advance(
        self,
        stepper: Stepper,
        state: np.ndarray,
        t: float,
        t_next: float,
        on_step: Callable[[float, float], None] | None = None,
    ) -> np.ndarray:
        """``state`` stepped from ``t`` to ``t_next`` (landing there exactly); ``on_step(t, dt)``
        after every accepted step."""
        opt, red, tol = self.options, self.reductions, self.tol
        cfl, max_cap = opt.cfl, opt.max_dt or np.inf
        # The controller restarts at every stop, so the steps after a stop depend only on the
        # state there (what a resumed run has).
        scale = opt.atol * red.l1(state)
        u0 = stepper.velocity(t, state)
        dt_cfl = red.min(stepper.stable_dt(u0, cfl))
        horizon = min(t_next - t, dt_cfl / cfl, max_cap)
        if opt.rtol is None:
            proposal = np.inf
        else:
            proposal = first_step(stepper, red, t, state, u0, horizon, opt.rtol, scale)
        u: Any = u0
        retried = False
        while t < t_next - tol:
            if u is None:
                u = stepper.velocity(t, state)
                dt_cfl = red.min(stepper.stable_dt(u, cfl))
            dt = min(dt_cfl, quantized(proposal), max_cap)
            # Equal steps to the stop rather than a sliver at its end.
            dt = (t_next - t) / max(1.0, np.ceil((t_next - t) / dt * (1 - 1e-12)))
            while True:
                new, low = stepper.step(state, t, dt, u)
                # Through the sum every rank sees a failure anywhere, so all ranks raise together.
                err = red.l1(new - low)
                if not np.isfinite(err):
                    raise FloatingPointError(
                        f"the grid solution became non-finite at t = {t:.6g} (step {self.taken})"
                    )
                if opt.rtol is None or not err > 0:
                    ratio, power = 0.0, 3.0
                else:
                    relative = opt.rtol * red.l1(new - state)
                    ratio = err / (scale + relative)
                    # The error is O(dt^3) and the change O(dt): the ratio goes like dt^2 where
                    # the relative part of the tolerance dominates, dt^3 elsewhere.
                    power = 2.0 if relative >= scale else 3.0
                if ratio <= 1.0:
                    break
                self.rejected += 1
                retried = True
                dt = quantized(dt * max(0.2, 0.9 * ratio ** (-1 / power)))
                if dt < tol:
                    raise FloatingPointError(
                        f"the time step fell below 1e-12 T at t = {t:.6g} (rtol = {opt.rtol}, "
                        f"atol = {opt.atol}): the error estimate does not shrink with the step"
                    )
            state = new
            t = t_next if t_next - (t + dt) <= tol else t + dt
            self.taken += 1
            if retried:  # no growth right after a rejection
                proposal = dt
            else:
                proposal = dt * min(5.0, 0.9 * ratio ** (-1 / power)) if ratio > 0 else np.inf
            retried = False
            u = None
            if on_step is not None:
                on_step(t, dt)
        return state


def quantized(dt: float) -> float:
    """The largest 2^(j/16) <= dt (j an integer; inf stays inf).

    The error norms are sums over the ranks under MPI, whose round-off depends on the number of
    ranks; through this grid of steps it cannot change a step (short of landing within an ulp of a
    grid point), so a run takes the same steps on any number of ranks.
    """
    if not np.isfinite(dt):
        return dt
    return float(2.0 ** (np.floor(16.0 * np.log2(dt)) / 16.0))


def first_step(
    stepper: Stepper,
    reductions: Reductions,
    t: float,
    m0: np.ndarray,
    u0: Any,
    horizon: float,
    rtol: float,
    scale: float,
) -> float:
    """A first step for the error control from the state alone (one extra field evaluation).

    With ``f = dm/dt`` and ``lam = ||f'|| / ||f||`` from a difference over a short Euler step
    ``h``, the linear model ``m' = lam m`` has SSP-RK3 minus Heun ``(lam dt)^3 / 6`` of the
    solution and a change ``lam dt``: the step is accepted for ``(lam dt)^2 <= 6 rtol`` or for
    ``dt^3 lam^2 ||f|| / 6 <= scale`` (the absolute part), whichever is longer. 0.8 of that;
    ``inf`` for a state at rest. ``horizon``: the longest step in view (stop, CFL at
    ``cfl = 1``, ``max_dt``); norms (L1 over all ranks) and halo exchanges by ``reductions``.
    """
    norm = reductions.l1
    f0 = stepper.rate(m0, u0)
    size0 = norm(f0)
    if not size0 > 0:
        return np.inf
    h = 1e-2 * min(horizon, norm(m0) / size0)
    m1 = m0 + h * f0
    reductions.exchange(m1)
    u1 = stepper.velocity(t + h, m1)
    lam = norm(stepper.rate(m1, u1) - f0) / (h * size0)
    if not lam > 0:
        return np.inf
    return 0.8 * max(np.sqrt(6 * rtol) / lam, (6 * scale / (lam * lam * size0)) ** (1 / 3))


def ssp_rk3(
    stage: Callable[[np.ndarray, float, Any], np.ndarray],
    m0: np.ndarray,
    t: float,
    dt: float,
    u0: Any,
    sync: Callable[[np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One Shu-Osher SSP-RK3 step and its embedded second-order (Heun, SSP-RK2) solution.

    ``stage(m, ts, u)``: one forward-Euler step of length ``dt`` from ``m`` at time ``ts``
    (``u``: the velocity there, or None to evaluate it; the first stage gets ``u0``). Returns
    ``(m3, 2 m2 - m0)``: their difference is O(dt^3). ``sync(m)`` refreshes halos in place after
    each stage (MPI).
    """

    def synced(m: np.ndarray) -> np.ndarray:
        if sync is not None:
            sync(m)
        return m

    m1 = synced(stage(m0, t, u0))
    m2 = synced(0.75 * m0 + 0.25 * stage(m1, t + dt, None))
    return synced(m0 / 3.0 + (2.0 / 3.0) * stage(m2, t + 0.5 * dt, None)), 2.0 * m2 - m0
